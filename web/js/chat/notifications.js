// Notifications in the browser: desktop notifications and a short sound for
// the server's `notify` events, the unread count in the tab title and a dot
// on the favicon, the user's preferences for this browser, and a polite
// banner that asks for the permission to notify.
//
// The title: the count goes in front of whatever title the app sets, as
// "(3) general · collab". This module watches the <title> element with a
// MutationObserver, so the rest of the app just keeps setting document.title
// as it always does (main.js's show()); there is nothing to call.
//
// A `notify` with `silent: true` (the user is on do-not-disturb, busy with
// "silence when busy", or in quiet hours: docs/protocol.md "Notifications")
// shows as the badge only: no desktop notification, no sound. Nor is there
// one for the room the user is looking at in a focused tab, in this tab or
// another of this browser. Several tabs of one browser all get the event;
// only the first of them notifies.

import { h } from '../dom.js';
import { isDirect, roomName, roomPath } from './rooms.js';

const PREFS_KEY = (userId) => `collab.prefs.${userId}`;
const PROMPT_KEY = (userId) => `collab.notifyPrompt.${userId}`;
const VIEWING_KEY = (userId) => `collab.viewing.${userId}`;
const NOTIFIED_KEY = (userId) => `collab.notified.${userId}`;
const VIEWING_REFRESH_MS = 30e3;
const VIEWING_FRESH_MS = 75e3;
const NOTIFIED_KEEP = 50;
const LOGO = '/img/logo.svg';

// -- preferences (per user, per browser) -----------------------------------------

