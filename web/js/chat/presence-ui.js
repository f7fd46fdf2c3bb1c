// How someone's presence reads and looks: the coloured dot, the one-line
// status, the custom status line, an avatar with its dot.
//
// Pure render helpers: nothing here subscribes to anything. A view that shows
// presence re-renders (or calls these again) on the client's 'presence' event.
// A presence object is the server's (docs/protocol.md, "The presence object"):
// {user, username, status, reason, text, emoji, until, text_until, last_seen}.
//
// The dots differ by shape as well as by colour, so they read without colour:
// available ● filled circle, busy ◆ filled diamond, dnd ⊖ circle with a bar,
// away ◐ half-filled ring, offline ○ empty ring (styles in css/presence.css).

import { h } from '../dom.js';
import { formatRelative } from '../format.js';
import { avatar } from '../views/layout.js';

export const STATUS_LABELS = {
  available: 'Available',
  busy: 'Busy',
  dnd: 'Do not disturb',
  away: 'Away',
  offline: 'Offline',
};

/** The status of a presence object, 'offline' for anything unknown or missing. */
export function presenceStatus(presence) {
  const status = presence?.status;
  return Object.hasOwn(STATUS_LABELS, status) ? status : 'offline';
}

/** "Busy", "Do not disturb", …; "" for no presence. */
export function statusLabel(presence) {
  return presence ? STATUS_LABELS[presenceStatus(presence)] : '';
}

/**
 * The status dot. Options: `size` '' | 'small' | 'large'; `decorative` true
 * hides it from assistive technology (when the status is also said in text
 * nearby); `label` overrides the spoken label (default: "Busy", …).
 */
export function presenceDot(presence, { size = '', decorative = false, label } = {}) {
  const status = presenceStatus(presence);
  const known = Boolean(presence);
  const dot = h('span', {
    class: ['presence-dot', `presence-dot--${status}`, size && `presence-dot--${size}`, !known && 'presence-dot--unknown'],
    dataset: { status },
  });
  if (decorative) {
    dot.setAttribute('aria-hidden', 'true');
  } else {
    const spoken = label ?? (known ? STATUS_LABELS[status] : 'Status unknown');
    dot.setAttribute('role', 'img');
    dot.setAttribute('aria-label', spoken);
    dot.title = known ? statusText(presence) || spoken : spoken;
  }
  return dot;
}

/** "Last seen 5 minutes ago" for someone offline whose last visit is known; "" otherwise. */
export function lastSeenText(presence, now = Date.now()) {
  if (presenceStatus(presence) !== 'offline' || presence?.last_seen == null) return '';
  return `Last seen ${formatRelative(presence.last_seen, now)}`;
}

/**
 * One line for people: "Busy · in a call", "Away · idle since 14:10",
 * "Offline · last seen 5 minutes ago", "Available"; "" for no presence.
 * `now` (ms) lets a caller use the server's clock (client.now()).
 */
export function statusText(presence, now = Date.now()) {
  if (!presence) return '';
  const status = presenceStatus(presence);
  const label = STATUS_LABELS[status];
  if (status === 'offline') {
    return presence.last_seen != null ? `${label} · last seen ${formatRelative(presence.last_seen, now)}` : label;
  }
  const reason = typeof presence.reason === 'string' ? presence.reason.trim() : '';
  return reason ? `${label} · ${reason}` : label;
}

/** True when the presence has a custom status line (text or emoji). */
export function hasCustomStatus(presence) {
  return Boolean(presence?.text || presence?.emoji);
}

/**
 * The custom status line (emoji + text) as an element, or null when there is
 * none. `className` adds a class (for example to clamp it in a list row).
 */
export function customStatus(presence, { className } = {}) {
  if (!hasCustomStatus(presence)) return null;
  const text = presence.text ?? '';
  return h(
    'span',
    { class: ['custom-status', className], title: [presence.emoji, text].filter(Boolean).join(' ') },
    presence.emoji ? h('span', { class: 'custom-status__emoji' }, presence.emoji) : null,
    text ? h('span', { class: 'custom-status__text' }, text) : null,
  );
}

/**
 * The avatar of views/layout.js with the presence dot at its bottom-right
 * corner. `size` is the avatar's ('' or 'large'); the dot follows it. Pass
 * `{decorative: true}` when the status is said in text next to it.
 */
export function avatarWithPresence(user, presence, size = '', { decorative = false } = {}) {
  return h(
    'span',
    { class: ['avatar-presence', size && `avatar-presence--${size}`] },
    avatar(user, size),
    presenceDot(presence, { size: size === 'large' ? 'large' : '', decorative }),
  );
}
