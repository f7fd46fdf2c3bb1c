// "New message": pick one person (a DM) or up to seven (a group DM) and
// open the conversation. The user picker is also used by the form that
// creates a channel. Also here: loading the list of people and the
// case- and accent-insensitive matching the quick switcher uses too.

import * as api from '../api.js';
import { h, replace, setText, uid } from '../dom.js';
import { alertBox, button, notice, setBusy } from '../ui.js';
import { avatar } from '../views/layout.js';
import { debounce, liveRegion, openDialog } from './dialog.js';
import { presenceDot, statusText } from './presence-ui.js';

/** A group conversation has at most 8 people, the user included. */
export const MAX_GROUP_OTHERS = 7;

const USERS_PAGE = 500;
const USERS_MAX_PAGES = 40;
const MAX_OPTIONS = 50;

// -- matching ---------------------------------------------------------------------

/** Text for comparing: lower case, accents dropped ("Élodie" → "elodie"). */
export function foldText(text) {
  return String(text ?? '')
    .normalize('NFD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase();
}

/** What the user typed, ready for matchScore: folded, trimmed, without a leading # or @. */
export function foldQuery(query) {
  return foldText(query).trim().replace(/^[#@]+/, '').trim();
}

const WORD_CHAR = /[\p{L}\p{N}]/u;

/**
 * How well `text` matches the folded `query`: 3 it starts with it, 2 a word
 * in it starts with it, 1 it contains it, 0 no match. An empty query is 1.
 */
export function matchScore(text, query) {
  if (!query) return 1;
  const folded = foldText(text);
  if (folded.startsWith(query)) return 3;
  let at = folded.indexOf(query);
  if (at === -1) return 0;
  while (at !== -1) {
    if (!WORD_CHAR.test(folded[at - 1] ?? '')) return 2;
    at = folded.indexOf(query, at + 1);
  }
  return 1;
}

/** The best score of several texts. */
export function bestScore(texts, query) {
  let best = 0;
  for (const text of texts) {
    if (text) best = Math.max(best, matchScore(text, query));
    if (best === 3) break;
  }
  return best;
}

// -- people -----------------------------------------------------------------------

/**
 * Every active user, page after page (GET /api/v1/users). Members and
 * administrators only: a guest gets an ApiError with status 403.
 */
export async function loadUsers() {
  const users = [];
  let after = null;
  for (let page = 0; page < USERS_MAX_PAGES; page += 1) {
    const query = new URLSearchParams({ limit: String(USERS_PAGE) });
    if (after) query.set('after', after);
    const answer = await api.request('GET', `/api/v1/users?${query}`);
    users.push(...(answer?.users ?? []));
    if (!answer?.next_after || !answer.users?.length) break;
    after = answer.next_after;
  }
  return users.filter((user) => user.active !== false);
}

const byName = (a, b) =>
  (a.display_name || a.username).localeCompare(b.display_name || b.username, undefined, { sensitivity: 'base' });

/** The people matching `query` (display name or username), best first. */
export function matchUsers(users, query) {
  const q = foldQuery(query);
  const scored = [];
  for (const user of users) {
    const score = bestScore([user.display_name, user.username], q);
    if (score) scored.push({ user, score });
  }
  scored.sort((a, b) => b.score - a.score || byName(a.user, b.user));
  return scored.map((entry) => entry.user);
}

function isGuest(client) {
  return client?.me?.role === 'guest';
}

const GUEST_LOOKUP_MESSAGE =
  'Guests cannot look people up or start conversations. A member can start one with you or add you to a room.';

// -- the picker -------------------------------------------------------------------

/**
 * A combobox to choose people: type to filter everyone, Up/Down and Enter
 * (or a click) to add someone; the chosen ones show as removable chips
 * (Backspace in the empty box removes the last one).
 *
 * Options: `client` (for presence; optional), `exclude` (user ids or
 * usernames never offered), `max` (how many may be chosen), `onChange(users)`,
 * `label`, `hint`, `limitMessage` (said once `max` is reached),
 * `listAlways` (the list shows even when the box is not focused),
 * `onSubmit()` (Enter in the empty box, e.g. to submit the form).
 *
 * Returns {node, input, selected(), focus(), clear(), setError(text|null),
 * destroy()}; `input` and `setError` make it usable as a field for showApiError.
 * Call destroy() when it goes away (it listens to the client and the document).
 */
export function userPicker({
  client = null,
  exclude = [],
  max = Infinity,
  onChange = null,
  label = 'People',
  hint = null,
  limitMessage = null,
  placeholder = 'Type a name or username',
  listAlways = false,
  onSubmit = null,
} = {}) {
  const excluded = new Set(exclude);
  const inputId = uid('picker-input');
  const listId = uid('picker-list');
  const hintId = uid('picker-hint');
  const limitId = uid('picker-limit');
  const errorId = uid('picker-error');
  const chosen = [];
  const live = liveRegion();
  const extraPresence = new Map();
  const askedPresence = new Set();

  let users = null; // null while loading
  let loadError = null;
  let options = [];
  let activeIndex = -1;
  let focused = false;
  let wasConnected = false;

  const input = h('input', {
    id: inputId,
    type: 'text',
    class: 'picker__input',
    role: 'combobox',
    'aria-autocomplete': 'list',
    'aria-expanded': 'false',
    'aria-controls': listId,
    autocomplete: 'off',
    autocapitalize: 'none',
    spellcheck: 'false',
    placeholder,
  });
  const chips = h('ul', { class: 'picker__chips', 'aria-label': `Chosen: ${label}`, hidden: true });
  const box = h('div', { class: 'picker__box' }, chips, input);
  const hintEl = h('p', { class: 'hint picker__hint', id: hintId }, hint ?? '');
  hintEl.hidden = !hint;
  const limitEl = h('p', { class: 'picker__limit', id: limitId, hidden: true });
  const errorEl = h('p', { class: 'field-error', id: errorId, hidden: true });
  const list = h('ul', { class: 'picker__list', id: listId, role: 'listbox', 'aria-label': label, hidden: true });
  const state = h('div', { class: 'picker__state' });
  const node = h(
    'div',
    { class: ['picker', listAlways && 'picker--inline'] },
    h('label', { class: 'label', for: inputId }, label),
    box,
    hintEl,
    limitEl,
    errorEl,
    list,
    state,
    live.node,
  );

  const describe = () => {
    const ids = [];
    if (!errorEl.hidden) ids.push(errorId);
    if (!limitEl.hidden) ids.push(limitId);
    if (!hintEl.hidden) ids.push(hintId);
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
    else input.removeAttribute('aria-describedby');
  };
  describe();

  const atLimit = () => chosen.length >= max;

  function presenceOf(user) {
    return client?.presenceOf?.(user.id) ?? extraPresence.get(user.id) ?? null;
  }

  // People the socket does not follow (no shared room): ask once for their status.
  async function askPresence(shown) {
    if (!client?.request || isGuest(client)) return;
    const ids = shown
      .map((user) => user.id)
      .filter((id) => !askedPresence.has(id) && !client.presenceOf?.(id));
    if (!ids.length) return;
    for (const id of ids) askedPresence.add(id);
    try {
      const answer = await client.request('presence.get', { users: ids.slice(0, 500) });
      for (const item of answer?.users ?? []) extraPresence.set(item.user, item);
      if (focused || listAlways) render();
    } catch {
      // Offline or refused: the people show without a status.
    }
  }

  function optionFor(user, index) {
    const presence = presenceOf(user);
    const status = presence ? statusText(presence) : '';
    return h(
      'li',
      {
        class: 'picker__option',
        id: `${listId}-u${user.id}`,
        role: 'option',
        'aria-selected': index === activeIndex ? 'true' : 'false',
        dataset: { index: String(index) },
      },
      avatar(user),
      h(
        'span',
        { class: 'picker__who' },
        h(
          'span',
          { class: 'picker__line' },
          h('span', { class: 'picker__name' }, user.display_name || user.username),
          h('span', { class: 'picker__username' }, `@${user.username}`),
          user.role === 'guest' ? h('span', { class: 'badge badge--guest picker__badge' }, 'Guest') : null,
        ),
        presence
          ? h(
              'span',
              { class: 'picker__status' },
              presenceDot(presence, { size: 'small', decorative: true }),
              status ? h('span', { class: 'picker__status-text' }, status) : null,
            )
          : null,
      ),
    );
  }

  function setExpanded(open) {
    list.hidden = !open;
    input.setAttribute('aria-expanded', String(open));
    if (!open) input.removeAttribute('aria-activedescendant');
  }

  function showActive() {
    for (const el of list.querySelectorAll('[role="option"]')) {
      const on = Number(el.dataset.index) === activeIndex;
      el.setAttribute('aria-selected', on ? 'true' : 'false');
      el.classList.toggle('is-active', on);
      if (on) {
        input.setAttribute('aria-activedescendant', el.id);
        el.scrollIntoView({ block: 'nearest' });
      }
    }
    if (activeIndex < 0) input.removeAttribute('aria-activedescendant');
  }

  function render() {
    const query = input.value;
    const open = listAlways || focused;
    limitEl.hidden = !atLimit() || !limitMessage;
    input.placeholder = atLimit() ? '' : chosen.length ? 'Add someone else' : placeholder;
    setText(limitEl, limitMessage ?? '');
    describe();

    if (users === null || loadError) {
      options = [];
      replace(list);
      setExpanded(false);
      replace(
        state,
        loadError
          ? h('p', { class: 'picker__message picker__message--error' }, loadError)
          : h('p', { class: 'picker__message picker__loading' }, h('span', { class: 'dlg-spinner', 'aria-hidden': 'true' }), 'Loading people…'),
      );
      return;
    }
    if (atLimit()) {
      options = [];
      replace(list);
      setExpanded(false);
      replace(state);
      return;
    }

    const taken = new Set(chosen.map((user) => user.id));
    const candidates = users.filter(
      (user) => !taken.has(user.id) && !excluded.has(user.id) && !excluded.has(user.username),
    );
    const matches = query.trim() ? matchUsers(candidates, query) : [...candidates].sort(byName);
    const previous = options[activeIndex]?.id;
    options = matches.slice(0, MAX_OPTIONS);
    const kept = options.findIndex((user) => user.id === previous);
    activeIndex = kept >= 0 ? kept : options.length && query.trim() ? 0 : -1;

    replace(list, options.map(optionFor));
    setExpanded(open && options.length > 0);
    if (open && options.length) showActive();

    if (!options.length) {
      replace(
        state,
        h(
          'p',
          { class: 'picker__message' },
          query.trim()
            ? `Nobody matches “${query.trim()}”.`
            : users.length
              ? 'Everyone is chosen already.'
              : 'There is nobody else here yet.',
        ),
      );
    } else if (matches.length > options.length) {
      replace(
        state,
        h(
          'p',
          { class: 'picker__message picker__message--more' },
          `${options.length} of ${matches.length} shown. Type more of a name to narrow the list.`,
        ),
      );
    } else {
      replace(state);
    }
    if (open) askPresence(options);
  }

  const announceCount = () => {
    if (users === null || atLimit() || !input.value.trim()) return;
    const n = options.length;
    live.say(n === 0 ? 'Nobody matches.' : n === 1 ? '1 person found.' : `${n} people found.`);
  };

  function changed() {
    onChange?.(chosen.slice());
  }

  function add(user) {
    if (!user || chosen.some((u) => u.id === user.id)) return;
    if (atLimit()) {
      render();
      if (limitMessage) live.say(limitMessage, 0);
      return;
    }
    chosen.push(user);
    input.value = '';
    activeIndex = -1;
    renderChips();
    render();
    input.focus();
    live.say(
      `${user.display_name || user.username} added.${atLimit() && limitMessage ? ` ${limitMessage}` : ''}`,
      0,
    );
    changed();
  }

  function remove(user, { refocus = true } = {}) {
    const at = chosen.findIndex((u) => u.id === user.id);
    if (at < 0) return;
    chosen.splice(at, 1);
    renderChips();
    render();
    if (refocus) input.focus();
    live.say(`${user.display_name || user.username} removed.`, 0);
    changed();
  }

  function renderChips() {
    chips.hidden = chosen.length === 0;
    replace(
      chips,
      chosen.map((user) => {
        const name = user.display_name || user.username;
        const removeButton = h(
          'button',
          {
            type: 'button',
            class: 'picker__chip-remove',
            'aria-label': `Remove ${name}`,
            title: `Remove ${name}`,
          },
          h('span', { 'aria-hidden': 'true' }, '×'),
        );
        removeButton.addEventListener('click', () => remove(user));
        return h(
          'li',
          { class: 'picker__chip' },
          avatar(user),
          h('span', { class: 'picker__chip-name' }, name),
          removeButton,
        );
      }),
    );
  }

  const announceLater = debounce(announceCount, 500);

  input.addEventListener('input', () => {
    activeIndex = -1;
    render();
    announceLater();
  });
  input.addEventListener('focus', () => {
    focused = true;
    render();
  });
  // When a click elsewhere takes the focus away, the list closes only after
  // that click: closing it at once could move what is under the pointer.
  let pressing = false;
  let collapseLater = false;
  const collapse = () => {
    if (!focused && !listAlways) setExpanded(false);
  };
  const onPointerDown = () => {
    pressing = true;
  };
  const onPointerUp = () => {
    window.setTimeout(() => {
      pressing = false;
      if (collapseLater) {
        collapseLater = false;
        collapse();
      }
    }, 0);
  };
  document.addEventListener('pointerdown', onPointerDown, true);
  document.addEventListener('pointerup', onPointerUp, true);
  document.addEventListener('pointercancel', onPointerUp, true);
  node.addEventListener('focusout', (event) => {
    if (event.relatedTarget && node.contains(event.relatedTarget)) return;
    focused = false;
    if (pressing) collapseLater = true;
    else collapse();
  });
  box.addEventListener('click', (event) => {
    if (event.target === box || event.target === chips) input.focus();
  });
  list.addEventListener('mousedown', (event) => event.preventDefault()); // keep focus in the box
  list.addEventListener('click', (event) => {
    const el = event.target.closest('[role="option"]');
    if (el) add(options[Number(el.dataset.index)]);
  });
  list.addEventListener('mousemove', (event) => {
    const el = event.target.closest('[role="option"]');
    const index = el ? Number(el.dataset.index) : -1;
    if (el && index !== activeIndex) {
      activeIndex = index;
      showActive();
    }
  });

  input.addEventListener('keydown', (event) => {
    if (event.isComposing) return;
    const count = options.length;
    switch (event.key) {
      case 'ArrowDown':
      case 'ArrowUp': {
        event.preventDefault();
        if (list.hidden) {
          focused = true;
          render();
        }
        if (!count) return;
        const step = event.key === 'ArrowDown' ? 1 : -1;
        activeIndex = activeIndex < 0 ? (step > 0 ? 0 : count - 1) : (activeIndex + step + count) % count;
        showActive();
        return;
      }
      case 'Enter': {
        if (activeIndex >= 0 && options[activeIndex] && !list.hidden) {
          event.preventDefault();
          add(options[activeIndex]);
        } else if (!input.value.trim()) {
          if (onSubmit) {
            event.preventDefault();
            onSubmit();
          }
        } else {
          event.preventDefault(); // a half-typed name must not submit the form
        }
        return;
      }
      case 'Escape': {
        if (input.value) {
          // Clear the box first; a second Escape closes the dialog.
          event.preventDefault();
          event.stopPropagation();
          input.value = '';
          activeIndex = -1;
          render();
        }
        return;
      }
      case 'Backspace': {
        if (input.selectionStart === 0 && input.selectionEnd === 0 && chosen.length) {
          event.preventDefault();
          remove(chosen[chosen.length - 1]);
        }
        return;
      }
      default:
    }
  });

  let offPresence = null;
  if (client?.on) {
    const rerender = debounce(() => {
      if (!node.isConnected) {
        if (wasConnected) offPresence?.();
        return;
      }
      wasConnected = true;
      if (focused || listAlways) render();
    }, 200);
    offPresence = client.on('presence', (userId) => {
      if (options.some((user) => user.id === userId)) rerender();
    });
  }

  function load() {
    users = null;
    loadError = null;
    render();
    if (isGuest(client)) {
      loadError = GUEST_LOOKUP_MESSAGE;
      render();
      return;
    }
    loadUsers()
      .then((list) => {
        users = list.filter((user) => user.id !== client?.me?.id);
        render();
        announceCount();
      })
      .catch((error) => {
        loadError =
          error.status === 403 ? GUEST_LOOKUP_MESSAGE : `Could not load the list of people: ${error.message}`;
        render();
      });
  }
  load();

  return {
    node,
    input,
    selected: () => chosen.slice(),
    focus: () => input.focus(),
    clear() {
      chosen.splice(0);
      input.value = '';
      renderChips();
      render();
      changed();
    },
    setError(message) {
      setText(errorEl, message ?? '');
      errorEl.hidden = !message;
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
      box.classList.toggle('is-invalid', Boolean(message));
      describe();
    },
    destroy() {
      offPresence?.();
      document.removeEventListener('pointerdown', onPointerDown, true);
      document.removeEventListener('pointerup', onPointerUp, true);
      document.removeEventListener('pointercancel', onPointerUp, true);
      live.clear();
    },
  };
}

// -- the "New message" dialog ---------------------------------------------------

/** "New message": choose people, then open (or make) the DM or group DM. */
export function openNewMessage(ctx) {
  const { client } = ctx;
  const me = client?.me ?? ctx.me;

  if (me?.role === 'guest') {
    const ok = button('Close', { variant: 'primary' });
    const { close } = openDialog({
      title: 'New message',
      className: 'modal--narrow',
      content: [notice('info', GUEST_LOOKUP_MESSAGE)],
      actions: [ok],
      initialFocus: ok,
    });
    ok.addEventListener('click', () => close('cancel'));
    return { close };
  }

  const problems = alertBox('error');
  const start = button('Start conversation', { variant: 'primary', type: 'button' });
  const cancel = button('Cancel', { variant: 'secondary' });
  const limitMessage = `That is the most for one conversation: ${MAX_GROUP_OTHERS + 1} people, you included.`;
  let busy = false;

  const picker = userPicker({
    client,
    exclude: me ? [me.id] : [],
    max: MAX_GROUP_OTHERS,
    label: 'To',
    hint: `One person for a direct message, or up to ${MAX_GROUP_OTHERS} for a group.`,
    limitMessage,
    listAlways: true,
    onChange: (people) => {
      picker.setError(null);
      problems.hide();
      setText(start, people.length > 1 ? 'Start group conversation' : 'Start conversation');
    },
    onSubmit: () => submit(),
  });

  const { close } = openDialog({
    title: 'New message',
    description: 'Start a conversation with one person or a small group.',
    className: 'modal--picker',
    content: [problems.root, picker.node],
    actions: [cancel, start],
    initialFocus: picker.input,
    onClose: () => picker.destroy(),
  });

  async function submit() {
    if (busy) return;
    const people = picker.selected();
    if (!people.length) {
      picker.setError('Choose at least one person.');
      picker.focus();
      return;
    }
    busy = true;
    problems.hide();
    setBusy(start, true, 'Opening…');
    try {
      const answer = await api.request('POST', '/api/v1/rooms', {
        kind: people.length === 1 ? 'dm' : 'group',
        members: people.map((user) => user.username),
      });
      close('done');
      ctx.openRoom(answer.room.id);
    } catch (error) {
      busy = false;
      setBusy(start, false);
      if (['user_not_found', 'user_inactive', 'too_many_members'].includes(error.code)) {
        picker.setError(error.message);
        picker.focus();
      } else {
        problems.show(error.message, 'error');
      }
    }
  }

  start.addEventListener('click', submit);
  cancel.addEventListener('click', () => close('cancel'));
  return { close };
}