function readJson(key) {
  try {
    const raw = window.localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

function writeJson(key, value) {
  try {
    window.localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or forbidden (private mode): the setting lasts for this page only.
  }
}

export function notificationsSupported() {
  return typeof window.Notification === 'function';
}

/** 'granted' | 'denied' | 'default' | 'unsupported'. */
export function notificationPermission() {
  return notificationsSupported() ? window.Notification.permission : 'unsupported';
}

/**
 * The user's notification preferences in this browser: {desktop, sound}.
 * Until set, sound is on, and desktop notifications are on when the browser
 * already allows them for this site.
 */
export function getPrefs(userId) {
  const stored = readJson(PREFS_KEY(userId)) ?? {};
  return {
    desktop: typeof stored.desktop === 'boolean' ? stored.desktop : notificationPermission() === 'granted',
    sound: typeof stored.sound === 'boolean' ? stored.sound : true,
  };
}

/** Change some of the preferences ({desktop?, sound?}); returns them all. */
export function setPrefs(userId, prefs) {
  const next = { ...getPrefs(userId), ...prefs };
  const clean = { desktop: Boolean(next.desktop), sound: Boolean(next.sound) };
  writeJson(PREFS_KEY(userId), clean);
  return clean;
}

/**
 * Ask the browser for permission (must run inside a click or key handler).
 * Resolves to the permission now: 'granted', 'denied', 'default' or 'unsupported'.
 */
export async function requestPermission() {
  if (!notificationsSupported()) return 'unsupported';
  try {
    // Old Safari only takes a callback; newer browsers return a promise.
    const answer = await new Promise((resolve) => {
      const promise = window.Notification.requestPermission(resolve);
      if (promise && typeof promise.then === 'function') promise.then(resolve, () => resolve(null));
    });
    return answer ?? window.Notification.permission;
  } catch {
    return window.Notification.permission;
  }
}

// -- sound ------------------------------------------------------------------------

let audio = null;

function audioContext() {
  const Context = window.AudioContext ?? window.webkitAudioContext;
  if (!Context) return null;
  if (!audio) {
    try {
      audio = new Context();
    } catch {
      return null;
    }
  }
  return audio;
}

/**
 * Browsers start audio only after a user gesture: make the audio context on
 * one (while `wanted()` says sound is on), so later notifications can play.
 */
function unlockAudioOnGesture(wanted) {
  const options = { capture: true, passive: true };
  const unlock = () => {
    if (!wanted()) return;
    const context = audioContext();
    if (!context) return;
    if (context.state === 'suspended') context.resume().catch(() => {});
    if (context.state === 'running') off();
  };
  const off = () => {
    window.removeEventListener('pointerdown', unlock, options);
    window.removeEventListener('keydown', unlock, options);
  };
  window.addEventListener('pointerdown', unlock, options);
  window.addEventListener('keydown', unlock, options);
  return off;
}

function chime(context) {
  const start = context.currentTime + 0.01;
  const tone = (frequency, at, length) => {
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.type = 'sine';
    oscillator.frequency.setValueAtTime(frequency, at);
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.08, at + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + length);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(at);
    oscillator.stop(at + length + 0.02);
  };
  tone(784, start, 0.09); // G5
  tone(1047, start + 0.1, 0.1); // C6
}

/**
 * Two soft tones, about 200 ms; no audio file. Plays only if audio may run
 * now: a chime the browser holds back is dropped, not played late on the
 * user's next click.
 */
export function playNotificationSound() {
  const context = audioContext();
  if (!context) return;
  if (context.state === 'running') {
    chime(context);
    return;
  }
  const asked = Date.now();
  context
    .resume()
    .then(() => {
      if (context.state === 'running' && Date.now() - asked < 400) chime(context);
    })
    .catch(() => {});
}

// -- the badge: title prefix and favicon -------------------------------------------

/** Unread direct messages + mentions elsewhere, leaving out muted rooms. */
export function attentionCount(client) {
  let count = 0;
  for (const summary of client.rooms.values()) {
    if (!summary?.room || summary.notify === 'mute') continue;
    count += isDirect(summary.room) ? summary.unread ?? 0 : summary.mentions ?? 0;
  }
  return count;
}

const PREFIX = /^\(\d+\+?\) /;

function titleBadge() {
  let base = document.title.replace(PREFIX, '');
  let count = 0;
  let written = null;

  const apply = () => {
    const want = count > 0 ? `(${count > 99 ? '99+' : count}) ${base}` : base;
    if (document.title !== want) {
      written = want;
      document.title = want;
    }
  };
  const observer = new MutationObserver(() => {
    if (document.title === written) return;
    base = document.title.replace(PREFIX, '');
    written = null;
    apply();
  });
  observer.observe(document.head, { childList: true, subtree: true, characterData: true });

  return {
    set(n) {
      count = n;
      apply();
    },
    stop() {
      observer.disconnect();
      if (document.title === written) document.title = base;
    },
  };
}

function faviconBadge() {
  let link = document.querySelector('link[rel~="icon"]');
  const created = !link;
  if (!link) {
    link = h('link', { rel: 'icon', href: LOGO, type: 'image/svg+xml' });
    document.head.append(link);
  }
  const original = { href: link.getAttribute('href'), type: link.getAttribute('type') };
  let on = false;
  let dataUrl = null;
  let drawing = null;

  const restore = () => {
    if (original.href === null) link.removeAttribute('href');
    else link.setAttribute('href', original.href);
    if (original.type === null) link.removeAttribute('type');
    else link.setAttribute('type', original.type);
  };

  const draw = () => {
    drawing ??= new Promise((resolve) => {
      const size = 64;
      const image = new Image();
      image.onload = () => {
        try {
          const canvas = document.createElement('canvas');
          canvas.width = size;
          canvas.height = size;
          const g = canvas.getContext('2d');
          g.drawImage(image, 0, 0, size, size);
          const styles = getComputedStyle(document.documentElement);
          const red = styles.getPropertyValue('--danger').trim() || 'red';
          const ring = styles.getPropertyValue('--surface').trim() || 'white';
          const r = 15;
          const cx = size - r - 1;
          const cy = r + 1;
          g.beginPath();
          g.arc(cx, cy, r + 4, 0, Math.PI * 2);
          g.fillStyle = ring;
          g.fill();
          g.beginPath();
          g.arc(cx, cy, r, 0, Math.PI * 2);
          g.fillStyle = red;
          g.fill();
          resolve(canvas.toDataURL('image/png'));
        } catch {
          resolve(null);
        }
      };
      image.onerror = () => resolve(null);
      image.src = LOGO;
    });
    return drawing;
  };

  return {
    async set(show) {
      if (show === on) return;
      on = show;
      if (!show) {
        restore();
        return;
      }
      dataUrl ??= await draw();
      if (on && dataUrl) {
        link.setAttribute('type', 'image/png');
        link.setAttribute('href', dataUrl);
      }
    },
    stop() {
      on = false;
      if (created) link.remove();
      else restore();
    },
  };
}

// -- who is looking at which room (shared by the tabs of this browser) ---------------------

function hashPath() {
  let raw = window.location.hash.replace(/^#/, '');
  try {
    raw = decodeURI(raw);
  } catch {
    // Route on the raw text.
  }
  return raw.startsWith('/') ? raw : `/${raw}`;
}

function pathShowsRoom(path, roomId) {
  const base = roomPath(roomId);
  return path === base || path.startsWith(`${base}/`);
}

function lookingHere() {
  return document.visibilityState === 'visible' && document.hasFocus();
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** The first control after `el` in document order (where focus goes when `el` goes away). */
function focusableAfter(el) {
  for (let at = el; at; at = at.parentElement) {
    for (let sib = at.nextElementSibling; sib; sib = sib.nextElementSibling) {
      const found = sib.matches(FOCUSABLE) ? sib : sib.querySelector(FOCUSABLE);
      if (found) return found;
    }
  }
  return null;
}

// -- the module --------------------------------------------------------------------------

/**
 * Start notifying for `ctx` ({client, me, openRoom(roomId, seq), announce}).
 * Returns {stop(), permissionPrompt()}.
 */
export function startNotifications(ctx) {
  const { client } = ctx;
  const userId = (client.me ?? ctx.me).id;
  const tabId = Math.random().toString(36).slice(2);
  const title = titleBadge();
  const favicon = faviconBadge();
  const offs = [];

  // Badge.
  const updateBadge = () => {
    const n = attentionCount(client);
    title.set(n);
    favicon.set(n > 0);
  };
  offs.push(client.on('rooms', updateBadge));
  updateBadge();

  // Which room this tab shows while focused, for the other tabs to see. The
  // record is refreshed while it holds, so one a crashed tab left behind
  // soon counts for nothing.
  const forgetViewing = () => {
    if (readJson(VIEWING_KEY(userId))?.tab !== tabId) return;
    try {
      window.localStorage.removeItem(VIEWING_KEY(userId));
    } catch {
      // Nothing to do.
    }
  };
  const viewing = () => {
    if (lookingHere()) writeJson(VIEWING_KEY(userId), { tab: tabId, path: hashPath(), at: Date.now() });
    else forgetViewing();
  };
  const later = () => window.setTimeout(viewing, 0); // After focus has settled.
  const viewEvents = [
    [window, 'focus', later],
    [window, 'blur', later],
    [window, 'hashchange', later],
    [window, 'pagehide', forgetViewing],
    [document, 'visibilitychange', later],
  ];
  for (const [target, type, fn] of viewEvents) target.addEventListener(type, fn);
  const heartbeat = window.setInterval(() => {
    if (lookingHere()) viewing();
  }, VIEWING_REFRESH_MS);
  viewing();

  const someoneLooksAt = (roomId) => {
    if (lookingHere() && pathShowsRoom(hashPath(), roomId)) return true;
    const other = readJson(VIEWING_KEY(userId));
    return Boolean(
      other && other.tab !== tabId && Date.now() - other.at < VIEWING_FRESH_MS && pathShowsRoom(other.path, roomId),
    );
  };

  // Only one tab of this browser notifies for a message: the first to claim it.
  const claim = (messageId) => {
    const take = () => {
      const seen = readJson(NOTIFIED_KEY(userId));
      const list = Array.isArray(seen) ? seen : [];
      if (list.includes(messageId)) return false;
      list.push(messageId);
      writeJson(NOTIFIED_KEY(userId), list.slice(-NOTIFIED_KEEP));
      return true;
    };
    if (navigator.locks?.request) {
      return navigator.locks.request(`collab-notify-${userId}`, take).catch(() => take());
    }
    return Promise.resolve(take());
  };

  const titleFor = (frame) => {
    const who = frame.bot_name || frame.sender?.display_name || frame.sender?.username || 'Someone';
    const summary = client.rooms.get(frame.room);
    let where = null;
    if (frame.room_kind === 'channel' && frame.room_name) where = `#${frame.room_name}`;
    else if (frame.room_kind === 'private' && frame.room_name) where = frame.room_name;
    else if (frame.room_kind === 'group' && summary) where = roomName(summary.room, client.me ?? ctx.me);
    if (frame.reason === 'mention') return where ? `${who} mentioned you in ${where}` : `${who} mentioned you`;
    return where ? `${who} in ${where}` : who;
  };

  const showDesktop = (frame) => {
    let notification;
    try {
      notification = new window.Notification(titleFor(frame), {
        body: frame.excerpt || 'Sent a file',
        tag: `collab-${frame.room}`,
        icon: LOGO,
        silent: true,
      });
    } catch {
      return; // Some mobile browsers allow notifications only from a service worker.
    }
    notification.onclick = () => {
      window.focus();
      ctx.openRoom(frame.room, frame.seq);
      notification.close();
    };
  };

  offs.push(
    client.on('notify', async (frame) => {
      if (!frame || frame.silent) return;
      if (someoneLooksAt(frame.room)) return;
      const prefs = getPrefs(userId);
      const desktop = prefs.desktop && notificationPermission() === 'granted';
      if (!desktop && !prefs.sound) return;
      if (frame.message != null && !(await claim(frame.message))) return;
      if (desktop) showDesktop(frame);
      if (prefs.sound) playNotificationSound();
    }),
  );
  offs.push(unlockAudioOnGesture(() => getPrefs(userId).sound));

  /**
   * A small banner asking to turn on desktop notifications, or null when
   * there is nothing to ask (allowed or blocked already, not supported, or
   * dismissed before). Show it after the user has done something, never on load.
   */
  function permissionPrompt() {
    if (notificationPermission() !== 'default') return null;
    if (readJson(PROMPT_KEY(userId))?.dismissed) return null;
    const text = h('p', { class: 'notify-prompt__text' }, 'Get a desktop notification for direct messages and mentions?');
    const turnOn = h('button', { type: 'button', class: 'btn btn--primary btn--small' }, 'Turn on');
    const notNow = h('button', { type: 'button', class: 'btn btn--secondary btn--small notify-prompt__later' }, 'Not now');
    const actions = h('div', { class: 'notify-prompt__actions' }, turnOn, notNow);
    const banner = h(
      'div',
      { class: 'notify-prompt', role: 'region', 'aria-label': 'Desktop notifications' },
      h('span', { class: 'notify-prompt__icon', 'aria-hidden': 'true' }, '🔔'),
      h('div', { class: 'notify-prompt__main' }, text, actions),
    );
    const remember = () => writeJson(PROMPT_KEY(userId), { dismissed: true, at: Date.now() });
    const dismiss = () => {
      remember();
      const hadFocus = banner.contains(document.activeElement);
      const next = hadFocus ? focusableAfter(banner) : null;
      banner.remove();
      next?.focus();
    };
    const say = (message, kind) => {
      text.textContent = message;
      banner.classList.add(`notify-prompt--${kind}`);
      text.setAttribute('role', 'status');
      actions.replaceChildren(h('button', { type: 'button', class: 'btn btn--secondary btn--small', onclick: dismiss }, 'OK'));
      actions.firstChild.focus();
    };
    notNow.addEventListener('click', () => {
      dismiss();
      ctx.announce?.('You can turn on desktop notifications later in Status settings.');
    });
    turnOn.addEventListener('click', async () => {
      turnOn.disabled = true;
      const answer = await requestPermission();
      if (answer === 'granted') {
        setPrefs(userId, { desktop: true });
        remember();
        say('Desktop notifications are on. You can change this in Status settings.', 'success');
      } else if (answer === 'denied') {
        remember();
        say('Notifications are blocked for this site. You can allow them in your browser’s site settings.', 'warning');
      } else {
        turnOn.disabled = false; // The browser's question was closed without an answer.
      }
    });
    return banner;
  }

  function stop() {
    for (const off of offs.splice(0)) off();
    for (const [target, type, fn] of viewEvents) target.removeEventListener(type, fn);
    window.clearInterval(heartbeat);
    forgetViewing();
    title.stop();
    favicon.stop();
  }

  return { stop, permissionPrompt };
}
