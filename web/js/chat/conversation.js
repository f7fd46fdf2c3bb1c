// The main pane: one conversation with its header, its messages (older ones
// loaded as the reader scrolls up, without the view jumping), the "new
// messages" divider at the read marker, the typing line and the composer.

import * as api from '../api.js';
import { h, icon, setText } from '../dom.js';
import { formatDate } from '../format.js';
import { confirmDialog } from '../ui.js';
import { composer } from './composer.js';
import { Subscriptions } from './emitter.js';
import { messageItem, pendingItem, QUICK_EMOJI } from './message-item.js';
import { customStatus, presenceDot, statusText } from './presence-ui.js';
import { openRoomSettings } from './room-settings.js';
import { dmPartner, isDirect, roomLabel, roomName } from './rooms.js';

const GROUP_WITHIN_MS = 5 * 60 * 1000;
const NEAR_TOP_PX = 300;
const AT_BOTTOM_PX = 48;

function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(ms) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  const key = dayKey(ms);
  if (key === dayKey(today.getTime())) return 'Today';
  if (key === dayKey(yesterday.getTime())) return 'Yesterday';
  return formatDate(ms);
}

/** Put `nodes` into `parent` in order, moving only what is out of place. */
function reconcile(parent, nodes) {
  const keep = new Set(nodes);
  for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
  let cursor = parent.firstElementChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextElementSibling;
    } else {
      parent.insertBefore(node, cursor);
    }
  }
}

function typingText(people) {
  const names = people.map((person) => person.display_name.split(/\s+/)[0]);
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return 'Several people are typing…';
}

/**
 * `ctx`: {client, me, openRoom, openSearch(q, roomId), toggleDrawer(), announce(text)}.
 * `focusSeq`: a message to bring into view (from a search result or a notification).
 */
