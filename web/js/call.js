// The call engine: one call this tab is in, its two WebRTC connections to the
// node's media server, the local devices, and the signaling over the chat
// socket (docs/protocol.md, "Calls" and "A call, from the browser's side").
//
// Views never touch RTCPeerConnection: they read `session.call` (the latest
// call object), `session.remote` (participant id → {audio, camera, screen}
// tracks), `session.local` and `session.speaking`, and listen for 'change',
// 'media', 'speaking', 'declined', 'device' (a problem with a device) and
// 'ended' (reason). Everything is kept in one place so a reconnect can rebuild
// the connections from the same local tracks.

import { Emitter } from './chat/emitter.js';

/** Audio constraints: the browser's processing is kept (it is a call). */
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } };
const SOURCES = ['mic', 'camera', 'screen'];
const REJOIN_PATIENCE_MS = 30_000;

/** A sentence for a getUserMedia / getDisplayMedia failure, for people. */
export function deviceProblem(error, what) {
  const name = error?.name ?? '';
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return `collab may not use your ${what}: allow it in the browser's site settings, then try again.`;
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return `No ${what} was found.`;
  if (name === 'NotReadableError' || name === 'AbortError') return `Your ${what} is in use by another program or could not be started.`;
  return `Your ${what} could not be started (${error?.message || name || 'unknown error'}).`;
}

/** Open the microphone (`deviceId` or the default); rejects as getUserMedia does. */
export async function openMicrophone(deviceId = null) {
  const audio = { ...AUDIO, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) };
  const stream = await navigator.mediaDevices.getUserMedia({ audio });
  return stream.getAudioTracks()[0];
}

/** Open the camera (`deviceId` or the default). */
export async function openCamera(deviceId = null) {
  const video = { ...VIDEO, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) };
  const stream = await navigator.mediaDevices.getUserMedia({ video });
  return stream.getVideoTracks()[0];
}

/** The microphones and cameras the browser lists (labels once permission is granted). */
export async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return { mics: [], cameras: [] };
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    mics: devices.filter((d) => d.kind === 'audioinput' && d.deviceId),
    cameras: devices.filter((d) => d.kind === 'videoinput' && d.deviceId),
  };
}

/**
 * Run async jobs one after another: a renegotiation must not start while the
 * last one is still between its offer and its answer.
 */
function serial() {
  let tail = Promise.resolve();
  return (job) => {
    const run = tail.then(job, job);
    tail = run.catch(() => {});
    return run;
  };
}

/**
 * One call from this tab. `mode` is 'start' ({room, video}), 'accept' or
 * 'join' ({call}). `tracks`: {mic, camera} MediaStreamTracks already opened
 * by the pre-join check (either may be null); they become the session's.
 */
export class CallSession extends Emitter {
  constructor(client, { mode, room = null, call = null, video = false, tracks = {} }) {
    super();
    this.client = client;
    this.mode = mode;
    this.roomId = room;
    this.callId = call;
    this.video = video;
    this.call = null;
    this.participantId = null;
    this.iceServers = [];
    this.state = 'connecting'; // connecting | active | ended
    this.local = { mic: tracks.mic ?? null, camera: tracks.camera ?? null, screen: null };
    this.muted = { mic: false, camera: false, screen: false };
    this.senders = { mic: null, camera: null, screen: null }; // RTCRtpTransceiver per source
    this.publish = null;
    this.subscribe = null;
    this.subTracks = {}; // mid → {participant, kind, source, muted} of the last subscribe offer
    this.remote = new Map(); // participant id → {audio, camera, screen}
    this.speaking = new Set();
    this.early = []; // subscribe offers that overtook the join's answer
    this.negotiate = serial();
    this.offs = [];
    this.disconnectedAt = null;
    this.ended = false;
    for (const track of Object.values(this.local)) if (track) this.watchTrack(track);
  }

  // -- joining ------------------------------------------------------------------

  /** Send call.start / accept / join and bring both connections up. Rejects with ApiError. */
  async begin() {
    this.listen();
    const command = { start: 'call.start', accept: 'call.accept', join: 'call.join' }[this.mode];
    const fields = this.mode === 'start' ? { room: this.roomId, video: this.video } : { call: this.callId };
    let answer;
    try {
      answer = await this.client.request(command, fields);
    } catch (error) {
      this.finish('failed', false);
      throw error;
    }
    this.applyJoin(answer);
    await this.connect();
    return this;
  }

  applyJoin(answer) {
    this.call = answer.call;
    this.callId = answer.call.call;
    this.roomId = answer.call.room;
    this.video = answer.call.video;
    this.participantId = answer.participant;
    this.iceServers = answer.ice_servers ?? [];
    this.media = answer.media !== false;
    this.state = 'active';
    this.emit('change');
  }

