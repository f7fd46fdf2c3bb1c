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

const EMPHASIS =
  /(\*\*[^*\n]+\*\*|~~[^~\n]+~~|(?<![\w*])\*[^*\s](?:[^*\n]*[^*\s])?\*(?![\w*])|(?<![\w_])_[^_\s](?:[^_\n]*[^_\s])?_(?![\w_]))/g;

/** **bold**, *italic* or _italic_, ~~struck~~ in plain text (no links in it). */
function emphasis(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(EMPHASIS)) {
    const token = match[0];
    parts.push(text.slice(last, match.index));
    if (token.startsWith('**')) parts.push(h('strong', {}, token.slice(2, -2)));
    else if (token.startsWith('~~')) parts.push(h('del', {}, token.slice(2, -2)));
    else parts.push(h('em', {}, token.slice(1, -1)));
    last = match.index + token.length;
  }
  parts.push(text.slice(last));
  return parts.filter((part) => part !== '');
}

function inline(text, context) {
  const parts = [];
  let last = 0;
  const plain = (chunk) => parts.push(...emphasis(chunk));
  for (const match of text.matchAll(TOKEN)) {
    let token = match[0];
    const start = match.index;
    if (token.startsWith('@')) {
      plain(text.slice(last, start));
      parts.push(mention(token.slice(1).replace(TRAILING, ''), context));
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
    plain(text.slice(last, start));
    parts.push(link(token));
    last = start + token.length;
  }
  plain(text.slice(last));
  return parts.filter((part) => part !== '');
}

/** Text with `code` spans: nothing inside them is a link, a mention or emphasis. */
function spans(text, context) {
  const nodes = [];
  for (const piece of text.split(/(`[^`\n]+`)/)) {
    if (piece.length > 2 && piece.startsWith('`') && piece.endsWith('`')) {
      nodes.push(h('code', { class: 'msg-code' }, piece.slice(1, -1)));
    } else if (piece) {
      nodes.push(...inline(piece, context));
    }
  }
  return nodes;
}

/** Lines starting with "> " become one quote block; the rest stays as it is. */
function blocks(text, context) {
  const nodes = [];
  const lines = text.split('\n');
  let plain = [];
  let quoted = [];
  const flushPlain = () => {
    if (plain.length) nodes.push(...spans(plain.join('\n'), context));
    plain = [];
  };
  const flushQuote = () => {
    if (quoted.length) nodes.push(h('blockquote', { class: 'msg-quote' }, spans(quoted.join('\n'), context)));
    quoted = [];
  };
  for (const line of lines) {
    if (/^>\s?/.test(line)) {
      flushPlain();
      quoted.push(line.replace(/^>\s?/, ''));
    } else {
      flushQuote();
      plain.push(line);
    }
  }
  flushPlain();
  flushQuote();
  return nodes;
}

/**
 * The body of a message as nodes. `mentions` are the message's mentioned
 * usernames (only those are highlighted), `me` the signed-in user. Knows a
 * little Markdown: ```code blocks```, `code`, **bold**, *italic*, ~~struck~~
 * and "> " quotes.
 */
export function richText(body, { mentions = [], me }) {
  const context = { mentions: mentions.map((m) => m.toLowerCase()), me };
  const nodes = [];
  const pieces = body.split(/```(?:[\w+-]*\n)?([\s\S]*?)```/);
  pieces.forEach((piece, index) => {
    if (index % 2 === 1) {
      nodes.push(h('pre', { class: 'msg-pre' }, h('code', {}, piece.replace(/\n$/, ''))));
    } else {
      // The line breaks around a code block belong to the block.
      const text = piece.replace(index > 0 ? /^\n/ : /^$/, '').replace(index < pieces.length - 1 ? /\n$/ : /^$/, '');
      if (text) nodes.push(...blocks(text, context));
    }
  });
  return nodes;
}

/** Whether a message speaks to `me` (a mention by name or of the whole room). */
export function mentionsMe(message, me) {
  return message.mentions_room || message.mentions.includes(me.username);
}
