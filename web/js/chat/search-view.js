// Message search, shown in the main pane instead of a conversation.
// Results follow the typing (debounced; late answers to older searches are
// dropped), newest first, with the matched words marked. A result opens its
// message in its room.

import { h, icon, replace, setText, uid } from '../dom.js';
import { formatDateTime } from '../format.js';
import { alertBox, button, field, setBusy } from '../ui.js';
import { debounce } from './dialog.js';
import { foldText } from './new-message.js';
import { roomLabel, roomPath } from './rooms.js';

const PAGE = 20;
const DEBOUNCE_MS = 250;
const OPERATORS = new Set(['AND', 'OR', 'NOT', 'NEAR']);
const WORD = /[\p{L}\p{N}\p{M}]+/gu;
const QUERY_FIELD_ERRORS = new Set(['empty_query', 'too_many_terms']);
const ROOM_ICONS = { private: 'lock', dm: 'chat', group: 'users' };
const ROOM_KIND_WORDS = { private: 'Private room ', dm: 'Direct message with ', group: 'Group conversation with ' };
const RETRYABLE = new Set(['offline', 'disconnected', 'timeout', 'unavailable', 'internal', 'rate_limited', 'network']);

/** The words of a query as the server reads them, folded for comparing. */
export function queryTerms(q) {
  const words = String(q ?? '').match(WORD) ?? [];
  return [...new Set(words.filter((word) => !OPERATORS.has(word)).map(foldText).filter(Boolean))];
}

/**
 * `text` as nodes, each word that starts with one of the folded `terms`
 * wrapped in <mark>. Only text nodes and <mark> elements: never HTML.
 */
