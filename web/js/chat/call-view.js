// The call screen, shown beside the room's chat: the participants as a grid
// of tiles (name, mute icon, speaking highlight, connection quality), the
// shared screen as the large stage when someone shares, and the controls
// (mute, camera, share screen, devices, leave). It only reads the CallSession
// and calls its methods; remote audio plays from hidden <audio> elements,
// since a browser decodes remote audio only while something plays it.

import { deviceProblem, listDevices } from '../call.js';
import { h, icon, setText, uid } from '../dom.js';

const QUALITY_TEXT = { good: 'good connection', fair: 'fair connection', poor: 'poor connection' };

function initials(name) {
  return (name || '?')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((part) => part[0].toUpperCase())
    .join('');
}

function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(total / 60);
  const s = String(total % 60).padStart(2, '0');
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Show `track` in `video` (or clear it), touching srcObject only when it changes. */
function showTrack(video, track) {
  const current = video.srcObject?.getTracks()[0] ?? null;
  if (current === track) return;
  video.srcObject = track ? new MediaStream([track]) : null;
  if (track) video.play().catch(() => {});
}

/** A toggle button of the control bar (aria-pressed). */
function toggle(label, iconOn, iconOff, onClick) {
  const text = h('span', { class: 'call__control-text' });
  const button = h('button', { type: 'button', class: 'call__control', 'aria-pressed': 'false' }, icon(iconOn), text);
  button.addEventListener('click', onClick);
  return {
    button,
    set(pressed, labelText = label, useOff = pressed) {
      button.setAttribute('aria-pressed', String(pressed));
      button.replaceChildren(icon(useOff ? iconOff : iconOn), text);
      setText(text, labelText);
    },
  };
}

/**
 * `ctx`: the chat context (client, announce, toggleCallChat). `label`: the
 * room's label ("#general"). Returns {node, focus(), notice(text, kind), showFailed(onClose), close()}.
 */
