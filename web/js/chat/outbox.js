// Messages the user wrote that the server has not confirmed yet.
//
// Each keeps the `client_msg_id` it was given when it was written, across
// retries, reconnects and reloads (the outbox lives in localStorage), so the
// server stores it exactly once however often it is sent (docs/protocol.md,
// `chat.send`).

const KEY_PREFIX = 'collab.outbox.';
const TAB = Math.random().toString(36).slice(2, 8);
let counter = 0;

/** A new id for a message: this tab's random prefix, the time and a counter. */
export function newClientMsgId() {
  counter += 1;
  return `web-${TAB}-${Date.now().toString(36)}-${counter}`;
}

export class Outbox {
  constructor(userId) {
    this.key = `${KEY_PREFIX}${userId}`;
    this.items = [];
    try {
      const saved = JSON.parse(window.localStorage.getItem(this.key) ?? '[]');
      if (Array.isArray(saved)) {
        // After a reload nothing is in flight: what was being sent is queued again.
        this.items = saved
          .filter((item) => item && typeof item.clientMsgId === 'string' && Number.isInteger(item.room))
          .map((item) => ({ ...item, state: item.state === 'failed' ? 'failed' : 'queued' }));
      }
    } catch {
      this.items = [];
    }
  }

  save() {
    try {
      const kept = this.items.map(({ clientMsgId, room, body, replyTo, files, state, error, createdAt }) => ({
        clientMsgId,
        room,
        body,
        replyTo,
        files,
        state,
        error,
        createdAt,
      }));
      if (kept.length) window.localStorage.setItem(this.key, JSON.stringify(kept));
      else window.localStorage.removeItem(this.key);
    } catch {
      // Storage full or disabled: the outbox still works for this tab's life.
    }
  }

  add({ room, body, replyTo = null, files = [] }) {
    const item = {
      clientMsgId: newClientMsgId(),
      room,
      body,
      replyTo,
      files,
      state: 'queued',
      error: null,
      createdAt: Date.now(),
    };
    this.items.push(item);
    this.save();
    return item;
  }

  get(clientMsgId) {
    return this.items.find((item) => item.clientMsgId === clientMsgId) ?? null;
  }

  forRoom(roomId) {
    return this.items.filter((item) => item.room === roomId);
  }

  set(item, changes) {
    Object.assign(item, changes);
    this.save();
  }

  remove(clientMsgId) {
    const before = this.items.length;
    this.items = this.items.filter((item) => item.clientMsgId !== clientMsgId);
    if (this.items.length !== before) this.save();
    return this.items.length !== before;
  }

  queued() {
    return this.items.filter((item) => item.state === 'queued');
  }

  forgetRoom(roomId) {
    this.items = this.items.filter((item) => item.room !== roomId);
    this.save();
  }
}
