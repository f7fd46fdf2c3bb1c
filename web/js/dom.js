// Tiny helpers for building elements. Text always goes in as text nodes:
// nothing here ever parses a string as HTML.

const FORBIDDEN_PROPS = new Set(['innerHTML', 'outerHTML', 'srcdoc', 'style']);

/**
 * Build an element: h('p', {class: 'hint'}, 'Some ', h('strong', {}, 'text')).
 *
 * Props: `class` (string or array), `dataset` (object), `on<event>` (a function),
 * `value` (set as a property after the children, so it works for <select>),
 * `true` booleans become empty attributes; false/null/undefined are skipped.
 * Children: nodes, strings and numbers (as text), arrays of them; null and
 * false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  let value;
  for (const [key, raw] of Object.entries(props ?? {})) {
    if (FORBIDDEN_PROPS.has(key)) {
      throw new Error(`dom.h: '${key}' is not allowed; build content from nodes and classes`);
    }
    if (raw === undefined || raw === null || raw === false) continue;
    if (key === 'class') {
      el.className = Array.isArray(raw) ? raw.filter(Boolean).join(' ') : raw;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, raw);
    } else if (key.startsWith('on')) {
      if (typeof raw !== 'function') throw new Error(`dom.h: '${key}' must be a function`);
      el.addEventListener(key.slice(2).toLowerCase(), raw);
    } else if (key === 'value') {
      value = raw;
    } else if (raw === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(raw));
    }
  }
  append(el, children);
  if (value !== undefined) el.value = value;
  return el;
}

/** Append children (nodes, strings, numbers, nested arrays) to a parent. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace everything inside `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** Set the text of an element (and nothing else). */
export function setText(el, text) {
  el.textContent = text ?? '';
  return el;
}

let nextId = 0;
/** A document-unique id for wiring labels and descriptions. */
export function uid(prefix = 'id') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  chevron: ['M6 9l6 6 6-6'],
  copy: ['M9 9h10v10H9z', 'M5 15V5h10'],
  check: ['M5 12.5l4.5 4.5L19 7.5'],
  lock: ['M6 11h12v9H6z', 'M8.5 11V8a3.5 3.5 0 0 1 7 0v3'],
  key: ['M8 11a4 4 0 1 0 0 8 4 4 0 0 0 0-8z', 'M10.8 12.2L20 3', 'M16.5 6.5l2.5 2.5', 'M14 9l2 2'],
  users: [
    'M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z',
    'M3 20c0-3.3 2.7-5.5 6-5.5s6 2.2 6 5.5',
    'M16 4.5a3.5 3.5 0 0 1 0 6.5',
    'M18 14.8c1.8.7 3 2.5 3 5.2',
  ],
  out: ['M10 5H5v14h5', 'M14 8l4 4-4 4', 'M18 12H9'],
  chat: ['M4 5h16v11H9l-5 4z'],
  home: ['M4 11l8-7 8 7', 'M6 9.5V20h12V9.5'],
  alert: ['M12 4l9 16H3z', 'M12 10v4', 'M12 17v.01'],
  info: ['M12 3a9 9 0 1 1 0 18 9 9 0 0 1 0-18z', 'M12 11v5', 'M12 8v.01'],
  smile: ['M12 3a9 9 0 1 1 0 18 9 9 0 0 1 0-18z', 'M8.5 14a4.5 4.5 0 0 0 7 0', 'M9 9.5v.01', 'M15 9.5v.01'],
  reply: ['M10 8L5 12.5 10 17', 'M5 12.5h9a5 5 0 0 1 5 5V19'],
  edit: ['M4 20h4L19 9l-4-4L4 16z', 'M13.5 6.5l4 4'],
  trash: ['M4 7h16', 'M9 7V4h6v3', 'M6 7l1 13h10l1-13', 'M10 11v6', 'M14 11v6'],
  file: ['M6 3h8l4 4v14H6z', 'M14 3v4h4'],
  download: ['M12 4v11', 'M7 10l5 5 5-5', 'M5 20h14'],
  menu: ['M4 7h16', 'M4 12h16', 'M4 17h16'],
  search: ['M10.5 4a6.5 6.5 0 1 1 0 13 6.5 6.5 0 0 1 0-13z', 'M15.5 15.5L20 20'],
  plus: ['M12 5v14', 'M5 12h14'],
  send: ['M4 12L20 4l-4 16-4-6z', 'M12 14l8-10'],
  clip: ['M16.5 7.5l-7 7a2 2 0 0 0 2.8 2.8l7.2-7.2a4 4 0 0 0-5.7-5.7L6.6 11.6a6 6 0 0 0 8.5 8.5L20 15'],
  phone: ['M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z'],
  video: ['M3 7h12v10H3z', 'M15 10.5l6-3.5v10l-6-3.5'],
  'video-off': ['M3 7h12v10H3z', 'M15 10.5l6-3.5v10l-6-3.5', 'M3 3l18 18'],
  mic: ['M9 4a3 3 0 0 1 6 0v7a3 3 0 0 1-6 0z', 'M5.5 11a6.5 6.5 0 0 0 13 0', 'M12 17.5V21'],
  'mic-off': ['M9 4a3 3 0 0 1 6 0v7a3 3 0 0 1-6 0z', 'M5.5 11a6.5 6.5 0 0 0 13 0', 'M12 17.5V21', 'M4 4l16 16'],
  screen: ['M3 4h18v12H3z', 'M8 20h8', 'M12 16v4', 'M12 13V7', 'M9 9.5L12 6.5l3 3'],
  hangup: ['M3 14.5c5-5 13-5 18 0l-2.5 2.5-3.5-1.5v-2.5a10 10 0 0 0-6 0v2.5L5.5 17z'],
  signal: ['M5 19v-3', 'M10 19v-7', 'M15 19v-11', 'M20 19V4'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  hash: ['M9 4L7 20', 'M17 4l-2 16', 'M4 9h16', 'M3 15h16'],
  bell: ['M6 16V11a6 6 0 0 1 12 0v5l2 2H4z', 'M10 20a2 2 0 0 0 4 0'],
  at: ['M16 12a4 4 0 1 1-8 0 4 4 0 0 1 8 0z', 'M16 12v1.5a2.5 2.5 0 0 0 5 0V12a9 9 0 1 0-3.5 7.1'],
  down: ['M12 5v14', 'M6 13l6 6 6-6'],
  compose: ['M4 20h4L19 9l-4-4L4 16z', 'M4 4h7', 'M4 8h3'],
  account: ['M12 3a9 9 0 1 1 0 18 9 9 0 0 1 0-18z', 'M12 7.5a3 3 0 1 1 0 6 3 3 0 0 1 0-6z', 'M6.5 18.2c1.3-1.8 3.2-2.7 5.5-2.7s4.2.9 5.5 2.7'],
  sliders: ['M4 7h9', 'M17 7h3', 'M15 5v4', 'M4 17h3', 'M11 17h9', 'M9 15v4'],
  wifi: ['M2 8.5a15 15 0 0 1 20 0', 'M5 12a10 10 0 0 1 14 0', 'M8.5 15.5a5 5 0 0 1 7 0', 'M12 19v.01'],
};

/** A small stroke icon (decorative: hidden from assistive technology). */
export function icon(name, extraClass = '') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon ${extraClass}`.trim());
  for (const d of ICONS[name] ?? []) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}