  /** Build both peer connections, publish what is open, answer any early offer. */
  async connect() {
    this.closePeers();
    this.subscribe = this.newPeer('subscribe');
    this.subscribe.addEventListener('track', () => this.collectRemote());
    this.publish = this.newPeer('publish');
    for (const source of SOURCES) {
      this.senders[source] = null;
      if (this.local[source]) this.addSender(source, this.local[source]);
    }
    const offers = this.early.filter((frame) => frame.call === this.callId);
    this.early = [];
    if (!this.media) return;
    await this.renegotiate();
    for (const frame of offers) await this.onSubscribeOffer(frame);
  }

  newPeer(which) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
    const pendingCandidates = [];
    pc.readyForCandidates = false;
    pc.flushCandidates = () => {
      pc.readyForCandidates = true;
      for (const candidate of pendingCandidates.splice(0)) this.sendCandidate(which, candidate);
    };
    pc.addEventListener('icecandidate', (event) => {
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      // The server must have the description before the candidates that go with it.
      if (pc.readyForCandidates) this.sendCandidate(which, candidate);
      else pendingCandidates.push(candidate);
    });
    pc.addEventListener('connectionstatechange', () => this.emit('change'));
    return pc;
  }

  sendCandidate(which, candidate) {
    if (this.ended) return;
    this.client
      .request('call.signal', { call: this.callId, pc: which, kind: 'candidate', candidate })
      .catch(() => {}); // The server's answer holds its own candidates; a lost one of ours is not fatal.
  }

  listen() {
    const on = (type, fn) => this.offs.push(this.client.connection.on(type, fn));
    on('call.signal', (frame) => {
      if (frame.pc !== 'subscribe' || frame.kind !== 'offer') return;
      if (this.state === 'connecting' || !this.subscribe) {
        this.early.push(frame);
      } else if (frame.call === this.callId) {
        this.onSubscribeOffer(frame);
      }
    });
    on('call.state', (frame) => {
      if (frame.call !== this.callId) return;
      const { type: _type, ...call } = frame;
      this.call = call;
      this.forgetGone();
      this.emit('change');
    });
    on('call.speaking', (frame) => {
      if (frame.call !== this.callId) return;
      this.speaking = new Set(frame.participants ?? []);
      this.emit('speaking');
    });
    on('call.declined', (frame) => {
      if (frame.call === this.callId) this.emit('declined', frame.user, frame.text ?? null);
    });
    on('call.left', (frame) => {
      if (frame.call === this.callId && frame.participant === this.participantId) this.finish(frame.reason, false);
    });
    on('call.ended', (frame) => {
      if (frame.call === this.callId) this.finish(frame.outcome === 'completed' ? 'ended' : frame.outcome, false, frame);
    });
    // The call's media server went away (stopped or failed) and another took the call over.
    on('call.moved', (frame) => {
      if (frame.call === this.callId && !this.ended && this.state !== 'connecting') this.rejoin();
    });
    this.offs.push(
      this.client.on('state', (state) => {
        if (state === 'online' && this.disconnectedAt !== null) this.rejoin();
        else if (state !== 'online' && this.state === 'active' && this.disconnectedAt === null) {
          this.disconnectedAt = Date.now();
          this.emit('change');
        }
      }),
    );
  }

  /** The socket came back: join again (within the server's grace period) and rebuild the media. */
  async rejoin() {
    this.disconnectedAt = null;
    if (this.ended) return;
    this.state = 'connecting';
    this.emit('change');
    // While the call moves to another server after a failure the answer is 'call_moving'
    // or 'unavailable': try again for a while before giving up.
    const giveUpAt = Date.now() + REJOIN_PATIENCE_MS;
    for (;;) {
      try {
        const answer = await this.client.request('call.join', { call: this.callId });
        this.applyJoin(answer);
        await this.connect();
        return;
      } catch (error) {
        // 'disconnected' / 'timeout': the socket went while asking (its node is stopping).
        const transient = ['call_moving', 'unavailable', 'disconnected', 'offline', 'timeout'].includes(error.code);
        if (transient && !this.ended && Date.now() < giveUpAt) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          continue;
        }
        this.finish(error.code === 'call_not_found' || error.code === 'call_ended' ? 'ended' : 'failed', false);
        return;
      }
    }
  }

  // -- publishing ---------------------------------------------------------------

  addSender(source, track) {
    const transceiver = this.publish.addTransceiver(track, { direction: 'sendonly' });
    this.senders[source] = transceiver;
    return transceiver;
  }

  /** Offer on the publish connection, apply the server's answer, then declare the tracks. */
  renegotiate() {
    return this.negotiate(async () => {
      if (this.ended || !this.publish || !this.media) return;
      const pc = this.publish;
      if (!pc.getTransceivers().length) return; // Nothing to publish (no devices): listen only.
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const answer = await this.client.request('call.signal', {
        call: this.callId,
        pc: 'publish',
        kind: 'offer',
        sdp: pc.localDescription.sdp,
      });
      if (pc !== this.publish) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      pc.flushCandidates();
      await this.declareTracks();
    });
  }

  /** call.tracks: what each publish mid is and whether it is muted. */
  async declareTracks() {
    const tracks = {};
    for (const source of SOURCES) {
      const transceiver = this.senders[source];
      if (!transceiver?.mid) continue;
      tracks[transceiver.mid] = { source, muted: !this.local[source] || this.muted[source] };
    }
    if (!Object.keys(tracks).length) return;
    try {
      const answer = await this.client.request('call.tracks', { call: this.callId, tracks });
      if (answer.call) {
        this.call = answer.call;
        this.emit('change');
      }
    } catch {
      // The next declaration (any toggle, the next negotiation) carries it.
    }
  }

  /** Put `track` on `source`'s sender: a new transceiver (and an offer) the first time. */
  async setLocal(source, track) {
    const old = this.local[source];
    this.local[source] = track;
    if (track) this.watchTrack(track);
    if (old && old !== track) old.stop();
    this.emit('change');
    if (!this.publish) return;
    const transceiver = this.senders[source];
    if (transceiver) {
      await transceiver.sender.replaceTrack(track);
      await this.declareTracks();
    } else if (track) {
      this.addSender(source, track);
      await this.renegotiate();
    }
  }

  /** A device unplugged (or the browser's "stop sharing"): carry on without it. */
  watchTrack(track) {
    track.addEventListener('ended', () => {
      const source = Object.keys(this.local).find((key) => this.local[key] === track);
      if (!source || this.ended) return;
      this.setLocal(source, null);
      if (source !== 'screen') this.emit('device', source === 'mic' ? 'Your microphone stopped (was it unplugged?). The call goes on without it.' : 'Your camera stopped (was it unplugged?). The call goes on without it.');
    });
  }

  async setMuted(muted) {
    this.muted.mic = muted;
    if (this.local.mic) this.local.mic.enabled = !muted;
    this.emit('change');
    await this.declareTracks();
  }

  /** Turn the camera on (opening it) or off (releasing it, so its light goes out). */
  async setCamera(on, deviceId = null) {
    if (!on) return this.setLocal('camera', null);
    const track = await openCamera(deviceId);
    return this.setLocal('camera', track);
  }

  async switchMicrophone(deviceId) {
    const track = await openMicrophone(deviceId);
    track.enabled = !this.muted.mic;
    return this.setLocal('mic', track);
  }

  async switchCamera(deviceId) {
    return this.setCamera(true, deviceId);
  }

  async shareScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    track.contentHint = 'detail';
    return this.setLocal('screen', track);
  }

  stopScreen() {
    return this.setLocal('screen', null);
  }

  // -- subscribing --------------------------------------------------------------

  onSubscribeOffer(frame) {
    return this.negotiate(async () => {
      const pc = this.subscribe;
      if (this.ended || !pc) return;
      this.subTracks = frame.tracks ?? {};
      await pc.setRemoteDescription({ type: 'offer', sdp: frame.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await this.client.request('call.signal', { call: this.callId, pc: 'subscribe', kind: 'answer', sdp: pc.localDescription.sdp });
      pc.flushCandidates();
      this.collectRemote();
    }).catch((error) => console.warn('call: subscribe negotiation failed', error));
  }

  /** Rebuild participant → tracks from the transceivers and the last offer's `tracks`. */
  collectRemote() {
    const remote = new Map();
    for (const transceiver of this.subscribe?.getTransceivers() ?? []) {
      const info = transceiver.mid !== null ? this.subTracks[transceiver.mid] : null;
      if (!info || transceiver.currentDirection === 'inactive') continue;
      const entry = remote.get(info.participant) ?? { audio: null, camera: null, screen: null };
      const slot = info.kind === 'audio' ? 'audio' : info.source === 'screen' ? 'screen' : 'camera';
      entry[slot] = transceiver.receiver.track;
      remote.set(info.participant, entry);
    }
    this.remote = remote;
    this.emit('media');
  }

  forgetGone() {
    const present = new Set((this.call?.participants ?? []).map((p) => p.id));
    let changed = false;
    for (const id of this.remote.keys()) {
      if (!present.has(id)) {
        this.remote.delete(id);
        changed = true;
      }
    }
    if (changed) this.emit('media');
  }

  // -- the end ------------------------------------------------------------------

  /** Leave (or, for a caller nobody answered yet, cancel) the call. */
  async leave() {
    if (this.ended) return;
    const id = this.callId;
    this.finish('left', false);
    if (id) await this.client.request('call.leave', { call: id }).catch(() => {});
  }

  closePeers() {
    for (const pc of [this.publish, this.subscribe]) pc?.close();
    this.publish = null;
    this.subscribe = null;
    this.remote = new Map();
  }

  finish(reason, _quiet, details = null) {
    if (this.ended) return;
    this.ended = true;
    this.state = 'ended';
    for (const off of this.offs.splice(0)) off();
    this.closePeers();
    for (const track of Object.values(this.local)) track?.stop();
    this.emit('ended', reason, details);
  }

  /** The participant object of this socket, from the latest call.state. */
  me() {
    return this.call?.participants.find((p) => p.id === this.participantId) ?? null;
  }

  /** Others in the call (everyone but this socket's participant). */
  others() {
    return (this.call?.participants ?? []).filter((p) => p.id !== this.participantId);
  }
}