export function callView(ctx, session, { label }) {
  const titleId = uid('call-title');
  const title = h('h2', { class: 'call__title', id: titleId, tabindex: '-1' }, `Call in ${label}`);
  const status = h('p', { class: 'call__status' });
  const notices = h('div', { class: 'call__notices', role: 'status', 'aria-live': 'polite' });
  const stageVideo = h('video', { class: 'call__stage-video', autoplay: true, playsinline: true, muted: true });
  stageVideo.muted = true;
  const stageLabel = h('p', { class: 'call__stage-label' });
  const stage = h('figure', { class: 'call__stage', hidden: true }, stageVideo, h('figcaption', {}, stageLabel));
  const grid = h('ul', { class: 'call__grid', 'aria-label': 'People in the call' });
  const audios = h('div', { class: 'call__audio', hidden: true });
  const chatToggle = h('button', { type: 'button', class: 'call__chat-toggle btn btn--secondary btn--small', 'aria-expanded': 'false' }, icon('chat'), h('span', {}, 'Chat'));
  chatToggle.addEventListener('click', () => {
    const open = chatToggle.getAttribute('aria-expanded') !== 'true';
    chatToggle.setAttribute('aria-expanded', String(open));
    ctx.toggleCallChat?.(open);
  });

  // -- controls -------------------------------------------------------------------
  const problem = (text) => notice(text, 'warning');
  const mute = toggle('Mute', 'mic', 'mic-off', () => session.setMuted(!session.muted.mic));
  const camera = toggle('Camera', 'video', 'video-off', async () => {
    camera.button.disabled = true;
    try {
      await session.setCamera(!session.local.camera);
    } catch (error) {
      problem(`${deviceProblem(error, 'camera')} The call goes on without it.`);
    } finally {
      camera.button.disabled = false;
    }
  });
  const share = toggle('Share screen', 'screen', 'screen', async () => {
    try {
      if (session.local.screen) await session.stopScreen();
      else await session.shareScreen();
    } catch (error) {
      if (error?.name !== 'NotAllowedError') problem(`Your screen could not be shared (${error?.message || error?.name}).`);
    }
  });
  const devicesButton = h('button', { type: 'button', class: 'call__control', 'aria-expanded': 'false' }, icon('sliders'), h('span', { class: 'call__control-text' }, 'Devices'));
  const micSelect = h('select', { class: 'input select', id: uid('call-mic') });
  const camSelect = h('select', { class: 'input select', id: uid('call-cam') });
  const devicesPanel = h(
    'div',
    { class: 'call__devices', hidden: true },
    h('div', { class: 'field' }, h('label', { class: 'label', for: micSelect.id }, 'Microphone'), micSelect),
    h('div', { class: 'field' }, h('label', { class: 'label', for: camSelect.id }, 'Camera'), camSelect),
  );
  const fillDevices = async () => {
    const { mics, cameras } = await listDevices().catch(() => ({ mics: [], cameras: [] }));
    const fill = (select, list, currentId, noun) => {
      select.replaceChildren(...list.map((d, i) => h('option', { value: d.deviceId }, d.label || `${noun} ${i + 1}`)));
      if (!list.length) select.append(h('option', { value: '' }, `No ${noun.toLowerCase()} found`));
      select.disabled = !list.length;
      if (currentId) select.value = currentId;
    };
    fill(micSelect, mics, session.local.mic?.getSettings().deviceId, 'Microphone');
    fill(camSelect, cameras, session.local.camera?.getSettings().deviceId, 'Camera');
  };
  devicesButton.addEventListener('click', () => {
    devicesPanel.hidden = !devicesPanel.hidden;
    devicesButton.setAttribute('aria-expanded', String(!devicesPanel.hidden));
    if (!devicesPanel.hidden) fillDevices();
  });
  micSelect.addEventListener('change', () => session.switchMicrophone(micSelect.value).catch((error) => problem(deviceProblem(error, 'microphone'))));
  camSelect.addEventListener('change', () => session.switchCamera(camSelect.value).catch((error) => problem(deviceProblem(error, 'camera'))));
  const onDeviceChange = () => {
    if (!devicesPanel.hidden) fillDevices();
  };
  navigator.mediaDevices?.addEventListener?.('devicechange', onDeviceChange);

  const leave = h('button', { type: 'button', class: 'call__control call__control--leave' }, icon('hangup'), h('span', { class: 'call__control-text' }, 'Leave'));
  leave.addEventListener('click', () => session.leave());
  const controls = h('div', { class: 'call__controls', role: 'toolbar', 'aria-label': 'Call controls' }, mute.button, camera.button, share.button, devicesButton, leave);

  const node = h(
    'section',
    { class: 'call', 'aria-labelledby': titleId },
    h('div', { class: 'call__head' }, h('div', { class: 'call__titles' }, title, status), chatToggle),
    notices,
    h('div', { class: 'call__body' }, stage, grid),
    devicesPanel,
    controls,
    audios,
  );

  // -- rendering ------------------------------------------------------------------
  const tiles = new Map(); // participant id → {node, video, name, muted, quality}
  const audioEls = new Map(); // participant id → <audio>
  const seen = new Map(); // participant id → display name, for join/leave announcements
  let announcedStart = false;

  const tileFor = (id) => {
    let tile = tiles.get(id);
    if (tile) return tile;
    const video = h('video', { class: 'tile__video', autoplay: true, playsinline: true, muted: true });
    video.muted = true;
    const avatar = h('span', { class: 'tile__avatar', 'aria-hidden': 'true' });
    const name = h('span', { class: 'tile__name' });
    const muted = h('span', { class: 'tile__muted', hidden: true }, icon('mic-off'), h('span', { class: 'visually-hidden' }, 'muted'));
    const quality = h('span', { class: 'tile__quality', hidden: true });
    const node = h('li', { class: 'tile', dataset: { participant: id } }, video, avatar, h('div', { class: 'tile__bar' }, muted, name, quality));
    tile = { node, video, avatar, name, muted, quality };
    tiles.set(id, tile);
    return tile;
  };

  const render = () => {
    const call = session.call;
    const me = session.me();
    const others = session.others();
    // Status line.
    if (session.state === 'connecting') setText(status, session.call ? 'Reconnecting…' : 'Connecting…');
    else if (session.disconnectedAt !== null) setText(status, 'Connection lost: reconnecting…');
    else if (call && !others.length && call.ringing.length) setText(status, `Ringing ${call.ringing.map((u) => u.display_name).join(', ')}…`);
    else if (call && !others.length) setText(status, 'Waiting for others to join…');
    else if (call) setText(status, `${others.length + 1} people · ${formatDuration(ctx.client.now() - (call.answered_at ?? call.started_at))}`);
    const ringingOut = call && !others.length && call.ringing.length > 0 && !call.answered_at && call.started_by.id === ctx.client.me.id;
    setText(leave.querySelector('.call__control-text'), ringingOut ? 'Cancel' : 'Leave');
    leave.setAttribute('aria-label', ringingOut ? 'Cancel the call' : 'Leave the call');

    // Controls: toggles keep their names; aria-pressed says their state.
    mute.set(session.muted.mic || !session.local.mic, 'Mute');
    mute.button.disabled = !session.local.mic;
    camera.set(Boolean(session.local.camera), 'Camera', !session.local.camera);
    share.set(Boolean(session.local.screen), 'Share screen');
    share.button.hidden = !navigator.mediaDevices?.getDisplayMedia;

    // Tiles: me first, then the others in joining order.
    const people = [...(me ? [me] : []), ...others];
    const present = new Set();
    const nodes = [];
    for (const person of people) {
      present.add(person.id);
      const mine = person.id === session.participantId;
      const tile = tileFor(person.id);
      const display = person.user.display_name;
      setText(tile.name, mine ? `${display} (you)` : display);
      setText(tile.avatar, initials(display));
      const track = mine ? session.local.camera : session.remote.get(person.id)?.camera;
      const cameraOn = Boolean(track) && (mine || person.camera);
      showTrack(tile.video, cameraOn ? track : null);
      tile.video.hidden = !cameraOn;
      tile.avatar.hidden = cameraOn;
      tile.node.classList.toggle('tile--mine', mine);
      tile.node.classList.toggle('tile--away', !person.connected);
      const isMuted = mine ? session.muted.mic || !session.local.mic : person.muted;
      tile.muted.hidden = !isMuted;
      tile.quality.hidden = !person.quality;
      tile.quality.className = `tile__quality tile__quality--${person.quality ?? 'unknown'}`;
      tile.quality.replaceChildren(icon('signal'), h('span', { class: 'visually-hidden' }, QUALITY_TEXT[person.quality] ?? ''));
      tile.quality.title = QUALITY_TEXT[person.quality] ?? '';
      tile.node.setAttribute('aria-label', [mine ? `${display} (you)` : display, isMuted ? 'muted' : null, person.connected ? null : 'reconnecting', QUALITY_TEXT[person.quality]].filter(Boolean).join(', '));
      nodes.push(tile.node);
    }
    for (const [id, tile] of tiles) {
      if (!present.has(id)) {
        showTrack(tile.video, null);
        tiles.delete(id);
      }
    }
    // Moving a playing <video> out of the page pauses it: touch only what moved.
    if (nodes.length !== grid.children.length || nodes.some((n, i) => grid.children[i] !== n)) {
      grid.replaceChildren(...nodes);
      for (const tile of tiles.values()) if (tile.video.srcObject) tile.video.play().catch(() => {});
    }
    grid.dataset.count = String(nodes.length);
    renderSpeaking();
    renderStage(people);
    renderAudio();
    announce(people);
  };

  const renderStage = (people) => {
    let sharer = null;
    let track = null;
    if (session.local.screen) {
      sharer = session.me();
      track = session.local.screen;
    }
    for (const person of people) {
      const screen = session.remote.get(person.id)?.screen;
      if (!track && screen && person.screen) {
        sharer = person;
        track = screen;
      }
    }
    stage.hidden = !track;
    node.classList.toggle('call--stage', Boolean(track));
    showTrack(stageVideo, track);
    const who = sharer?.id === session.participantId ? 'You are' : `${sharer?.user.display_name ?? 'Someone'} is`;
    setText(stageLabel, track ? `${who} sharing the screen` : '');
    stageVideo.setAttribute('aria-label', track ? `${who} sharing the screen` : 'Shared screen');
  };

  const renderAudio = () => {
    for (const [id, entry] of session.remote) {
      if (!entry.audio) continue;
      let el = audioEls.get(id);
      if (!el) {
        el = h('audio', { autoplay: true });
        audioEls.set(id, el);
        audios.append(el);
      }
      if (el.srcObject?.getTracks()[0] !== entry.audio) {
        el.srcObject = new MediaStream([entry.audio]);
        el.play().catch(() => {});
      }
    }
    for (const [id, el] of audioEls) {
      if (!session.remote.get(id)?.audio) {
        el.srcObject = null;
        el.remove();
        audioEls.delete(id);
      }
    }
  };

  const renderSpeaking = () => {
    for (const [id, tile] of tiles) tile.node.classList.toggle('tile--speaking', session.speaking.has(id));
  };

  const announce = (people) => {
    const now = new Map(people.map((p) => [p.id, p.user.display_name]));
    if (announcedStart) {
      for (const [id, name] of now) if (!seen.has(id) && id !== session.participantId) ctx.announce(`${name} joined the call`);
      for (const [id, name] of seen) if (!now.has(id) && id !== session.participantId) ctx.announce(`${name} left the call`);
    }
    if (session.call) announcedStart = true;
    seen.clear();
    for (const [id, name] of now) seen.set(id, name);
  };

  function notice(text, kind = 'info') {
    const item = h('p', { class: `call__notice call__notice--${kind}` }, h('span', {}, text));
    const dismiss = h('button', { type: 'button', class: 'call__notice-close', 'aria-label': 'Dismiss' }, icon('close'));
    dismiss.addEventListener('click', () => item.remove());
    item.append(dismiss);
    notices.append(item);
  }

  const offs = [
    session.on('change', render),
    session.on('media', render),
    session.on('speaking', renderSpeaking),
    session.on('device', (text) => problem(text)),
    session.on('declined', (user, text) => {
      const line = text ? `${user.display_name} declined: “${text}”` : `${user.display_name} declined the call.`;
      notice(line, 'info');
      ctx.announce(line);
    }),
  ];
  const ticker = window.setInterval(() => {
    if (session.call && session.others().length) render();
  }, 1000);
  render();

  // A test hook (documented in tests/browser/test_call_ui.py): the session of
  // the call on screen, so a test can read its connections' getStats().
  window.__collabCall = session;

  return {
    node,
    focus: () => title.focus(),
    notice,
    showFailed(onClose) {
      setText(status, 'Not connected');
      controls.replaceChildren(h('button', { type: 'button', class: 'call__control call__control--leave', onclick: onClose }, icon('close'), h('span', { class: 'call__control-text' }, 'Close')));
    },
    close() {
      for (const off of offs) off();
      window.clearInterval(ticker);
      navigator.mediaDevices?.removeEventListener?.('devicechange', onDeviceChange);
      for (const tile of tiles.values()) showTrack(tile.video, null);
      for (const el of audioEls.values()) el.srcObject = null;
      showTrack(stageVideo, null);
      if (window.__collabCall === session) window.__collabCall = null;
      ctx.toggleCallChat?.(false);
      node.remove();
    },
  };
}
