// How values from the server read on the page. Times are milliseconds since the epoch.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export const ROLE_LABELS = { admin: 'Administrator', member: 'Member', guest: 'Guest' };

export function roleLabel(role) {
  return ROLE_LABELS[role] ?? role;
}

export function formatDateTime(ms) {
  return ms == null ? '' : dateTime.format(new Date(ms));
}

export function formatDate(ms) {
  return ms == null ? '' : dateOnly.format(new Date(ms));
}

const UNITS = [
  ['year', 365 * 24 * 3600e3],
  ['month', 30 * 24 * 3600e3],
  ['day', 24 * 3600e3],
  ['hour', 3600e3],
  ['minute', 60e3],
];

/** "in 3 days", "2 hours ago", "now". */
export function formatRelative(ms, now = Date.now()) {
  const diff = ms - now;
  for (const [unit, size] of UNITS) {
    if (Math.abs(diff) >= size) return relative.format(Math.round(diff / size), unit);
  }
  return 'just now';
}

export function pluralSeconds(seconds) {
  return seconds === 1 ? '1 second' : `${seconds} seconds`;
}

/** Up to two initials for an avatar. */
export function initials(name) {
  const words = String(name ?? '')
    .trim()
    .split(/\s+/)
    .filter((w) => /[\p{L}\p{N}]/u.test(w));
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  const first = (word) => word.match(/[\p{L}\p{N}]/u)?.[0]?.toUpperCase() ?? '';
  return letters.map(first).join('') || '?';
}

/** A stable colour slot 0..7 for a username. */
export function colourSlot(text) {
  let hash = 0;
  for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 8;
}