export function conversationView(ctx, roomId, { focusSeq = null } = {}) {
  const { client } = ctx;
  const subs = new Subscriptions();
  const summary = () => client.rooms.get(roomId);
  const room = () => summary()?.room;
  const me = () => client.me;

  // -- header --------------------------------------------------------------------
  const title = h('h1', { class: 'conv__title', tabindex: '-1' });
  const subtitle = h('div', { class: 'conv__subtitle' });
  const membersButton = h('button', { type: 'button', class: 'conv__action', 'aria-expanded': 'false' });
  const drawerButton = h(
    'button',
    { type: 'button', class: 'conv__action conv__drawer-button', 'aria-label': 'Open the conversation list', onclick: () => ctx.toggleDrawer() },
    icon('menu'),
  );
  // Calls: start (audio or video) while the room has none, else join it.
  const callButton = h(
    'button',
    { type: 'button', class: 'conv__action', 'aria-label': 'Start a call', title: 'Start a call', onclick: () => ctx.calls?.start(roomId, false) },
    icon('phone'),
  );
  const videoButton = h(
    'button',
    { type: 'button', class: 'conv__action', 'aria-label': 'Start a video call', title: 'Start a video call', onclick: () => ctx.calls?.start(roomId, true) },
    icon('video'),
  );
  const joinButton = h(
    'button',
    { type: 'button', class: 'conv__action conv__join-call', hidden: true, onclick: () => ctx.calls?.callIn(roomId) && ctx.calls.join(ctx.calls.callIn(roomId)) },
    icon('phone'),
    h('span', {}, 'Join call'),
  );
  const renderCall = () => {
    const ongoing = ctx.calls?.callIn(roomId) ?? null;
    const mine = ongoing && ctx.calls.session?.callId === ongoing.call;
    const archived = Boolean(room()?.archived);
    joinButton.hidden = !ongoing || mine || archived;
    callButton.hidden = Boolean(ongoing) || archived;
    videoButton.hidden = Boolean(ongoing) || archived;
    if (ongoing) {
      const count = ongoing.participants.length;
      joinButton.title = `${count} ${count === 1 ? 'person' : 'people'} in the call`;
    }
  };
  const searchButton = h(
    'button',
    { type: 'button', class: 'conv__action', 'aria-label': 'Search this conversation', title: 'Search this conversation', onclick: () => ctx.openSearch('', roomId) },
    icon('search'),
  );
  const settingsButton = h(
    'button',
    { type: 'button', class: 'conv__action', 'aria-label': 'Conversation settings', title: 'Conversation settings' },
    icon('sliders'),
  );
  settingsButton.addEventListener('click', () => openRoomSettings(ctx, roomId));
  const header = h(
    'header',
    { class: 'conv__header' },
    drawerButton,
    h('div', { class: 'conv__titles' }, title, subtitle),
    h('div', { class: 'conv__actions' }, joinButton, callButton, videoButton, searchButton, membersButton, settingsButton),
  );

  // -- messages ------------------------------------------------------------------
  const list = h('ol', { class: 'msgs', 'aria-label': 'Messages' });
  const top = h('div', { class: 'msgs__top' });
  // A log: screen readers read what is added; the list inside stays a list.
  const scroller = h(
    'div',
    { class: 'conv__scroller', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: '0', 'aria-label': 'Messages' },
    top,
    list,
  );
  const typing = h('p', { class: 'conv__typing', 'aria-live': 'off' });
  const jump = h(
    'button',
    { type: 'button', class: 'conv__jump', hidden: true, onclick: () => scrollToBottom(true) },
    icon('down'),
    h('span', {}, 'Jump to latest'),
  );
  const dropHint = h('div', { class: 'conv__drop', hidden: true, 'aria-hidden': 'true' }, icon('clip'), h('span', {}, 'Drop files to share them here'));

  // -- members panel -------------------------------------------------------------
  const membersPanel = h('aside', { class: 'members', hidden: true, 'aria-label': 'People in this conversation' });
  let memberCache = null;
  const loadMembers = async () => {
    if (!memberCache) {
      memberCache = api.request('GET', `/api/v1/rooms/${roomId}/members`).then(
        (answer) => answer.members,
        (error) => {
          memberCache = null;
          throw error;
        },
      );
    }
    return memberCache;
  };
  const renderMembers = async () => {
    if (membersPanel.hidden) return;
    let people;
    try {
      people = await loadMembers();
    } catch (error) {
      membersPanel.replaceChildren(h('p', { class: 'members__error' }, error.message));
      return;
    }
    membersPanel.replaceChildren(
      h(
        'div',
        { class: 'members__head' },
        h('h2', { class: 'members__title' }, `People (${people.length})`),
        h('button', { type: 'button', class: 'conv__action', 'aria-label': 'Close the people list', onclick: () => toggleMembers(false) }, icon('close')),
      ),
      h(
        'ul',
        { class: 'members__list' },
        people.map((person) => {
          const presence = client.presenceOf(person.id);
          return h(
            'li',
            { class: 'member' },
            presenceDot(presence),
            h(
              'span',
              { class: 'member__text' },
              h('span', { class: 'member__name' }, person.display_name, person.id === me().id ? ' (you)' : ''),
              h('span', { class: 'member__status' }, statusText(presence) || `@${person.username}`),
              customStatus(presence),
            ),
            person.role === 'owner' ? h('span', { class: 'badge' }, 'Owner') : null,
          );
        }),
      ),
    );
  };
  const toggleMembers = (open = membersPanel.hidden) => {
    const wasAtBottom = atBottom();
    membersPanel.hidden = !open;
    // The column gets narrower or wider: keep the newest message in view.
    if (wasAtBottom) scrollToBottom();
    membersButton.setAttribute('aria-expanded', String(open));
    node.classList.toggle('has-members', open);
    if (open) renderMembers();
    else membersButton.focus();
  };
  membersButton.addEventListener('click', () => toggleMembers());

  // -- state ---------------------------------------------------------------------
  let dividerSeq = null; // Messages after this were unread when the room was opened.
  let editing = null; // {message, editorNode}
  let loadingOlder = false;
  let loadError = null;
  let loaded = false;
  const cache = new Map();
  const pendingCache = new Map();
  const dayCache = new Map();
  const divider = h('li', { class: 'msgs__divider' }, h('span', {}, 'New messages'));

  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < AT_BOTTOM_PX;
  const scrollToBottom = (smooth = false) => {
    scroller.scrollTo({ top: scroller.scrollHeight, behavior: smooth ? 'smooth' : 'auto' });
    jump.hidden = true;
  };

  const actions = {
    react: (message, emoji, on) => client.react(message.id, emoji, on).catch((error) => ctx.announce(error.message)),
    pickReaction: (message, anchor) => openReactionPicker(message, anchor),
    reply: (message) => write.setReply(message),
    edit: (message) => startEdit(message),
    remove: (message) => removeMessage(message),
    showMessage: (seq) => showMessage(seq),
    retry: (item) => client.retry(item.clientMsgId),
    discard: (item) => client.discard(item.clientMsgId),
  };

  const renderHeader = () => {
    const current = room();
    if (!current) return;
    write.setLabel(roomLabel(current, me()));
    write.node.hidden = current.archived;
    archivedNote.hidden = !current.archived;
    setText(title, roomLabel(current, me()));
    subtitle.replaceChildren();
    if (current.kind === 'dm') {
      const partner = dmPartner(current, me());
      const presence = partner ? client.presenceOf(partner.id) : null;
      subtitle.append(presenceDot(presence, { decorative: true }), h('span', {}, statusText(presence) || `@${partner?.username ?? ''}`));
      const custom = customStatus(presence);
      if (custom) subtitle.append(custom);
    } else if (current.topic) {
      subtitle.append(h('span', { class: 'conv__topic', title: current.topic }, current.topic));
    } else if (current.kind !== 'group') {
      subtitle.append(h('span', { class: 'conv__topic conv__topic--empty' }, current.kind === 'private' ? 'Private room' : 'Public channel'));
    }
    if (current.archived) subtitle.append(h('span', { class: 'badge' }, 'Archived'));
    membersButton.replaceChildren(icon('users'), h('span', {}, String(current.member_count)));
    membersButton.setAttribute('aria-label', `People: ${current.member_count}`);
    membersButton.title = 'People in this conversation';
    renderCall();
  };

  const renderTop = (timeline) => {
    const current = room();
    if (loadError) {
      top.replaceChildren(h('p', { class: 'msgs__note msgs__note--error', role: 'alert' }, loadError));
    } else if (!loaded || loadingOlder) {
      top.replaceChildren(h('p', { class: 'msgs__note', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading messages…'));
    } else if (!timeline.hasOlder && current) {
      const name = roomName(current, me());
      top.replaceChildren(
        h(
          'div',
          { class: 'msgs__start' },
          h('span', { class: 'msgs__start-icon', 'aria-hidden': 'true' }, icon(isDirect(current) ? 'chat' : 'hash')),
          h('p', { class: 'msgs__start-title' }, isDirect(current) ? `This is the beginning of your conversation with ${name}.` : `This is the very beginning of ${roomLabel(current, me())}.`),
          current.topic ? h('p', { class: 'msgs__start-text' }, current.topic) : null,
          h('p', { class: 'msgs__start-text' }, `Created ${formatDate(current.created_at)}.`),
        ),
      );
    } else {
      top.replaceChildren();
    }
  };

  const renderMessages = () => {
    const timeline = client.timeline(roomId);
    const messages = timeline.messages();
    const nodes = [];
    let previous = null;
    const myself = me();
    for (const message of messages) {
      const day = dayKey(message.created_at);
      if (!previous || dayKey(previous.created_at) !== day) {
        let sep = dayCache.get(day);
        if (!sep) {
          sep = h('li', { class: 'msgs__day' }, h('span', {}, dayLabel(message.created_at)));
          dayCache.set(day, sep);
        }
        nodes.push(sep);
      }
      if (dividerSeq !== null && message.seq > dividerSeq && !nodes.includes(divider) && message.sender?.id !== myself.id) {
        nodes.push(divider);
      }
      const grouped =
        previous !== null &&
        nodes[nodes.length - 1] !== divider &&
        dayKey(previous.created_at) === day &&
        previous.kind === message.kind &&
        message.kind !== 'system' &&
        previous.sender?.id === message.sender?.id &&
        previous.bot_name === message.bot_name &&
        message.created_at - previous.created_at < GROUP_WITHIN_MS &&
        !message.reply_to;
      const isEditing = editing?.message.id === message.id;
      const key = `${message.id}:${message.change}:${grouped}:${isEditing}:${message.edited_at}`;
      let entry = cache.get(message.seq);
      if (!entry || entry.key !== key) {
        entry = { key, node: messageItem(message, { me: myself, grouped, actions, editor: isEditing ? editing.node : null }) };
        cache.set(message.seq, entry);
      }
      nodes.push(entry.node);
      previous = message;
    }
    for (const item of client.pendingIn(roomId)) {
      const key = `${item.state}:${item.error}`;
      let entry = pendingCache.get(item.clientMsgId);
      if (!entry || entry.key !== key) {
        entry = { key, node: pendingItem(item, { me: myself, actions }) };
        pendingCache.set(item.clientMsgId, entry);
      }
      nodes.push(entry.node);
    }
    reconcile(list, nodes);
    renderTop(timeline);
    if (loaded && messages.length === 0 && nodes.length === 0 && !timeline.hasOlder) {
      list.classList.add('is-empty');
    } else {
      list.classList.remove('is-empty');
    }
  };

  // One render per frame, keeping the reader where they were.
  let frame = 0;
  let stickToBottom = true;
  const render = ({ keepBottom = false } = {}) => {
    if (keepBottom) stickToBottom = true;
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      // Whether the reader was at the bottom of what they saw, before this render.
      const wasAtBottom = atBottom();
      const anchor = firstVisible();
      const anchorTop = anchor?.getBoundingClientRect().top;
      renderMessages();
      updateRoving();
      if (stickToBottom || wasAtBottom) {
        scrollToBottom();
      } else if (anchor?.isConnected) {
        scroller.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
      }
      stickToBottom = false;
      jump.hidden = atBottom();
      maybeMarkRead();
      maybeLoadOlder();
    });
  };

  const firstVisible = () => {
    const top = scroller.getBoundingClientRect().top;
    for (const child of list.children) {
      if (child.getBoundingClientRect().bottom > top) return child;
    }
    return null;
  };

  // Keyboard: one message is in the tab order (the newest, or the one last
  // focused); arrow keys move between messages, Tab goes on to its actions.
  let activeSeq = null;
  const messageNodes = () => [...list.querySelectorAll('li.msg[data-seq]')];
  const updateRoving = () => {
    const nodes = messageNodes();
    const active = nodes.find((li) => Number(li.dataset.seq) === activeSeq) ?? nodes[nodes.length - 1];
    for (const li of nodes) li.tabIndex = li === active ? 0 : -1;
  };
  list.addEventListener('focusin', (event) => {
    const li = event.target.closest('li.msg[data-seq]');
    if (!li || activeSeq === Number(li.dataset.seq)) return;
    activeSeq = Number(li.dataset.seq);
    updateRoving();
  });
  list.addEventListener('keydown', (event) => {
    const li = event.target;
    if (!(li instanceof HTMLElement) || !li.matches('li.msg[data-seq]')) return;
    const nodes = messageNodes();
    const at = nodes.indexOf(li);
    let next = null;
    if (event.key === 'ArrowUp') next = nodes[at - 1];
    else if (event.key === 'ArrowDown') next = nodes[at + 1];
    else if (event.key === 'Home') next = nodes[0];
    else if (event.key === 'End') next = nodes[nodes.length - 1];
    else return;
    event.preventDefault();
    if (next) {
      next.focus();
      next.scrollIntoView({ block: 'nearest' });
    }
    if (event.key === 'ArrowUp' && at === 0) maybeLoadOlder();
  });

  const maybeMarkRead = () => {
    const timeline = client.timelines.get(roomId);
    if (!timeline?.loaded || !atBottom()) return;
    if (document.visibilityState !== 'visible' || !document.hasFocus()) return;
    client.markRead(roomId, timeline.syncSeq);
  };

  const maybeLoadOlder = async () => {
    const timeline = client.timelines.get(roomId);
    if (!timeline?.loaded || !timeline.hasOlder || loadingOlder || scroller.scrollTop > NEAR_TOP_PX) return;
    loadingOlder = true;
    renderTop(timeline);
    try {
      await client.loadOlder(roomId);
      loadError = null;
    } catch (error) {
      loadError = error.code === 'offline' ? null : `Could not load older messages: ${error.message}`;
    } finally {
      loadingOlder = false;
      render();
    }
  };

  const showMessage = async (seq) => {
    try {
      await client.loadUntil(roomId, seq);
    } catch (error) {
      ctx.announce(`Could not load that message: ${error.message}`);
      return;
    }
    if (frame) {
      cancelAnimationFrame(frame);
      frame = 0;
    }
    stickToBottom = false;
    renderMessages();
    activeSeq = seq;
    updateRoving();
    const target = list.querySelector(`#msg-${seq}`);
    if (!target) {
      ctx.announce('That message is no longer here.');
      return;
    }
    target.scrollIntoView({ block: 'center' });
    target.classList.remove('is-highlighted');
    void target.offsetWidth; // Restart the highlight animation.
    target.classList.add('is-highlighted');
    target.focus({ preventScroll: true });
    jump.hidden = atBottom();
  };

  // -- editing and deleting ------------------------------------------------------
  const startEdit = (message) => {
    const area = h('textarea', { class: 'msg-edit__input', 'aria-label': 'Edit message', rows: '2' });
    area.value = message.body;
    const problem = h('p', { class: 'msg-edit__error', role: 'alert', hidden: true });
    const save = async () => {
      const body = area.value.trim();
      if (body === message.body) {
        stopEdit();
        return;
      }
      if (!body && !message.files.length) {
        problem.hidden = false;
        setText(problem, 'A message needs some text. To remove it, delete it instead.');
        return;
      }
      try {
        await client.edit(message.id, body);
        stopEdit();
      } catch (error) {
        problem.hidden = false;
        setText(problem, error.message);
      }
    };
    area.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save();
      } else if (event.key === 'Escape') {
        event.preventDefault();
        stopEdit();
      }
    });
    const node = h(
      'div',
      { class: 'msg-edit' },
      area,
      problem,
      h(
        'div',
        { class: 'msg-edit__actions' },
        h('span', { class: 'msg-edit__hint' }, 'Enter to save · Esc to cancel'),
        h('button', { type: 'button', class: 'btn btn--ghost btn--small', onclick: () => stopEdit() }, 'Cancel'),
        h('button', { type: 'button', class: 'btn btn--primary btn--small', onclick: save }, 'Save'),
      ),
    );
    editing = { message, node };
    renderMessages();
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  };

  const stopEdit = () => {
    editing = null;
    renderMessages();
    write.focus();
  };

  const editLast = () => {
    const own = client
      .timeline(roomId)
      .messages()
      .reverse()
      .find((message) => message.sender?.id === me().id && message.kind === 'user' && !message.deleted);
    if (!own) return false;
    startEdit(own);
    return true;
  };

  const removeMessage = async (message) => {
    const ok = await confirmDialog({
      title: 'Delete this message?',
      message: 'It is removed for everyone in the conversation. This cannot be undone.',
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await client.remove(message.id);
      ctx.announce('Message deleted.');
    } catch (error) {
      ctx.announce(`Could not delete: ${error.message}`);
    }
  };

  // -- reactions -----------------------------------------------------------------
  let picker = null;
  const closePicker = (focusBack = true) => {
    if (!picker) return;
    const { node, anchor } = picker;
    picker = null;
    node.remove();
    if (focusBack && anchor.isConnected) anchor.focus();
  };
  const openReactionPicker = (message, anchor) => {
    closePicker(false);
    const node = h(
      'div',
      { class: 'emoji-picker', role: 'dialog', 'aria-label': 'Choose a reaction' },
      h(
        'div',
        { class: 'emoji-picker__grid' },
        QUICK_EMOJI.map((emoji) =>
          h(
            'button',
            {
              type: 'button',
              class: 'emoji-picker__emoji',
              'aria-label': `React with ${emoji}`,
              onclick: () => {
                closePicker();
                const mine = message.reactions.find((r) => r.emoji === emoji)?.users.includes(me().username);
                actions.react(message, emoji, !mine);
              },
            },
            emoji,
          ),
        ),
      ),
    );
    node.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        closePicker();
      }
    });
    node.addEventListener('focusout', (event) => {
      if (!node.contains(event.relatedTarget)) closePicker(false);
    });
    document.body.append(node);
    const rect = anchor.getBoundingClientRect();
    const width = node.offsetWidth;
    const height = node.offsetHeight;
    node.style.left = `${Math.max(8, Math.min(window.innerWidth - width - 8, rect.right - width))}px`;
    node.style.top = `${rect.top - height - 6 < 8 ? rect.bottom + 6 : rect.top - height - 6}px`;
    picker = { node, anchor };
    node.querySelector('button')?.focus();
  };

  // -- composer ------------------------------------------------------------------
  // The room may not be known yet (the page was opened on its address before
  // the room list arrived): everything the composer asks about it is looked up late.
  const write = composer({
    roomId,
    roomLabel: () => (room() ? roomLabel(room(), me()) : 'this conversation'),
    members: async () => (room() && isDirect(room()) ? room().members : loadMembers()),
    canMentionRoom: () => Boolean(room()) && room().kind !== 'dm',
    onSend: (body, options) => {
      client.send(roomId, body, options);
      client.stoppedTyping(roomId);
      ctx.onSent?.();
      render({ keepBottom: true });
    },
    onEditLast: editLast,
    onTyping: () => client.typing(roomId),
  });
  const archivedNote = h('p', { class: 'conv__archived', hidden: true }, 'This conversation is archived: you can read it but not write in it.');

  const node = h(
    'section',
    { class: 'conv', 'aria-labelledby': title.id || (title.id = `conv-title-${roomId}`) },
    header,
    h('div', { class: 'conv__body' }, h('div', { class: 'conv__column' }, scroller, jump, typing, write.node, archivedNote, dropHint), membersPanel),
  );

  // Drag and drop anywhere on the conversation.
  let dragDepth = 0;
  node.addEventListener('dragenter', (event) => {
    if (![...(event.dataTransfer?.types ?? [])].includes('Files')) return;
    dragDepth += 1;
    dropHint.hidden = false;
  });
  node.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropHint.hidden = true;
  });
  node.addEventListener('dragover', (event) => {
    if ([...(event.dataTransfer?.types ?? [])].includes('Files')) event.preventDefault();
  });
  node.addEventListener('drop', (event) => {
    const files = [...(event.dataTransfer?.files ?? [])];
    dragDepth = 0;
    dropHint.hidden = true;
    if (!files.length) return;
    event.preventDefault();
    if (!room()?.archived) write.addFiles(files);
  });

  scroller.addEventListener('scroll', () => {
    jump.hidden = atBottom();
    maybeMarkRead();
    maybeLoadOlder();
  });
  const onFocus = () => maybeMarkRead();
  window.addEventListener('focus', onFocus);
  document.addEventListener('visibilitychange', onFocus);

  const renderTyping = () => setText(typing, typingText(client.typingIn(roomId)));

  subs.add(client.on('timeline', (id) => id === roomId && render()));
  subs.add(client.on('outbox', (id) => id === roomId && render()));
  subs.add(client.on('typing', (id) => id === roomId && renderTyping()));
  if (ctx.calls) {
    subs.add(ctx.calls.on('rooms', (id) => id === roomId && renderCall()));
    subs.add(ctx.calls.on('session', renderCall));
  }
  let memberCount = null;
  subs.add(
    client.on('rooms', () => {
      const count = room()?.member_count ?? null;
      if (count !== memberCount) {
        // Someone joined or left: the people list and @ completion are stale.
        memberCount = count;
        memberCache = null;
      }
      renderHeader();
      if (room() && membersPanel.hidden === false) renderMembers();
    }),
  );
  subs.add(
    client.on('presence', () => {
      if (room()?.kind === 'dm') renderHeader();
      renderMembers();
    }),
  );
  subs.add(
    client.on('state', (state) => {
      if (state === 'online' && !loaded) open();
    }),
  );

  const open = async () => {
    const entry = summary();
    if (entry && dividerSeq === null && entry.unread > 0) dividerSeq = entry.last_read_seq;
    try {
      await client.openRoom(roomId);
      loaded = true;
      loadError = null;
    } catch (error) {
      loadError =
        error.code === 'offline'
          ? null
          : error.code === 'room_not_found' || error.code === 'not_a_member'
            ? 'You are not in this conversation.'
            : `Could not load the messages: ${error.message}`;
      renderTop(client.timeline(roomId));
      return;
    }
    if (focusSeq) {
      await showMessage(focusSeq);
    } else {
      render({ keepBottom: true });
    }
  };

  renderHeader();
  renderCall();
  renderTyping();
  renderMessages();
  open();

  return {
    node,
    roomId,
    focus: () => write.focus(),
    showMessage,
    close() {
      subs.close();
      closePicker(false);
      window.removeEventListener('focus', onFocus);
      document.removeEventListener('visibilitychange', onFocus);
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
