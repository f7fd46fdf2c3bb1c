// The chat as this tab knows it: the user's rooms with their unread counts,
// the messages of the rooms opened so far, presence, typing, and the outbox,
// kept in step with the server over the Connection.
//
// Views read the state from here and listen for its events; they never talk
// to the socket themselves. Events: 'state' (the connection's), 'rooms',
// 'timeline' (roomId), 'outbox' (roomId), 'presence' (userId), 'typing'
// (roomId), 'notify' (frame), 'room.left' (roomId), 'room.notify' (frame),
// 'ended' (the session is over).

import * as api from '../api.js';
import { Connection, commandError } from './connection.js';
import { Emitter } from './emitter.js';
import { Outbox } from './outbox.js';
import { Timeline } from './timeline.js';

const HISTORY_PAGE = 50;
const CATCH_UP_PAGE = 200;
const GAP_WAIT_MS = 400;
const TYPING_EVERY_MS = 3000;
const SYNC_BATCH = 200;
// Answers after which sending again can work: the message waits in the outbox.
const COOKIE_REFRESH_MS = 6 * 60 * 60 * 1000;
const TRANSIENT = new Set(['offline', 'disconnected', 'timeout', 'unavailable', 'internal', 'rate_limited']);

function socketUrl() {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${window.location.host}/ws`;
}

export class ChatClient extends Emitter {
  constructor(me) {
    super();
    this.me = me;
    this.rooms = new Map();
    this.roomsLoaded = false;
    this.timelines = new Map();
    this.presence = new Map();
    this.typingByRoom = new Map();
    this.outbox = new Outbox(me.id);
    this.gapTimers = new Map();
    this.lastTypingSent = new Map();
    this.reading = new Map();
    this.incomplete = new Set();
    this.staleSummaries = new Set();
    this.fetchingSummaries = false;
    this.serverOffset = 0;
    this.connection = new Connection({
      url: socketUrl(),
      resume: (hello) => this.resume(hello),
      checkSession: () => this.checkSession(),
    });
    this.connection.on('state', (state, extra) => {
      this.emit('state', state, extra);
      if (state === 'stopped' && this.ended) this.emit('ended');
    });
    this.bindEvents();
  }

  start() {
    this.connection.start();
    // An open socket keeps the session alive on the server, but only an HTTP answer can
    // renew the browser's cookie: a tab left open for weeks asks now and then.
    this.cookieTimer = window.setInterval(() => api.me().catch(() => {}), COOKIE_REFRESH_MS);
  }

  stop() {
    this.connection.stop();
    window.clearInterval(this.cookieTimer);
    for (const timer of this.gapTimers.values()) window.clearTimeout(timer);
  }

  request(type, fields, options) {
    return this.connection.request(type, fields, options);
  }

  async checkSession() {
    try {
      await api.me();
      return true;
    } catch (error) {
      if (error.status === 401) {
        this.ended = true;
        return false;
      }
      return true; // Unreachable: keep trying.
    }
  }

  // -- resuming ----------------------------------------------------------------

  async resume(hello) {
    this.serverOffset = hello.server_time - Date.now();
    if (hello.user) this.me = hello.user;
    // The first command must be the sync (docs/protocol.md); later batches follow it.
    await this.syncAll({ early: true, firstTimeoutMs: 30000 });
    // Afterwards, not awaited: fill what the sync left out, send what waits.
    window.setTimeout(() => this.afterSync(), 0);
  }

  afterSync() {
    for (const timeline of this.timelines.values()) {
      if (timeline.loaded && (timeline.hasGap() || this.incomplete.has(timeline.roomId))) {
        this.fillGap(timeline.roomId);
      }
    }
    this.incomplete.clear();
    this.flushOutbox();
  }

  applySync(answer, withRoomList) {
    for (const roomId of answer.gone ?? []) this.forgetRoom(roomId);
    if (withRoomList) {
      const seen = new Set();
      for (const summary of answer.rooms ?? []) {
        seen.add(summary.room.id);
        this.rooms.set(summary.room.id, { ...this.rooms.get(summary.room.id), ...summary });
      }
      for (const roomId of [...this.rooms.keys()]) if (!seen.has(roomId)) this.forgetRoom(roomId);
      this.roomsLoaded = true;
    }
    for (const entry of answer.missed ?? []) {
      const timeline = this.timelines.get(entry.room);
      if (!timeline) continue;
      for (const message of entry.messages) timeline.add(message);
      for (const message of entry.updated) timeline.update(message);
      if (!entry.complete) this.incomplete.add(entry.room);
      if (!entry.updated_complete) this.resyncChanges(timeline, entry.updated);
      this.emit('timeline', entry.room);
    }
    this.emit('rooms');
  }

  async resyncChanges(timeline, updated) {
    const greatest = Math.max(0, ...updated.map((m) => m.change));
    const point = { room: timeline.roomId, seq: timeline.syncSeq, change: Math.max(0, greatest - 1) };
    try {
      this.applySync(await this.request('sync', { rooms: [point] }, { early: true }), false);
    } catch {
      // The next reconnect syncs again from the timeline's own point.
    }
  }

  // -- events ------------------------------------------------------------------

  bindEvents() {
    const on = (type, fn) => this.connection.on(type, fn);
    on('chat.message', (frame) => this.onMessage(frame));
    on('chat.message_updated', (frame) => this.onUpdated(frame));
    on('chat.read', (frame) => this.onRead(frame.room, frame.seq));
    on('chat.typing', (frame) => this.onTyping(frame));
    on('room.joined', (frame) => this.onRoomChanged(frame.room, true));
    on('room.updated', (frame) => this.onRoomChanged(frame.room, false));
    on('room.left', (frame) => {
      this.forgetRoom(frame.room);
      this.emit('rooms');
      this.emit('room.left', frame.room);
    });
    on('presence.snapshot', (frame) => {
      for (const item of frame.users ?? []) this.setPresence(item);
    });
    on('presence', (frame) => this.setPresence(frame));
    on('notify', (frame) => this.emit('notify', frame));
    on('room.notify', (frame) => {
      const summary = this.rooms.get(frame.room);
      if (summary) summary.notify = frame.level;
      this.emit('room.notify', frame);
      this.emit('rooms');
    });
    on('sync.needed', () => this.resyncAll());
  }

  message(frame) {
    const { type: _type, ...message } = frame;
    return message;
  }

  onMessage(frame) {
    const message = this.message(frame);
    const summary = this.rooms.get(message.room);
    if (summary) {
      const room = summary.room;
      const isNew = message.seq > room.last_seq;
      if (isNew) {
        room.last_seq = message.seq;
        summary.last_message = message;
        const fromOther = message.sender?.id !== this.me.id && message.kind !== 'system';
        if (fromOther && message.seq > summary.last_read_seq && !message.deleted) {
          summary.unread += 1;
          if (message.mentions_room || message.mentions.includes(this.me.username)) summary.mentions += 1;
        }
        if (message.sender?.id === this.me.id && message.kind === 'user') {
          // Writing in a room means having read it (on this or another device).
          summary.last_read_seq = Math.max(summary.last_read_seq, message.seq);
          summary.unread = 0;
          summary.mentions = 0;
        }
      }
      this.emit('rooms');
    }
    if (message.sender) this.clearTyping(message.room, message.sender.id);
    if (message.client_msg_id && message.sender?.id === this.me.id) {
      if (this.outbox.remove(message.client_msg_id)) this.emit('outbox', message.room);
    }
    const timeline = this.timelines.get(message.room);
    if (!timeline?.loaded) return;
    const result = timeline.add(message);
    if (result === 'gap') this.scheduleGapFill(message.room);
    this.emit('timeline', message.room);
  }

  onUpdated(frame) {
    const message = this.message(frame);
    const summary = this.rooms.get(message.room);
    if (summary?.last_message?.id === message.id && message.change >= (summary.last_message.change ?? 0)) {
      summary.last_message = message;
      this.emit('rooms');
    }
    const timeline = this.timelines.get(message.room);
    if (timeline?.update(message)) this.emit('timeline', message.room);
  }

  onRead(roomId, seq) {
    const summary = this.rooms.get(roomId);
    if (!summary) return;
    summary.last_read_seq = Math.max(summary.last_read_seq, seq);
    if (seq >= summary.room.last_seq) {
      summary.unread = 0;
      summary.mentions = 0;
    } else {
      this.recount(summary);
    }
    this.emit('rooms');
  }

  /** Unread counts from the loaded messages, when the marker moved to the middle. */
  recount(summary) {
    const timeline = this.timelines.get(summary.room.id);
    if (!timeline?.loaded || (timeline.oldestSeq ?? Infinity) > summary.last_read_seq + 1) return;
    let unread = 0;
    let mentions = 0;
    for (const m of timeline.messages()) {
      if (m.seq <= summary.last_read_seq || m.kind === 'system' || m.deleted) continue;
      if (m.sender?.id === this.me.id) continue;
      unread += 1;
      if (m.mentions_room || m.mentions.includes(this.me.username)) mentions += 1;
    }
    summary.unread = unread;
    summary.mentions = mentions;
  }

  onRoomChanged(room, joined) {
    const summary = this.rooms.get(room.id);
    if (summary) {
      summary.room = { ...room, last_seq: Math.max(room.last_seq, summary.room.last_seq) };
    } else if (joined) {
      this.rooms.set(room.id, {
        room,
        unread: 0,
        mentions: 0,
        last_read_seq: room.last_seq,
        last_message: null,
        role: 'member',
        notify: 'default',
      });
      this.refreshSummary(room.id);
    } else {
      return;
    }
    this.emit('rooms');
  }

  /** The event of a new room says nothing of the user's place in it: ask. One fetch of
   * the room list serves every room joined while it was under way (being added to many
   * rooms at once must not fetch the list once per room). */
  async refreshSummary(roomId) {
    this.staleSummaries.add(roomId);
    if (this.fetchingSummaries) return;
    this.fetchingSummaries = true;
    try {
      while (this.staleSummaries.size) {
        const wanted = new Set(this.staleSummaries);
        this.staleSummaries.clear();
        const { rooms } = await api.request('GET', '/api/v1/rooms');
        for (const fresh of rooms) {
          const held = wanted.has(fresh.room.id) && this.rooms.get(fresh.room.id);
          if (held) Object.assign(held, { role: fresh.role, notify: fresh.notify, last_read_seq: fresh.last_read_seq });
        }
        this.emit('rooms');
      }
    } catch {
      // The defaults stand until the next sync.
      this.staleSummaries.clear();
    } finally {
      this.fetchingSummaries = false;
    }
  }

  forgetRoom(roomId) {
    this.rooms.delete(roomId);
    this.timelines.delete(roomId);
    this.typingByRoom.delete(roomId);
    if (this.outbox.forRoom(roomId).length) {
      this.outbox.forgetRoom(roomId);
      this.emit('outbox', roomId);
    }
  }

  setPresence(item) {
    if (!item || !Number.isInteger(item.user)) return;
    this.presence.set(item.user, item);
    this.emit('presence', item.user);
  }

  presenceOf(userId) {
    return this.presence.get(userId) ?? null;
  }

  presenceByUsername(username) {
    for (const item of this.presence.values()) if (item.username === username) return item;
    return null;
  }

  onTyping(frame) {
    if (!frame.user || frame.user.id === this.me.id) return;
    let people = this.typingByRoom.get(frame.room);
    if (!people) {
      people = new Map();
      this.typingByRoom.set(frame.room, people);
    }
    const previous = people.get(frame.user.id);
    if (previous) window.clearTimeout(previous.timer);
    const timer = window.setTimeout(() => this.clearTyping(frame.room, frame.user.id), frame.expires_in_ms ?? 6000);
    people.set(frame.user.id, { user: frame.user, timer });
    this.emit('typing', frame.room);
  }

  clearTyping(roomId, userId) {
    const people = this.typingByRoom.get(roomId);
    const entry = people?.get(userId);
    if (!entry) return;
    window.clearTimeout(entry.timer);
    people.delete(userId);
    this.emit('typing', roomId);
  }

  typingIn(roomId) {
    return [...(this.typingByRoom.get(roomId)?.values() ?? [])].map((entry) => entry.user);
  }

  // -- messages ----------------------------------------------------------------

  timeline(roomId) {
    let timeline = this.timelines.get(roomId);
    if (!timeline) {
      timeline = new Timeline(roomId);
      this.timelines.set(roomId, timeline);
    }
    return timeline;
  }

  /** Load the room's newest messages the first time it is opened. */
  async openRoom(roomId) {
    const timeline = this.timeline(roomId);
    if (timeline.loaded) return timeline;
    const answer = await this.request('chat.history', { room: roomId, limit: HISTORY_PAGE });
    if (!timeline.loaded) {
      timeline.resetWith(answer.messages, answer.more);
      this.emit('timeline', roomId);
    }
    return timeline;
  }

  /** Load a page of older messages; resolves to how many came. */
  async loadOlder(roomId, limit = HISTORY_PAGE) {
    const timeline = this.timeline(roomId);
    if (!timeline.loaded) {
      await this.openRoom(roomId);
      return timeline.messages().length;
    }
    if (!timeline.hasOlder || timeline.oldestSeq === null) return 0;
    const answer = await this.request('chat.history', {
      room: roomId,
      before: timeline.oldestSeq,
      limit,
    });
    timeline.prepend(answer.messages, answer.more);
    this.emit('timeline', roomId);
    return answer.messages.length;
  }

  /** Load back until `seq` is held (to open a search result). */
  async loadUntil(roomId, seq) {
    const timeline = await this.openRoom(roomId);
    while (timeline.oldestSeq !== null && timeline.oldestSeq > seq && timeline.hasOlder) {
      await this.loadOlder(roomId, CATCH_UP_PAGE);
    }
    return timeline;
  }

  scheduleGapFill(roomId) {
    if (this.gapTimers.has(roomId)) return;
    // On a cluster the missing event may only be late: wait briefly first.
    this.gapTimers.set(
      roomId,
      window.setTimeout(() => {
        this.gapTimers.delete(roomId);
        const timeline = this.timelines.get(roomId);
        if (timeline?.hasGap()) this.fillGap(roomId);
      }, GAP_WAIT_MS),
    );
  }

  async fillGap(roomId) {
    const timeline = this.timelines.get(roomId);
    if (!timeline?.loaded) return;
    try {
      for (;;) {
        const answer = await this.request('chat.history', {
          room: roomId,
          after: timeline.syncSeq,
          limit: CATCH_UP_PAGE,
        });
        for (const message of answer.messages) timeline.add(message);
        this.emit('timeline', roomId);
        if (!answer.more || !answer.messages.length) break;
      }
    } catch {
      // Offline again: the next sync fills it.
    }
  }

  /**
   * Sync every loaded room in batches of SYNC_BATCH points; the first answer's
   * room list replaces ours. `early` lets it run while resuming a new socket.
   */
  async syncAll({ early = false, firstTimeoutMs } = {}) {
    const points = [...this.timelines.values()].filter((t) => t.loaded).map((t) => t.point());
    for (let i = 0; i === 0 || i < points.length; i += SYNC_BATCH) {
      const options = i === 0 && firstTimeoutMs ? { early, timeoutMs: firstTimeoutMs } : { early };
      this.applySync(await this.request('sync', { rooms: points.slice(i, i + SYNC_BATCH) }, options), i === 0);
    }
  }

  async resyncAll() {
    try {
      await this.syncAll();
      this.afterSync();
    } catch {
      // Offline: the reconnect syncs.
    }
  }

  /** Queue a message and send it when the socket is up; it shows at once as pending. */
  send(roomId, body, { replyTo = null, files = [] } = {}) {
    const item = this.outbox.add({ room: roomId, body, replyTo, files });
    this.emit('outbox', roomId);
    this.deliver(item);
    return item;
  }

  async deliver(item) {
    if (item.state === 'sending') return;
    if (!this.connection.isOnline()) {
      this.outbox.set(item, { state: 'queued' });
      this.emit('outbox', item.room);
      return;
    }
    this.outbox.set(item, { state: 'sending', error: null });
    this.emit('outbox', item.room);
    try {
      const answer = await this.request('chat.send', {
        room: item.room,
        body: item.body,
        client_msg_id: item.clientMsgId,
        reply_to: item.replyTo?.id ?? null,
        files: item.files.map((file) => file.id),
      });
      this.outbox.remove(item.clientMsgId);
      this.onMessage({ type: 'chat.message', ...answer.message });
      this.emit('outbox', item.room);
    } catch (error) {
      if (!this.outbox.get(item.clientMsgId)) return; // Its event already confirmed it.
      if (TRANSIENT.has(error.code)) {
        this.outbox.set(item, { state: 'queued', error: error.code === 'unavailable' ? error.message : null });
        if (error.code === 'unavailable' || error.code === 'internal') this.retryLater();
      } else {
        this.outbox.set(item, { state: 'failed', error: error.message });
      }
      this.emit('outbox', item.room);
    }
  }

  retryLater() {
    if (this.retryTimer) return;
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.flushOutbox();
    }, 3000);
  }

  async flushOutbox() {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const item of this.outbox.queued()) {
        if (!this.connection.isOnline()) break;
        await this.deliver(item);
      }
    } finally {
      this.flushing = false;
    }
  }

  retry(clientMsgId) {
    const item = this.outbox.get(clientMsgId);
    if (!item) return;
    this.outbox.set(item, { state: 'queued', error: null });
    this.deliver(item);
  }

  discard(clientMsgId) {
    const item = this.outbox.get(clientMsgId);
    if (item && this.outbox.remove(clientMsgId)) this.emit('outbox', item.room);
  }

  pendingIn(roomId) {
    return this.outbox.forRoom(roomId);
  }

  async edit(messageId, body) {
    const answer = await this.request('chat.edit', { message: messageId, body });
    this.onUpdated(answer.message);
    return answer.message;
  }

  async remove(messageId) {
    const answer = await this.request('chat.delete', { message: messageId });
    this.onUpdated(answer.message);
    return answer.message;
  }

  async react(messageId, emoji, on = true) {
    const answer = await this.request('chat.react', { message: messageId, emoji, on });
    this.onUpdated(answer.message);
    return answer.message;
  }

  /** Move the read marker forward (never back); quiet when offline. */
  async markRead(roomId, seq) {
    const summary = this.rooms.get(roomId);
    if (!summary || seq <= summary.last_read_seq || (this.reading.get(roomId) ?? 0) >= seq) return;
    this.reading.set(roomId, seq);
    try {
      const answer = await this.request('chat.read', { room: roomId, seq });
      this.onRead(roomId, answer.seq);
    } catch {
      // Offline: the marker moves when the room is looked at again.
    } finally {
      if (this.reading.get(roomId) === seq) this.reading.delete(roomId);
    }
  }

  /** Tell the room the user is typing, at most every few seconds. */
  typing(roomId) {
    const last = this.lastTypingSent.get(roomId) ?? 0;
    if (Date.now() - last < TYPING_EVERY_MS || !this.connection.isOnline()) return;
    this.lastTypingSent.set(roomId, Date.now());
    this.request('chat.typing', { room: roomId }).catch(() => {});
  }

  /** Sent messages clear the "typing" throttle, so the next keystroke announces again. */
  stoppedTyping(roomId) {
    this.lastTypingSent.delete(roomId);
  }

  search(fields) {
    return this.request('chat.search', fields);
  }

  async setStatus(fields) {
    const answer = await this.request('presence.set', fields);
    this.setPresence(answer.presence);
    return answer.presence;
  }

  reportActivity() {
    if (!this.connection.isOnline()) return;
    this.request('presence.activity', {}).catch(() => {});
  }

  /** Server time now, by the clock offset seen at the last hello. */
  now() {
    return Date.now() + this.serverOffset;
  }

  offlineError() {
    return commandError('offline', 'You are offline. collab will reconnect by itself.');
  }
}
