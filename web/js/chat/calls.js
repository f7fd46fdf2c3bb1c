// The calls of the signed-in user, as the chat screen needs them: which rooms
// have an ongoing call (from call.state / call.ended, so a room header can say
// "Join call"), incoming rings (the ring dialog), and the one call this tab is
// in (a CallSession from ../call.js, shown by the call view beside the chat).
//
// Events: 'rooms' (a room's ongoing call changed), 'session' (this tab's call
// started or ended).

import { CallSession, openCamera, openMicrophone, deviceProblem } from '../call.js';
import { Emitter } from './emitter.js';
import { callView } from './call-view.js';
import { incomingCall } from './incoming-call.js';
import { preJoinCheck } from './prejoin.js';
import { roomLabel } from './rooms.js';

export class Calls extends Emitter {
  /** `ctx`: the chat context (client, announce, openRoom, mountCall(node | null)). */
  constructor(ctx) {
    super();
    this.ctx = ctx;
    this.client = ctx.client;
    this.byRoom = new Map(); // room id → call object (ongoing calls)
    this.rings = new Map(); // call id → ring dialog handle
    this.session = null;
    this.view = null;
    const on = (type, fn) => this.client.connection.on(type, fn);
    this.offs = [
      on('call.state', (frame) => {
        const { type: _type, ...call } = frame;
        this.byRoom.set(call.room, call);
        this.emit('rooms', call.room);
      }),
      on('call.ended', (frame) => {
        if (this.byRoom.get(frame.room)?.call === frame.call) this.byRoom.delete(frame.room);
        this.stopRing(frame.call);
        this.emit('rooms', frame.room);
      }),
      // A new socket gets a call.state for every ongoing call again: forget the
      // old ones, so a call that ended while this tab was offline stops showing.
      on('hello', () => {
        for (const roomId of [...this.byRoom.keys()]) {
          if (this.session?.roomId === roomId && !this.session.ended) continue;
          this.byRoom.delete(roomId);
          this.emit('rooms', roomId);
        }
      }),
      on('call.ring', (frame) => this.ring(frame)),
      on('call.ring_ended', (frame) => this.stopRing(frame.call)),
    ];
  }

  /** The ongoing call of a room, or null. */
  callIn(roomId) {
    return this.byRoom.get(roomId) ?? null;
  }

  inCall() {
    return Boolean(this.session && !this.session.ended);
  }

  label(roomId) {
    const summary = this.client.rooms.get(roomId);
    return summary ? roomLabel(summary.room, this.client.me) : 'this conversation';
  }

  // -- ringing ------------------------------------------------------------------

  ring(frame) {
    if (this.rings.has(frame.call) || this.session?.callId === frame.call) return;
    const handle = incomingCall(frame, {
      label: frame.room_name ? `#${frame.room_name}` : this.label(frame.room),
      accept: (video) => {
        this.stopRing(frame.call);
        this.enter({ mode: 'accept', call: frame.call, room: frame.room, video }, { check: false });
      },
      decline: (text) => {
        this.stopRing(frame.call);
        this.client.request('call.decline', { call: frame.call, text }).catch((error) => this.ctx.announce(error.message));
      },
      dismissed: () => this.rings.delete(frame.call),
      now: () => this.client.now(),
    });
    this.rings.set(frame.call, handle);
  }

  stopRing(callId) {
    const handle = this.rings.get(callId);
    this.rings.delete(callId);
    handle?.close();
  }

  // -- this tab's call --------------------------------------------------------

  /** "Start a call" / "Start a video call" in a room's header. */
  start(roomId, video) {
    return this.enter({ mode: 'start', room: roomId, video }, { check: true });
  }

  /** "Join call" on a room with an ongoing call. */
  join(call) {
    return this.enter({ mode: 'join', call: call.call, room: call.room, video: call.video }, { check: true });
  }

  /**
   * Open the devices (through the pre-join check, or directly when answering
   * a ring), then start, accept or join. A device that fails is left out and
   * said; the call goes on with what works.
   */
  async enter(options, { check }) {
    if (this.inCall()) await this.session.leave();
    let tracks;
    const problems = [];
    if (check) {
      tracks = await preJoinCheck({
        title: options.mode === 'start' ? (options.video ? 'Start a video call' : 'Start a call') : 'Join the call',
        confirm: options.mode === 'start' ? 'Start call' : 'Join call',
        place: this.label(options.room),
        video: options.video,
      });
      if (!tracks) return null;
    } else {
      tracks = { mic: null, camera: null };
      try {
        tracks.mic = await openMicrophone();
      } catch (error) {
        problems.push(deviceProblem(error, 'microphone'));
      }
      if (options.video) {
        try {
          tracks.camera = await openCamera();
        } catch (error) {
          problems.push(deviceProblem(error, 'camera'));
        }
      }
    }
    const session = new CallSession(this.client, { ...options, tracks });
    this.session = session;
    this.showView(session, problems);
    session.on('ended', (reason, details) => this.ended(session, reason, details));
    this.emit('session');
    try {
      await session.begin();
    } catch (error) {
      this.ctx.announce(`The call could not start: ${error.message}`);
      this.view?.notice(`The call could not start: ${error.message}`, 'error');
      if (error.code === 'call_exists' && error.details.call) {
        this.view?.notice('This room has a call already: join it from the room header.', 'error');
      }
    }
    return session;
  }

  showView(session, problems) {
    this.view?.close();
    this.view = callView(this.ctx, session, { label: this.label(session.roomId) });
    for (const text of problems) this.view.notice(text, 'warning');
    this.ctx.mountCall(this.view.node);
    this.view.focus();
  }

  ended(session, reason) {
    if (this.session !== session) return;
    this.session = null;
    const texts = {
      left: 'You left the call.',
      ended: 'The call ended.',
      replaced: 'You joined this call from another tab or device.',
      moved: 'You joined another call.',
      disconnected: 'You were disconnected from the call.',
      declined: 'Nobody could take the call.',
      missed: 'Nobody answered.',
      cancelled: 'The call was cancelled.',
      failed: null,
    };
    const text = texts[reason] ?? 'The call ended.';
    if (reason === 'failed') {
      // Keep the view (it shows why) until the person closes it.
      this.view?.showFailed(() => this.closeView());
    } else {
      if (text) this.ctx.announce(text);
      this.closeView();
    }
    this.emit('session');
  }

  closeView() {
    this.view?.close();
    this.view = null;
    this.ctx.mountCall(null);
  }

  stop() {
    for (const off of this.offs) off();
    for (const id of [...this.rings.keys()]) this.stopRing(id);
    this.session?.leave();
    this.closeView();
  }
}
