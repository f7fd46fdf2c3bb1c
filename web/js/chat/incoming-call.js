// The incoming-call dialog: who calls, from where, Accept (audio or with
// video), Decline, or decline with a line of text. It rings with a tone made
// with WebAudio (no sound file to fetch), unless the ring is `quiet` (the
// user is in another call), and closes itself when the ring expires.

import { h, icon, uid } from '../dom.js';
import { openDialog } from './dialog.js';

const QUICK_REPLIES = ["Can't talk, in a meeting", "I'll call you back"];

/** A two-tone ring, repeated every 3 s, until stop(). */
function ringtone() {
  if (!window.AudioContext) return { stop() {} };
  const audio = new AudioContext();
  const burst = () => {
    const now = audio.currentTime;
    for (const [offset, freq] of [[0, 660], [0.4, 550], [1.0, 660], [1.4, 550]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.15, now + offset + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.35);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.4);
    }
  };
  audio.resume().catch(() => {});
  burst();
  const timer = window.setInterval(burst, 3000);
  return {
    stop() {
      window.clearInterval(timer);
      audio.close().catch(() => {});
    },
  };
}

/**
 * Show the ring. `actions`: accept(video), decline(text | null), dismissed()
 * (it closed for any reason); `now()` is the server's clock, which
 * `expires_at` is on. Returns {close()}.
 */
export function incomingCall(ring, { label, accept, decline, dismissed, now = () => Date.now() }) {
  const caller = ring.caller?.display_name ?? 'Someone';
  const tone = ring.quiet ? { stop() {} } : ringtone();
  let chosen = false;

  const textId = uid('decline-text');
  const text = h('input', { id: textId, class: 'input', type: 'text', maxlength: '200', autocomplete: 'off' });
  const sendText = h('button', { type: 'button', class: 'btn btn--secondary btn--small' }, 'Send and decline');
  const replies = h(
    'div',
    { class: 'ring__replies', hidden: true },
    h('p', { class: 'ring__replies-title' }, 'Decline with a message'),
    h(
      'ul',
      { class: 'ring__quick' },
      QUICK_REPLIES.map((reply) => h('li', {}, h('button', { type: 'button', class: 'btn btn--secondary btn--small', onclick: () => choose(() => decline(reply)) }, reply))),
    ),
    h('div', { class: 'ring__own' }, h('label', { class: 'label', for: textId }, 'Your own message'), h('div', { class: 'ring__own-row' }, text, sendText)),
  );
  const replyToggle = h('button', { type: 'button', class: 'btn btn--secondary btn--small ring__reply-toggle', 'aria-expanded': 'false' }, 'Decline with a message…');
  replyToggle.addEventListener('click', () => {
    replies.hidden = !replies.hidden;
    replyToggle.setAttribute('aria-expanded', String(!replies.hidden));
    if (!replies.hidden) replies.querySelector('button')?.focus();
  });
  const submitText = () => {
    const value = text.value.trim();
    if (value) choose(() => decline(value));
    else text.focus();
  };
  sendText.addEventListener('click', submitText);
  text.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      submitText();
    }
  });

  const acceptAudio = h('button', { type: 'button', class: 'btn btn--primary ring__accept' }, icon('phone'), h('span', {}, 'Accept'));
  const acceptVideo = h('button', { type: 'button', class: 'btn btn--primary ring__accept' }, icon('video'), h('span', {}, 'Accept with video'));
  const declineButton = h('button', { type: 'button', class: 'btn btn--danger' }, icon('hangup'), h('span', {}, 'Decline'));
  acceptAudio.addEventListener('click', () => choose(() => accept(false)));
  acceptVideo.addEventListener('click', () => choose(() => accept(true)));
  declineButton.addEventListener('click', () => choose(() => decline(null)));

  const dialog = openDialog({
    title: `${caller} is calling`,
    description: `${ring.video ? 'Video call' : 'Call'} in ${label}${ring.quiet ? ' (you are in another call)' : ''}`,
    className: 'modal--ring',
    content: [
      h('div', { class: 'ring__who', 'aria-hidden': 'true' }, h('span', { class: 'ring__avatar' }, caller.slice(0, 1).toUpperCase())),
      replyToggle,
      replies,
    ],
    actions: [declineButton, acceptAudio, acceptVideo],
    initialFocus: ring.video ? acceptVideo : acceptAudio,
    closeOnBackdrop: false,
    onClose: (reason) => {
      tone.stop();
      window.clearTimeout(expiry);
      // Escape or ×: the person does not want it now — decline without text.
      if (!chosen && reason === 'cancel') decline(null);
      dismissed();
    },
  });
  const expiry = window.setTimeout(() => close('expired'), Math.max(0, (ring.expires_at ?? now() + 45000) - now()));

  function choose(fn) {
    if (chosen) return;
    chosen = true;
    dialog.close('chosen');
    fn();
  }
  function close(reason = 'closed') {
    chosen = true;
    dialog.close(reason);
  }
  return { close: () => close('closed') };
}
