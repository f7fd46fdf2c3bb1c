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
