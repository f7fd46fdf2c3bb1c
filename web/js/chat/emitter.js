// A small event emitter: views subscribe to the parts of the chat state they
// show and unsubscribe when they go away, so nothing keeps a dead screen alive.

export class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  /** Call `fn(...args)` on every `emit(name, ...)`; returns the function that unsubscribes. */
  on(name, fn) {
    let set = this.handlers.get(name);
    if (!set) {
      set = new Set();
      this.handlers.set(name, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(name, ...args) {
    for (const fn of [...(this.handlers.get(name) ?? [])]) {
      try {
        fn(...args);
      } catch (error) {
        // One broken view must not stop the others from hearing the event.
        console.error(`handler for '${name}' failed`, error);
      }
    }
  }
}

/** Collects unsubscribe functions so a view can drop all of them at once. */
export class Subscriptions {
  constructor() {
    this.offs = [];
  }

  add(off) {
    this.offs.push(off);
    return off;
  }

  close() {
    for (const off of this.offs.splice(0)) off();
  }
}
