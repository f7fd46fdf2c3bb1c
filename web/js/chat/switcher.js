// The quick switcher (Ctrl/Cmd+K): type part of a room's or a person's
// name, move with Up/Down, Enter opens. Rooms come from the client's room
// list; people (members and administrators only) from GET /api/v1/users,
// fetched once each time the switcher opens, so "Message <name>" can open
// or create a direct conversation.

import * as api from '../api.js';
import { h, icon, replace, uid } from '../dom.js';
import { alertBox } from '../ui.js';
import { avatar } from '../views/layout.js';
import { liveRegion, openDialog } from './dialog.js';
import { bestScore, foldQuery, loadUsers, matchUsers } from './new-message.js';
import { presenceDot, statusText } from './presence-ui.js';
import { dmPartner, lastActivity, otherMembers, roomName } from './rooms.js';

const MAX_ROOMS = 60;
const MAX_PEOPLE = 8;

function roomTexts(room, me) {
  const texts = [roomName(room, me)];
  if (room.kind === 'dm' || room.kind === 'group') {
    for (const member of otherMembers(room, me)) texts.push(member.display_name, member.username);
  }
  return texts;
}

function byActivity(a, b) {
  return (lastActivity(b) ?? 0) - (lastActivity(a) ?? 0);
}

/** The rooms for `query`: best match first; with no query, unread first, then the most recent. */
export function switcherRooms(client, query) {
  const me = client.me;
  const q = foldQuery(query);
  const summaries = [...client.rooms.values()];
  if (!q) {
    return summaries
      .sort((a, b) => Number(b.unread > 0) - Number(a.unread > 0) || Number(a.room.archived) - Number(b.room.archived) || byActivity(a, b))
      .slice(0, MAX_ROOMS);
  }
  const scored = [];
  for (const summary of summaries) {
    const score = bestScore(roomTexts(summary.room, me), q);
    if (score) scored.push({ summary, score });
  }
  scored.sort(
    (a, b) =>
      b.score - a.score ||
      Number(a.summary.room.archived) - Number(b.summary.room.archived) ||
      Number(b.summary.unread > 0) - Number(a.summary.unread > 0) ||
      byActivity(a.summary, b.summary),
  );
  return scored.slice(0, MAX_ROOMS).map((entry) => entry.summary);
}

/** An avatar with the person's status dot (when known); the status is said in `spoken`. */
function personAvatar(user, presence) {
  return h(
    'span',
    { class: 'switcher__avatar' },
    avatar(user),
    presence ? presenceDot(presence, { size: 'small', decorative: true }) : null,
  );
}

function roomIcon(room, me, client) {
  if (room.kind === 'channel') return h('span', { class: 'switcher__sigil', 'aria-hidden': 'true' }, '#');
  if (room.kind === 'private') return h('span', { class: 'switcher__sigil' }, icon('lock'));
  if (room.kind === 'dm') {
    const partner = dmPartner(room, me);
    if (partner) return personAvatar(partner, client.presenceOf?.(partner.id) ?? null);
  }
  return h('span', { class: 'switcher__sigil' }, icon('users'));
}

function unreadBadge(summary) {
  if (!summary.unread) return null;
  const mentions = summary.mentions > 0;
  const count = summary.unread > 99 ? '99+' : String(summary.unread);
  const spoken = [
    `${summary.unread} unread`,
    mentions ? `${summary.mentions} ${summary.mentions === 1 ? 'mention' : 'mentions'}` : null,
  ]
    .filter(Boolean)
    .join(', ');
  return [
    h('span', { class: ['switcher__badge', mentions && 'switcher__badge--mention'], 'aria-hidden': 'true' }, count),
    h('span', { class: 'visually-hidden' }, `, ${spoken}`),
  ];
}

function kindWord(room) {
  return { channel: 'channel', private: 'private room', dm: 'direct message', group: 'group conversation' }[room.kind] ?? '';
}

let current = null; // the switcher that is open, if any

/**
 * Open the quick switcher (or, when it is open already, bring focus back to
 * it). Ctrl/Cmd+K inside it closes it again. Returns {close()}.
 */
