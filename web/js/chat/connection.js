// The tab's one WebSocket to the node, kept open for as long as the user is
// signed in.
//
// It reconnects by itself with exponential back-off and jitter (at once after
// close code 4000, which also ends the sockets of a draining node after its
// `server.draining`; after a short random pause after 1001), answers every
// command exactly once (a dropped socket fails the commands still waiting with
// code 'disconnected'), and lets the owner send its `sync` as the first command
// of every new socket, before anything else goes out, so that nothing is lost
// or repeated across a reconnect (docs/protocol.md, "Catching up").

import { ApiError } from '../api.js';
import { Emitter } from './emitter.js';

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const REQUEST_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 30000;
const PING_TIMEOUT_MS = 10000;
const RATE_LIMIT_RETRIES = 3;

export const SESSION_ENDED = 4001;
const RESUME_NOW = 4000;
const GOING_AWAY = 1001;

/** A command that failed: a code for programs and a message for people. */
export function commandError(code, message, details = {}) {
  return new ApiError({ status: 0, code, message, details: { code, message, ...details } });
}

/**
 * States: 'connecting' (opening or resuming), 'online' (resumed, commands
 * flow), 'waiting' (closed; the next attempt is due at `retryAt`), 'stopped'.
 */
export class Connection extends Emitter {
  /**
   * `resume(hello)` is awaited after every `hello`; it sends the socket's first
   * command (the `sync`) with `connection.request(..., {early: true})`.
   * `checkSession()` is awaited when a socket could not open or was closed for
   * an ended session; it returns false when the user is signed out.
   */
  constructor({ url, resume, checkSession }) {
    super();
    this.url = url;
    this.resume = resume;
    this.checkSession = checkSession;
    this.socket = null;
    this.state = 'stopped';
    this.retryAt = null;
    this.attempts = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.timer = null;
    this.pingTimer = null;
    this.hello = null;
    this.lastError = null;
    this.onOnline = () => this.reconnectNow();
  }

  start() {
    if (this.state !== 'stopped') return;
    window.addEventListener('online', this.onOnline);
    this.open();
  }

  stop() {
    window.removeEventListener('online', this.onOnline);
    this.setState('stopped');
    window.clearTimeout(this.timer);
    window.clearInterval(this.pingTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, 'signed out');
    this.failPending('disconnected', 'The connection was closed.');
  }

  /** Skip the rest of the back-off (the user asked, or the browser is online again). */
  reconnectNow() {
    if (this.state === 'waiting') {
      window.clearTimeout(this.timer);
      this.open();
    }
  }

  isOnline() {
    return this.state === 'online';
  }

  setState(state, extra = {}) {
    this.state = state;
    this.retryAt = extra.retryAt ?? null;
    this.emit('state', state, extra);
  }

  open() {
    this.setState('connecting', { attempt: this.attempts });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.lastError = String(error);
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    let greeted = false;
    socket.addEventListener('message', (event) => {
      if (this.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && frame.type === 'hello' && !greeted) {
        greeted = true;
        this.greet(socket, frame);
        return;
      }
      this.receive(frame);
    });
    socket.addEventListener('close', (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      window.clearInterval(this.pingTimer);
      this.failPending('disconnected', 'The connection dropped before the server answered.');
      this.closed(event.code, greeted);
    });
  }

  async greet(socket, hello) {
    this.hello = hello;
    this.emit('hello', hello);
    try {
      await this.resume(hello);
    } catch (error) {
      if (this.socket !== socket) return;
      // A resume that fails leaves the tab unsure of what it missed: start over.
      this.lastError = error.message;
      socket.close(4000, 'resume failed');
      return;
    }
    if (this.socket !== socket) return;
    this.attempts = 0;
    this.lastError = null;
    this.setState('online');
    this.pingTimer = window.setInterval(() => this.checkAlive(socket), PING_EVERY_MS);
  }

  async checkAlive(socket) {
    try {
      await this.request('ping', {}, { timeoutMs: PING_TIMEOUT_MS });
    } catch (error) {
      // No answer: the path to the node is dead even if the browser has not noticed.
      if (error.code === 'timeout' && this.socket === socket) socket.close(4000, 'no answer to ping');
    }
  }

  async closed(code, greeted) {
    if (this.state === 'stopped') return;
    if (code === SESSION_ENDED || !greeted) {
      // Ended session, or the upgrade was refused (a browser cannot tell why):
      // ask the server whether we are still signed in before trying again.
      const signedIn = await this.checkSession().catch(() => true);
      if (!signedIn || this.state === 'stopped') {
        this.stop();
        return;
      }
    }
    if (code === RESUME_NOW && greeted) {
      this.open();
      return;
    }
    const pauseMs = code === GOING_AWAY ? 300 + Math.random() * 1500 : null;
    this.scheduleRetry(pauseMs);
  }

  scheduleRetry(pauseMs = null) {
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempts);
    const delay = pauseMs ?? base / 2 + Math.random() * (base / 2);
    this.attempts += 1;
    this.setState('waiting', { retryAt: Date.now() + delay });
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.open(), delay);
  }

  receive(frame) {
    if (!frame || typeof frame !== 'object') return;
    if ('re' in frame) {
      const waiter = this.pending.get(frame.re);
      if (!waiter) return;
      this.pending.delete(frame.re);
      window.clearTimeout(waiter.timer);
      if (frame.error) {
        const { code = 'error', message = 'The server refused this.' } = frame.error;
        waiter.reject(commandError(code, message, frame.error));
      } else {
        waiter.resolve(frame);
      }
      return;
    }
    if (typeof frame.type === 'string') this.emit(frame.type, frame);
  }

  failPending(code, message) {
    for (const [id, waiter] of this.pending) {
      window.clearTimeout(waiter.timer);
      waiter.reject(commandError(code, message));
      this.pending.delete(id);
    }
  }

  /**
   * Send a command and wait for its answer (the answer frame; its `ok` members
   * are the result). Rejects with an ApiError: the server's error code, or
   * 'offline' (no socket), 'disconnected' (it dropped), 'timeout'.
   * `early` lets the resume send its sync before the socket counts as online.
   */
  async request(type, fields = {}, { timeoutMs = REQUEST_TIMEOUT_MS, early = false } = {}) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.requestOnce(type, fields, timeoutMs, early);
      } catch (error) {
        if (error.code !== 'rate_limited' || attempt >= RATE_LIMIT_RETRIES) throw error;
        const wait = Number(error.details.retry_after_ms) || 500;
        await new Promise((resolve) => window.setTimeout(resolve, Math.min(wait, 5000)));
      }
    }
  }

  requestOnce(type, fields, timeoutMs, early) {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || (!early && this.state !== 'online')) {
      return Promise.reject(
        commandError('offline', 'You are offline. collab will reconnect by itself.'),
      );
    }
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(id);
        reject(commandError('timeout', 'The server did not answer in time.'));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      socket.send(JSON.stringify({ ...fields, id, type }));
    });
  }
}