export function highlightNodes(text, terms) {
  const nodes = [];
  let last = 0;
  if (terms.length) {
    for (const match of String(text).matchAll(WORD)) {
      const folded = foldText(match[0]);
      if (!terms.some((term) => folded.startsWith(term))) continue;
      if (match.index > last) nodes.push(text.slice(last, match.index));
      nodes.push(h('mark', { class: 'search-result__mark' }, match[0]));
      last = match.index + match[0].length;
    }
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

function plural(n, one, many) {
  return n === 1 ? `1 ${one}` : `${n} ${many}`;
}

/**
 * The search panel. `q`: the words to start with; `room`: a room id or room
 * object, offered as "Only in <room>" (on at first). Options: `headingLevel`
 * (1 by default), `onDismiss()` (shows a "Close search" button and makes
 * Escape in the empty box call it), `onChange({q, room, sender})` (after each
 * search, e.g. to keep the address in step).
 *
 * Returns {node, title, focus(), close()}.
 */
export function searchView(ctx, { q = '', room = null, headingLevel = 1, onDismiss = null, onChange = null } = {}) {
  const { client } = ctx;
  const me = client?.me ?? ctx.me;
  const headingId = uid('search-title');
  const problems = alertBox('error');

  const roomId = room == null ? null : typeof room === 'object' ? room.id : Number(room);
  const roomObject = () => {
    const known = roomId != null ? client?.rooms?.get(roomId)?.room : null;
    return known ?? (typeof room === 'object' ? room : null);
  };

  const queryField = field({
    label: 'Search messages',
    name: 'q',
    type: 'search',
    autocomplete: 'off',
    value: q,
    attrs: { placeholder: 'Words to find', maxlength: '500', spellcheck: 'false', enterkeyhint: 'search' },
  });
  const fromField = field({
    label: 'From',
    name: 'sender',
    optional: true,
    autocomplete: 'off',
    attrs: {
      placeholder: '@username',
      maxlength: '65',
      spellcheck: 'false',
      autocapitalize: 'none',
      class: 'input search-view__from',
    },
  });

  let onlyBox = null;
  let onlyRow = null;
  if (roomId != null) {
    const onlyId = uid('search-only');
    const current = roomObject();
    const label = current?.kind ? roomLabel(current, me) : 'this conversation';
    onlyBox = h('input', { type: 'checkbox', id: onlyId, class: 'check-row__input', checked: true });
    onlyRow = h(
      'div',
      { class: 'check-row search-view__only' },
      onlyBox,
      h('label', { class: 'check-row__label', for: onlyId }, `Only in ${label}`),
    );
  }

  const submitButton = h('button', { type: 'submit', class: 'visually-hidden', tabindex: '-1' }, 'Search');
  const form = h(
    'form',
    { class: 'search-view__form', role: 'search', 'aria-label': 'Messages', novalidate: true },
    h('div', { class: 'search-view__fields' }, queryField.root, fromField.root),
    onlyRow,
    submitButton,
  );

  const summary = h('p', { class: 'search-view__summary' });
  const loading = h(
    'p',
    { class: 'search-view__loading', hidden: true },
    h('span', { class: 'dlg-spinner', 'aria-hidden': 'true' }),
    'Searching…',
  );
  const list = h('ul', { class: 'search-view__results', 'aria-labelledby': headingId });
  const stateSlot = h('div', { class: 'search-view__state' });
  const more = button('More results', { variant: 'secondary' });
  const moreRow = h('div', { class: 'search-view__more', hidden: true }, more);

  const heading = h(`h${Math.min(6, Math.max(1, headingLevel))}`, { class: 'search-view__title', id: headingId, tabindex: '-1' }, 'Search');
  const dismiss = onDismiss
    ? h('button', { type: 'button', class: 'search-view__dismiss', 'aria-label': 'Close search', title: 'Close search' }, h('span', { 'aria-hidden': 'true' }, '×'))
    : null;

  const node = h(
    'section',
    { class: 'search-view', 'aria-labelledby': headingId },
    h('div', { class: 'search-view__head' }, heading, dismiss),
    form,
    h(
      'div',
      { class: 'search-view__body' },
      problems.root,
      h('div', { class: 'search-view__status' }, summary, loading),
      list,
      stateSlot,
      moreRow,
    ),
  );

  let generation = 0;
  let nextOffset = null;
  let shown = 0;
  let terms = [];
  let closed = false;
  let lastKey = null;
  let shownFields = null; // the search whose results are on screen

  function currentFields() {
    const words = queryField.input.value.trim();
    const sender = fromField.input.value.trim().replace(/^@+/, '');
    const fields = { q: words, limit: PAGE };
    if (onlyBox?.checked && roomId != null) fields.room = roomId;
    if (sender) fields.sender = sender;
    return fields;
  }

  function resultItem(result) {
    const message = result.message;
    const known = client?.rooms?.get(result.room.id)?.room;
    const roomInfo = known ?? result.room;
    const direct = roomInfo.kind === 'dm' || roomInfo.kind === 'group';
    const knowsMembers = Array.isArray(roomInfo.members);
    const label = direct && !knowsMembers ? (roomInfo.kind === 'dm' ? 'Direct message' : 'Group conversation') : roomLabel(roomInfo, me);
    const spokenKind = knowsMembers ? ROOM_KIND_WORDS[roomInfo.kind] : roomInfo.kind === 'private' ? ROOM_KIND_WORDS.private : null;
    const sender =
      message.kind === 'bot' ? message.bot_name ?? 'Integration' : message.sender?.display_name ?? 'Deleted user';
    const text = result.highlight ?? '';
    const files = message.files ?? [];
    const link = h(
      'a',
      {
        class: 'search-result__link',
        href: `#${roomPath(result.room.id, message.seq)}`,
        dataset: { room: String(result.room.id), seq: String(message.seq) },
      },
      h(
        'span',
        { class: 'search-result__head' },
        h(
          'span',
          { class: 'search-result__room' },
          ROOM_ICONS[roomInfo.kind] ? icon(ROOM_ICONS[roomInfo.kind], 'search-result__room-icon') : null,
          spokenKind ? h('span', { class: 'visually-hidden' }, spokenKind) : null,
          label,
        ),
        h('span', { class: 'search-result__sep', 'aria-hidden': 'true' }, '·'),
        h('span', { class: 'search-result__sender' }, sender),
        h(
          'time',
          { class: 'search-result__time', datetime: new Date(message.created_at).toISOString() },
          formatDateTime(message.created_at),
        ),
      ),
      text
        ? h('span', { class: 'search-result__text' }, highlightNodes(text, terms))
        : h(
            'span',
            { class: 'search-result__text search-result__text--none' },
            files.length ? `Attachment: ${files.map((file) => file.name).join(', ')}` : 'No text',
          ),
    );
    link.addEventListener('click', (event) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      ctx.openRoom(result.room.id, message.seq);
    });
    return h('li', { class: 'search-result' }, link);
  }

  function setLoading(on) {
    loading.hidden = !on;
    node.classList.toggle('is-loading', on);
    if (on) list.setAttribute('aria-busy', 'true');
    else list.removeAttribute('aria-busy');
  }

  function showSummary() {
    if (!shown) {
      setText(summary, '');
      return;
    }
    setText(
      summary,
      nextOffset != null ? `${plural(shown, 'result', 'results')} shown, newest first` : `${plural(shown, 'result', 'results')}, newest first`,
    );
  }

  function clearResults() {
    shownFields = null;
    replace(list);
    shown = 0;
    nextOffset = null;
    moreRow.hidden = true;
    showSummary();
  }

  function idleState() {
    replace(
      stateSlot,
      h(
        'div',
        { class: 'search-view__empty' },
        h('span', { class: 'search-view__empty-icon' }, icon('chat')),
        h('p', { class: 'search-view__empty-title' }, 'Search your conversations'),
        h(
          'p',
          { class: 'search-view__empty-text' },
          'Type one or more words: a message must have all of them. The last word may be the start of a word.',
        ),
      ),
    );
  }

  function emptyState(fields) {
    const filters = [];
    if (fields.sender) filters.push(`from @${fields.sender}`);
    if (fields.room != null) filters.push('in this conversation only');
    replace(
      stateSlot,
      h(
        'div',
        { class: 'search-view__empty' },
        h('span', { class: 'search-view__empty-icon' }, icon('info')),
        h('p', { class: 'search-view__empty-title' }, `No messages match “${fields.q}”${filters.length ? ` ${filters.join(', ')}` : ''}.`),
        h(
          'p',
          { class: 'search-view__empty-text' },
          filters.length
            ? 'Check the spelling, use fewer words, or search without the filters.'
            : 'Check the spelling, or use fewer or other words.',
        ),
      ),
    );
  }

  function showError(error, fields) {
    if (QUERY_FIELD_ERRORS.has(error.code) || error.field === 'q') {
      queryField.setError(error.message);
      problems.hide();
    } else if (error.field === 'sender') {
      fromField.setError(error.message);
      problems.hide();
    } else if (RETRYABLE.has(error.code)) {
      const retry = button('Try again', { variant: 'secondary', small: true });
      retry.addEventListener('click', () => run({ force: true }));
      problems.show([h('p', {}, `Search failed: ${error.message}`), h('div', { class: 'search-view__retry' }, retry)], 'error');
    } else {
      problems.show(error.message, 'error');
    }
    ctx.announce?.(error.message);
    if (fields) replace(stateSlot);
  }

  async function run({ force = false } = {}) {
    if (closed) return;
    const fields = currentFields();
    const key = JSON.stringify(fields);
    if (key === lastKey && !force) return;
    lastKey = key;
    const mine = ++generation;
    queryField.setError(null);
    fromField.setError(null);
    problems.hide();

    if (!fields.q) {
      setLoading(false);
      clearResults();
      idleState();
      return;
    }
    setLoading(true);
    try {
      const answer = await client.search({ ...fields, offset: 0 });
      if (closed || mine !== generation) return; // an older search: the newer one shows
      terms = queryTerms(fields.q);
      shownFields = fields;
      const results = answer?.results ?? [];
      replace(list, results.map(resultItem));
      shown = results.length;
      nextOffset = answer?.next_offset ?? null;
      moreRow.hidden = nextOffset == null;
      showSummary();
      if (results.length) {
        replace(stateSlot);
        ctx.announce?.(
          nextOffset != null
            ? `${plural(shown, 'result', 'results')} shown, more available.`
            : `${plural(shown, 'result', 'results')}.`,
        );
      } else {
        emptyState(fields);
        ctx.announce?.(`No messages match ${fields.q}.`);
      }
      onChange?.({ q: fields.q, room: fields.room ?? null, sender: fields.sender ?? null });
    } catch (error) {
      if (closed || mine !== generation) return;
      lastKey = null; // the same words may be tried again
      clearResults();
      showError(error, fields);
    } finally {
      if (mine === generation) setLoading(false);
    }
  }

  async function loadMore() {
    if (nextOffset == null || closed || !shownFields) return;
    const mine = generation;
    const fields = shownFields;
    setBusy(more, true, 'Loading…');
    try {
      const answer = await client.search({ ...fields, offset: nextOffset });
      if (closed || mine !== generation) return;
      const results = answer?.results ?? [];
      const items = results.map(resultItem);
      list.append(...items);
      shown += results.length;
      nextOffset = answer?.next_offset ?? null;
      moreRow.hidden = nextOffset == null;
      showSummary();
      ctx.announce?.(
        `${plural(results.length, 'more result', 'more results')}${nextOffset == null ? ', that is all of them' : ''}.`,
      );
      // Keyboard users go on from the first new result.
      (items[0] ?? list.lastElementChild)?.querySelector('a')?.focus();
    } catch (error) {
      if (closed || mine !== generation) return;
      problems.show(`Could not load more results: ${error.message}`, 'error');
    } finally {
      setBusy(more, false);
    }
  }

  const later = debounce(() => run(), DEBOUNCE_MS);
  queryField.input.addEventListener('input', later);
  fromField.input.addEventListener('input', later);
  onlyBox?.addEventListener('change', () => {
    later.cancel();
    run();
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    later.cancel();
    run({ force: true });
  });
  more.addEventListener('click', loadMore);
  dismiss?.addEventListener('click', () => onDismiss());

  // Up/Down from the box into the results, and between results.
  const links = () => [...list.querySelectorAll('.search-result__link')];
  queryField.input.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown' && shown) {
      event.preventDefault();
      links()[0]?.focus();
    } else if (event.key === 'Escape' && onDismiss && !queryField.input.value) {
      event.preventDefault();
      onDismiss();
    }
  });
  list.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
    const all = links();
    const at = all.indexOf(document.activeElement);
    if (at < 0) return;
    event.preventDefault();
    if (event.key === 'ArrowDown') {
      all[at + 1]?.focus();
    } else if (at === 0) {
      queryField.input.focus();
    } else {
      all[at - 1]?.focus();
    }
  });

  if (q.trim()) run();
  else idleState();

  return {
    node,
    title: 'Search',
    focus() {
      const input = queryField.input;
      input.focus();
      const end = input.value.length;
      try {
        input.setSelectionRange(end, end);
      } catch {
        // type=search may refuse a selection in some browsers
      }
    },
    close() {
      closed = true;
      generation += 1;
      later.cancel();
    },
  };
}
