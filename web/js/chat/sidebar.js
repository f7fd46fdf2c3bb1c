// The list of the user's conversations: channels and direct messages with
// unread and mention badges, presence dots for the people of direct
// conversations, and the ways to find or start one.

import { h, icon, replace } from '../dom.js';
import { colourSlot, initials } from '../format.js';
import { href } from '../router.js';
import { Subscriptions } from './emitter.js';
import { presenceDot } from './presence-ui.js';
import { dmPartner, roomName, roomPath, sidebarGroups } from './rooms.js';

function badge(summary) {
  if (summary.mentions > 0) {
    return h('span', { class: 'side-badge side-badge--mention', 'aria-hidden': 'true' }, summary.mentions > 99 ? '99+' : String(summary.mentions));
  }
  if (summary.unread > 0 && (summary.room.kind === 'dm' || summary.room.kind === 'group')) {
    return h('span', { class: 'side-badge', 'aria-hidden': 'true' }, summary.unread > 99 ? '99+' : String(summary.unread));
  }
  return null;
}

function unreadText(summary) {
  const parts = [];
  if (summary.mentions) parts.push(`${summary.mentions} ${summary.mentions === 1 ? 'mention' : 'mentions'}`);
  if (summary.unread) parts.push(`${summary.unread} unread`);
  return parts.length ? `, ${parts.join(', ')}` : '';
}

function leading(summary, client) {
  const room = summary.room;
  if (room.kind === 'channel') return h('span', { class: 'side-room__sigil', 'aria-hidden': 'true' }, icon('hash'));
  if (room.kind === 'private') return h('span', { class: 'side-room__sigil', 'aria-hidden': 'true' }, icon('lock'));
  if (room.kind === 'group') {
    return h('span', { class: 'side-room__avatar side-room__avatar--group', 'aria-hidden': 'true' }, String(room.member_count));
  }
  const partner = dmPartner(room, client.me);
  const presence = partner ? client.presenceOf(partner.id) : null;
  return h(
    'span',
    { class: 'side-room__avatar-wrap' },
    h(
      'span',
      { class: ['side-room__avatar', `avatar--c${colourSlot(partner?.username ?? '?')}`], 'aria-hidden': 'true' },
      initials(partner?.display_name ?? '?'),
    ),
    presenceDot(presence, { size: 'small', decorative: true }),
  );
}

function roomRow(summary, client, activeId) {
  const room = summary.room;
  const name = roomName(room, client.me);
  const unread = summary.unread > 0;
  let custom = null;
  let statusLabel = '';
  if (room.kind === 'dm') {
    const partner = dmPartner(room, client.me);
    const presence = partner ? client.presenceOf(partner.id) : null;
    if (presence?.emoji || presence?.text) {
      custom = h('span', { class: 'side-room__custom', title: presence.text ?? '', 'aria-hidden': 'true' }, presence.emoji ?? '💬');
    }
    if (presence) {
      statusLabel = `, ${presence.status === 'dnd' ? 'do not disturb' : presence.status}`;
      if (presence.text) statusLabel += `, ${presence.text}`;
    }
  }
  return h(
    'li',
    {},
    h(
      'a',
      {
        class: ['side-room', unread && 'is-unread', room.id === activeId && 'is-active'],
        href: href(roomPath(room.id)),
        'aria-current': room.id === activeId ? 'page' : null,
        dataset: { room: String(room.id) },
      },
      leading(summary, client),
      // Named by its own text (what is seen, plus what only a screen reader
      // needs, in the same box so no space is put between them).
      h(
        'span',
        { class: 'side-room__name' },
        room.kind === 'channel' || room.kind === 'private'
          ? h('span', { class: 'visually-hidden' }, room.kind === 'channel' ? 'Channel ' : 'Private room ')
          : null,
        name,
        statusLabel || unreadText(summary) ? h('span', { class: 'visually-hidden' }, `${statusLabel}${unreadText(summary)}`) : null,
      ),
      custom,
      badge(summary),
    ),
  );
}