export function openSwitcher(ctx) {
  if (current?.dialog.isConnected) {
    current.input.focus();
    return { close: current.close };
  }
  const { client } = ctx;
  const me = client.me ?? ctx.me;
  const inputId = uid('switcher-input');
  const listId = uid('switcher-list');
  const hintId = uid('switcher-hint');
  const live = liveRegion();
  const problems = alertBox('error');

  let people = []; // loaded once per opening
  let items = []; // [{key, kind: 'room'|'person', summary?, user?}]
  let activeKey = null;
  let pending = false;

  const input = h('input', {
    id: inputId,
    type: 'text',
    class: 'input switcher__input',
    role: 'combobox',
    'aria-autocomplete': 'list',
    'aria-expanded': 'false',
    'aria-controls': listId,
    'aria-describedby': hintId,
    autocomplete: 'off',
    autocapitalize: 'none',
    spellcheck: 'false',
    placeholder: me?.role === 'guest' ? 'Type a room name' : 'Type a room or a person',
  });
  const list = h('div', { class: 'switcher__list', id: listId, role: 'listbox', 'aria-label': 'Conversations and people' });
  const empty = h('p', { class: 'switcher__empty', hidden: true });
  const busyLine = h('p', { class: 'switcher__busy', role: 'status' });
  const hint = h(
    'p',
    { class: 'switcher__hint', id: hintId },
    h('span', {}, h('kbd', {}, '↑'), h('kbd', {}, '↓'), ' to move'),
    h('span', {}, h('kbd', {}, 'Enter'), ' to open'),
    h('span', {}, h('kbd', {}, 'Esc'), ' to close'),
  );

  const { close, dialog } = openDialog({
    title: 'Jump to a conversation',
    className: 'modal--switcher',
    content: [
      h('label', { class: 'visually-hidden', for: inputId }, 'Room or person'),
      input,
      problems.root,
      list,
      empty,
      busyLine,
      hint,
      live.node,
    ],
    initialFocus: input,
    onClose: () => {
      offRooms?.();
      live.clear();
      if (current?.dialog === dialog) current = null;
    },
  });
  current = { dialog, input, close };

  function dmStatus(room) {
    const partner = room.kind === 'dm' ? dmPartner(room, me) : null;
    const presence = partner && partner.id !== me?.id ? client.presenceOf?.(partner.id) : null;
    return presence ? `, ${statusText(presence)}` : '';
  }

  function roomOption(summary) {
    const room = summary.room;
    const name = roomName(room, me);
    return h(
      'div',
      {
        class: ['switcher__option', summary.unread > 0 && 'is-unread', room.archived && 'is-archived'],
        role: 'option',
        id: `${listId}-r${room.id}`,
        'aria-selected': 'false',
        dataset: { key: `r${room.id}` },
      },
      roomIcon(room, me, client),
      h(
        'span',
        { class: 'switcher__text' },
        h('span', { class: 'switcher__name' }, name),
        h('span', { class: 'visually-hidden' }, `, ${kindWord(room)}${dmStatus(room)}`),
        room.archived ? h('span', { class: 'switcher__note' }, ' · archived') : null,
      ),
      unreadBadge(summary),
    );
  }

  function personOption(user) {
    const name = user.display_name || user.username;
    const presence = client.presenceOf?.(user.id) ?? null;
    const status = presence ? statusText(presence) : '';
    return h(
      'div',
      {
        class: 'switcher__option switcher__option--person',
        role: 'option',
        id: `${listId}-p${user.id}`,
        'aria-selected': 'false',
        dataset: { key: `p${user.id}` },
      },
      personAvatar(user, presence),
      h(
        'span',
        { class: 'switcher__text' },
        h('span', { class: 'switcher__name' }, `Message ${name}`),
        h('span', { class: 'switcher__username' }, ` @${user.username}`),
        status ? h('span', { class: 'switcher__status' }, ` ${status}`) : null,
      ),
    );
  }

  function group(label, options) {
    const labelId = uid('switcher-group');
    return h(
      'div',
      { class: 'switcher__group', role: 'group', 'aria-labelledby': labelId },
      h('div', { class: 'switcher__group-label', id: labelId, role: 'presentation' }, label),
      options,
    );
  }

  function dmPartnerIds() {
    const ids = new Set();
    for (const summary of client.rooms.values()) {
      if (summary.room.kind !== 'dm') continue;
      const partner = dmPartner(summary.room, me);
      if (partner) ids.add(partner.id);
    }
    return ids;
  }

  function render() {
    const query = input.value;
    const rooms = switcherRooms(client, query);
    let matchedPeople = [];
    if (query.trim() && people.length) {
      // Someone with a DM already is found as that room.
      const withDm = dmPartnerIds();
      matchedPeople = matchUsers(
        people.filter((user) => !withDm.has(user.id)),
        query,
      ).slice(0, MAX_PEOPLE);
    }
    items = [
      ...rooms.map((summary) => ({ key: `r${summary.room.id}`, kind: 'room', summary })),
      ...matchedPeople.map((user) => ({ key: `p${user.id}`, kind: 'person', user })),
    ];
    const groups = [];
    if (rooms.length) groups.push(group(query.trim() ? 'Conversations' : 'Recent conversations', rooms.map(roomOption)));
    if (matchedPeople.length) groups.push(group('People', matchedPeople.map(personOption)));
    replace(list, groups);

    if (!items.some((item) => item.key === activeKey)) activeKey = items[0]?.key ?? null;
    const has = items.length > 0;
    list.hidden = !has;
    input.setAttribute('aria-expanded', String(has));
    empty.hidden = has;
    if (!has) {
      replace(
        empty,
        query.trim()
          ? `Nothing matches “${query.trim()}”.`
          : 'You are not in any conversation yet.',
      );
    }
    showActive(false);
  }

  function showActive(scroll = true) {
    let activeEl = null;
    for (const el of list.querySelectorAll('[role="option"]')) {
      const on = el.dataset.key === activeKey;
      el.setAttribute('aria-selected', on ? 'true' : 'false');
      el.classList.toggle('is-active', on);
      if (on) activeEl = el;
    }
    if (activeEl) {
      input.setAttribute('aria-activedescendant', activeEl.id);
      if (scroll) activeEl.scrollIntoView({ block: 'nearest' });
      else if (list.scrollTop > activeEl.offsetTop) list.scrollTop = 0;
    } else {
      input.removeAttribute('aria-activedescendant');
    }
  }

  function announce() {
    const rooms = items.filter((item) => item.kind === 'room').length;
    const persons = items.length - rooms;
    if (!input.value.trim()) return;
    if (!items.length) {
      live.say('No matches.');
      return;
    }
    const parts = [];
    if (rooms) parts.push(`${rooms} ${rooms === 1 ? 'conversation' : 'conversations'}`);
    if (persons) parts.push(`${persons} ${persons === 1 ? 'person' : 'people'}`);
    live.say(`${parts.join(' and ')}. Use the arrow keys to choose.`);
  }

  function move(step) {
    const count = items.length;
    if (!count) return;
    const at = items.findIndex((item) => item.key === activeKey);
    let next;
    if (at < 0) next = step > 0 ? 0 : count - 1;
    else if (Math.abs(step) === 1) next = (at + step + count) % count; // arrows wrap around
    else next = Math.min(count - 1, Math.max(0, at + step)); // page keys stop at the ends
    activeKey = items[next].key;
    showActive();
  }

  async function choose(item) {
    if (!item || pending) return;
    if (item.kind === 'room') {
      close('done');
      ctx.openRoom(item.summary.room.id);
      return;
    }
    const user = item.user;
    const name = user.display_name || user.username;
    pending = true;
    problems.hide();
    input.setAttribute('aria-busy', 'true');
    dialog.classList.add('is-busy');
    busyLine.textContent = `Opening your conversation with ${name}…`;
    try {
      const answer = await api.request('POST', '/api/v1/rooms', { kind: 'dm', members: [user.username] });
      close('done');
      ctx.openRoom(answer.room.id);
    } catch (error) {
      pending = false;
      input.removeAttribute('aria-busy');
      dialog.classList.remove('is-busy');
      busyLine.textContent = '';
      problems.show(`Could not open a conversation with ${name}: ${error.message}`, 'error');
      input.focus();
    }
  }

  input.addEventListener('input', () => {
    activeKey = null;
    problems.hide();
    render();
    announce();
  });
  input.addEventListener('keydown', (event) => {
    if (event.isComposing) return;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      move(event.key === 'ArrowDown' ? 1 : -1);
    } else if (event.key === 'PageDown' || event.key === 'PageUp') {
      event.preventDefault();
      move(event.key === 'PageDown' ? 8 : -8);
    } else if (event.key === 'Enter') {
      event.preventDefault();
      choose(items.find((item) => item.key === activeKey));
    } else if ((event.key === 'k' || event.key === 'K') && (event.ctrlKey || event.metaKey) && !event.altKey) {
      // The shortcut that opened it closes it.
      event.preventDefault();
      event.stopPropagation();
      close('cancel');
    }
  });
  list.addEventListener('mousedown', (event) => event.preventDefault()); // keep focus in the box
  list.addEventListener('click', (event) => {
    const el = event.target.closest('[role="option"]');
    if (el) choose(items.find((item) => item.key === el.dataset.key));
  });
  list.addEventListener('mousemove', (event) => {
    const el = event.target.closest('[role="option"]');
    if (el && el.dataset.key !== activeKey) {
      activeKey = el.dataset.key;
      showActive(false);
    }
  });

  const offRooms = client.on('rooms', () => render());
  render();

  if (me?.role !== 'guest') {
    loadUsers()
      .then((users) => {
        if (!dialog.isConnected) return;
        people = users.filter((user) => user.id !== me?.id);
        if (input.value.trim()) {
          render();
          announce();
        }
      })
      .catch(() => {
        // No people then (offline, or refused): rooms still work.
      });
  }

  return { close };
}
