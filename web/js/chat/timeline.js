// One room's messages as far as this tab holds them.
//
// Messages are kept by `seq`. `syncSeq` is the sync point: every message from
// the oldest loaded one up to it is here, with no gap. A message that arrives
// above a gap waits in `bySeq` (it is shown only once the gap is filled), and
// `change` is the greatest change applied, so `sync` and updates can tell
// newer copies from older ones (docs/protocol.md, "Three numbers").

export class Timeline {
  constructor(roomId) {
    this.roomId = roomId;
    this.bySeq = new Map();
    this.byId = new Map();
    this.oldestSeq = null;
    this.syncSeq = 0;
    this.change = 0;
    this.hasOlder = true;
    this.loaded = false;
  }

  /** The messages without a gap, oldest first. */
  messages() {
    if (this.oldestSeq === null) return [];
    const list = [];
    for (let seq = this.oldestSeq; seq <= this.syncSeq; seq += 1) {
      const message = this.bySeq.get(seq);
      if (message) list.push(message);
    }
    return list;
  }

  /** Take the newest page (opening the room): replaces what was held. */
  resetWith(messages, more) {
    this.bySeq.clear();
    this.byId.clear();
    this.oldestSeq = null;
    this.syncSeq = 0;
    for (const message of messages) this.put(message);
    if (messages.length) {
      this.oldestSeq = messages[0].seq;
      this.syncSeq = messages[messages.length - 1].seq;
    }
    this.hasOlder = more;
    this.loaded = true;
    this.advance();
  }

  /** Put older messages in front (scrolling up). */
  prepend(messages, more) {
    for (const message of messages) this.put(message);
    if (messages.length) {
      const first = messages[0].seq;
      this.oldestSeq = this.oldestSeq === null ? first : Math.min(this.oldestSeq, first);
      if (this.syncSeq === 0) this.syncSeq = messages[messages.length - 1].seq;
    }
    this.hasOlder = more;
  }

  /**
   * Add a new message (a live event, a sync or history page after the point).
   * Returns 'added', 'known' (held already: refreshed if newer) or 'gap'.
   */
  add(message) {
    const known = this.bySeq.get(message.seq);
    if (known) {
      if ((message.change ?? 0) > (known.change ?? 0)) this.put(message);
      return 'known';
    }
    if (this.oldestSeq === null) {
      if (!this.loaded) return 'gap';
      this.oldestSeq = message.seq;
      this.syncSeq = message.seq - 1;
      this.hasOlder = message.seq > 1;
    }
    if (message.seq < this.oldestSeq) return 'known';
    this.put(message);
    const before = this.syncSeq;
    this.advance();
    return this.syncSeq > before ? 'added' : 'gap';
  }

  /** Apply a changed copy of a message held here; true if it was newer. */
  update(message) {
    const known = this.byId.get(message.id);
    if (message.change > this.change) this.change = message.change;
    if (!known || (message.change ?? 0) <= (known.change ?? 0)) return false;
    this.put(message);
    return true;
  }

  hasGap() {
    for (const seq of this.bySeq.keys()) if (seq > this.syncSeq) return true;
    return false;
  }

  put(message) {
    this.bySeq.set(message.seq, message);
    this.byId.set(message.id, message);
    if ((message.change ?? 0) > this.change) this.change = message.change;
  }

  advance() {
    while (this.bySeq.has(this.syncSeq + 1)) this.syncSeq += 1;
  }

  point() {
    return { room: this.roomId, seq: this.syncSeq, change: this.change };
  }
}