function section(title, actions, rows, empty) {
  const headingId = `side-${title.toLowerCase().replace(/\W+/g, '-')}`;
  return h(
    'section',
    { class: 'side-section', 'aria-labelledby': headingId },
    h('div', { class: 'side-section__head' }, h('h2', { class: 'side-section__title', id: headingId }, title), h('div', { class: 'side-section__actions' }, actions)),
    rows.length ? h('ul', { class: 'side-list' }, rows) : h('p', { class: 'side-section__empty' }, empty),
  );
}

/**
 * `ctx`: {client, openSwitcher(), openBrowse(), openCreateChannel(),
 * openNewMessage(), openSearch(q)}, `top`: the status button and the like.
 */
export function sidebar(ctx, { top, footer }) {
  const { client } = ctx;
  const subs = new Subscriptions();
  let activeId = null;
  const lists = h('div', { class: 'side-lists' });
  const searchInput = h('input', {
    class: 'side-search__input',
    type: 'search',
    placeholder: 'Search messages',
    'aria-label': 'Search messages',
    enterkeyhint: 'search',
  });
  const searchForm = h('form', { class: 'side-search', role: 'search' }, icon('search', 'side-search__icon'), searchInput);
  searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.openSearch(searchInput.value.trim());
  });
  const jumpTo = h(
    'button',
    { type: 'button', class: 'side-jump', onclick: () => ctx.openSwitcher(), 'aria-keyshortcuts': 'Control+K Meta+K' },
    h('span', {}, 'Jump to…'),
    h('kbd', { class: 'side-jump__kbd' }, navigator.platform?.startsWith('Mac') ? '⌘K' : 'Ctrl K'),
  );
  const smallButton = (iconName, label, onclick) =>
    h('button', { type: 'button', class: 'side-icon-button', 'aria-label': label, title: label, onclick }, icon(iconName));

  const render = () => {
    if (!client.roomsLoaded) {
      lists.replaceChildren(
        h(
          'div',
          { class: 'side-loading', role: 'status', 'aria-label': 'Loading conversations' },
          [0, 1, 2, 3, 4].map(() => h('span', { class: 'side-skeleton' })),
        ),
      );
      return;
    }
    const groups = sidebarGroups(client);
    const isGuest = client.me.role === 'guest';
    const channelActions = isGuest
      ? []
      : [smallButton('search', 'Browse channels', () => ctx.openBrowse()), smallButton('plus', 'Create a channel', () => ctx.openCreateChannel())];
    const directActions = isGuest ? [] : [smallButton('plus', 'New message', () => ctx.openNewMessage())];
    replace(
      lists,
      section(
        'Channels',
        channelActions,
        groups.channels.map((s) => roomRow(s, client, activeId)),
        isGuest ? 'You are in no rooms yet.' : 'No channels yet. Browse or create one.',
      ),
      section(
        'Direct messages',
        directActions,
        groups.direct.map((s) => roomRow(s, client, activeId)),
        isGuest ? 'No conversations yet.' : 'Start a conversation with “New message”.',
      ),
      groups.archived.length ? section('Archived', [], groups.archived.map((s) => roomRow(s, client, activeId)), '') : null,
    );
  };

  let frame = 0;
  const schedule = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      render();
    });
  };
  subs.add(client.on('rooms', schedule));
  subs.add(client.on('presence', schedule));

  const node = h(
    'nav',
    { class: 'side', 'aria-label': 'Conversations' },
    h('div', { class: 'side__top' }, top),
    h('div', { class: 'side__tools' }, searchForm, jumpTo),
    h('div', { class: 'side__scroll' }, lists),
    footer ? h('div', { class: 'side__footer' }, footer) : null,
  );
  render();
  return {
    node,
    setActive(roomId) {
      activeId = roomId;
      render();
    },
    setSearch(q) {
      searchInput.value = q;
    },
    close() {
      subs.close();
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
