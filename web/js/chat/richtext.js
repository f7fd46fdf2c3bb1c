// A message's text as elements: links, @mentions and `code`, all else as text.
//
// Nothing here parses HTML. A link becomes an <a> only for http, https and
// mailto addresses, opened in a new tab without access to this one.

import { h } from '../dom.js';

const ROOM_WORDS = new Set(['room', 'all', 'here', 'channel', 'everyone']);
// A URL, a www. address, an e-mail address or an @mention; `code` spans are cut out first.
const TOKEN =
  /(\bhttps?:\/\/[^\s<>"]+|\bwww\.[^\s<>"]+\.[^\s<>"]+|\bmailto:[^\s<>"]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?<![\w@])@[A-Za-z0-9_.-]+)/g;
const TRAILING = /[.,:;!?'")\]}>]+$/;
const SAFE_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

/** An href for `text` if it is a safe link, else null. */
export function safeHref(text) {
  let candidate = text;
  if (/^www\./i.test(candidate)) candidate = `https://${candidate}`;
  else if (!/^[a-z]+:/i.test(candidate) && candidate.includes('@')) candidate = `mailto:${candidate}`;
  try {
    const url = new URL(candidate);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(text) {
  const href = safeHref(text);
  if (!href) return text;
  const external = !href.startsWith('mailto:');
  return h(
    'a',
    {
      class: 'msg-link',
      href,
      target: external ? '_blank' : null,
      rel: 'noopener noreferrer',
    },
    text,
  );
}

function mention(name, { mentions, me }) {
  const lower = name.toLowerCase();
  const isRoom = ROOM_WORDS.has(lower);
  if (!isRoom && !mentions.includes(lower)) return `@${name}`;
  const mine = isRoom || lower === me.username.toLowerCase();
  return h('span', { class: ['mention', mine && 'mention--me'], dataset: { user: lower } }, `@${name}`);
}

function inline(text, context) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    let token = match[0];
    const start = match.index;
    if (token.startsWith('@')) {
      parts.push(text.slice(last, start), mention(token.slice(1).replace(TRAILING, ''), context));
      const rest = token.slice(1).match(TRAILING)?.[0] ?? '';
      if (rest) parts.push(rest);
      last = start + token.length;
      continue;
    }
    const trail = token.match(TRAILING)?.[0] ?? '';
    // Keep a closing bracket that belongs to the URL: "(see https://x.org/a_(b))".
    if (trail.startsWith(')') && (token.match(/\(/g)?.length ?? 0) >= (token.match(/\)/g)?.length ?? 0)) {
      token = token.slice(0, token.length - trail.length + 1);
    } else if (trail) {
      token = token.slice(0, -trail.length);
    }
    parts.push(text.slice(last, start), link(token));
    last = start + token.length;
  }
  parts.push(text.slice(last));
  return parts.filter((part) => part !== '');
}

/**
 * The body of a message as nodes. `mentions` are the message's mentioned
 * usernames (only those are highlighted), `me` the signed-in user.
 */
export function richText(body, { mentions = [], me }) {
  const context = { mentions: mentions.map((m) => m.toLowerCase()), me };
  const nodes = [];
  // `code` spans first: nothing inside them is a link or a mention.
  const pieces = body.split(/(`[^`\n]+`)/);
  for (const piece of pieces) {
    if (piece.length > 2 && piece.startsWith('`') && piece.endsWith('`')) {
      nodes.push(h('code', { class: 'msg-code' }, piece.slice(1, -1)));
    } else if (piece) {
      nodes.push(...inline(piece, context));
    }
  }
  return nodes;
}

/** Whether a message speaks to `me` (a mention by name or of the whole room). */
export function mentionsMe(message, me) {
  return message.mentions_room || message.mentions.includes(me.username);
}
