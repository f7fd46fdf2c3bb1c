// #/chat, #/chat/<room> and #/chat/<room>/<seq>: the chat screen.
//
// The screen is built once per sign-in and kept while the user moves between
// conversations, so the sidebar, drafts and scroll positions survive; the
// router only tells it which conversation to show. The ChatClient (and with
// it the socket, notifications and activity reports) lives as long as the
// sign-in, also while an account page is open.

import { h, icon, setText } from '../dom.js';
import { currentPath, navigate } from '../router.js';
import * as session from '../session.js';
import { alertBox } from '../ui.js';
import { startActivityReporter } from '../chat/activity.js';
import { openBrowseChannels, openCreateChannel } from '../chat/browse.js';
import { Calls } from '../chat/calls.js';
import { ChatClient } from '../chat/client.js';
import { conversationView } from '../chat/conversation.js';
import { openNewMessage } from '../chat/new-message.js';
import { startNotifications } from '../chat/notifications.js';
import { roomLabel, roomPath } from '../chat/rooms.js';
import { searchView } from '../chat/search-view.js';
import { sidebar } from '../chat/sidebar.js';
import { statusButton } from '../chat/status-menu.js';
import { openSwitcher } from '../chat/switcher.js';
import { accountMenu } from './layout.js';

const LAST_ROOM_KEY = 'collab.lastRoom.';

let live = null; // {client, shell, notifications, stopActivity}

/** The running chat of the signed-in user, started on first use. */
export function chatClient() {
  return ensureLive().client;
}

/** End the chat of a user who signed out (or whose session ended). */
export function stopChat() {
  if (!live) return;
  live.calls.stop();
  live.client.stop();
  live.notifications.stop();
  live.stopActivity();
  live.shell?.close();
  live = null;
}

function ensureLive() {
  if (live) return live;
  const client = new ChatClient(session.currentUser());
  const ctx = { client, me: client.me };
  live = {
    client,
    ctx,
    shell: null,
    notifications: startNotifications(makeContext(ctx)),
    stopActivity: startActivityReporter(client),
  };
  live.calls = ctx.calls = new Calls(ctx);
  client.start();
  return live;
}

function makeContext(ctx) {
  return Object.assign(ctx, {
    navigate,
    openRoom(roomId, seq = null) {
      navigate(roomPath(roomId, seq));
    },
    announce(text) {
      live?.shell?.announce(text);
    },
    openSearch(q = '', roomId = null) {
      live?.shell?.showSearch(q, roomId);
    },
    openSwitcher: () => openSwitcher(ctx),
    openBrowse: () => openBrowseChannels(ctx),
    openCreateChannel: () => openCreateChannel(ctx),
    openNewMessage: () => openNewMessage(ctx),
    toggleDrawer: (open) => live?.shell?.toggleDrawer(open),
    onSent: () => live?.shell?.offerNotifications(),
    // The call view goes beside the conversation (null takes it away).
    mountCall: (node) => live?.shell?.mountCall(node),
    toggleCallChat: (open) => live?.shell?.toggleCallChat(open),
  });
}

function connectionBanner(client) {
  const text = h('span', { class: 'conn__text' });
  const retry = h('button', { type: 'button', class: 'btn btn--secondary btn--small', onclick: () => client.connection.reconnectNow() }, 'Reconnect now');
  const node = h('div', { class: 'conn', role: 'status', hidden: true }, icon('wifi'), text, retry);
  let wasOnline = false;
  let ticker = 0;
  let okTimer = 0;
  const queued = () => {
    const count = client.outbox.items.filter((item) => item.state !== 'failed').length;
    return count ? ` ${count} ${count === 1 ? 'message waits' : 'messages wait'} to be sent.` : '';
  };
  const update = (state) => {
    window.clearInterval(ticker);
    window.clearTimeout(okTimer);
    node.classList.remove('conn--ok', 'conn--offline');
    retry.hidden = true;
    if (state === 'online') {
      if (wasOnline && !node.hidden) {
        node.classList.add('conn--ok');
        setText(text, 'Connected again.');
        okTimer = window.setTimeout(() => {
          node.hidden = true;
        }, 2500);
      } else {
        node.hidden = true;
      }
      wasOnline = true;
      return;
    }
    if (state === 'connecting') {
      if (!wasOnline && client.connection.attempts === 0) return; // The first start: the sidebar shows loading.
      node.hidden = false;
      node.classList.add('conn--offline');
      setText(text, `Reconnecting…${queued()}`);
      return;
    }
    if (state === 'waiting') {
      node.hidden = false;
      node.classList.add('conn--offline');
      retry.hidden = false;
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((client.connection.retryAt - Date.now()) / 1000));
        setText(text, `You are offline. Trying again in ${seconds} s.${queued()}`);
      };
      tick();
      ticker = window.setInterval(tick, 1000);
    }
  };
  return { node, update };
}

function emptyState(ctx) {
  const isGuest = ctx.client.me.role === 'guest';
  return h(
    'section',
    { class: 'chat-empty', 'aria-labelledby': 'chat-empty-title' },
    h('div', { class: 'chat-empty__art', 'aria-hidden': 'true' }, icon('chat')),
    h('h1', { class: 'chat-empty__title', id: 'chat-empty-title', tabindex: '-1' }, `Welcome, ${ctx.client.me.display_name}`),
    h(
      'p',
      { class: 'chat-empty__text' },
      isGuest
        ? 'Pick a conversation from your list. Rooms people add you to show up there.'
        : 'Pick a conversation from your list, or start a new one.',
    ),
    isGuest
      ? null
      : h(
          'div',
          { class: 'chat-empty__actions' },
          h('button', { type: 'button', class: 'btn btn--primary', onclick: () => ctx.openNewMessage() }, icon('compose'), h('span', {}, 'New message')),
          h('button', { type: 'button', class: 'btn btn--secondary', onclick: () => ctx.openBrowse() }, icon('hash'), h('span', {}, 'Browse channels')),
        ),
  );
}

function buildShell(ctx) {
  const { client } = ctx;
  const announcer = h('div', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  const problems = alertBox('error');
  const status = statusButton(ctx);
  const account = accountMenu(client.me, '/chat', problems, { compact: true });
  const notifySlot = h('div', { class: 'side__prompt' });
  const side = sidebar(ctx, {
    top: h(
      'div',
      { class: 'side__brand-row' },
      h('a', { class: 'side__brand', href: '#/chat' }, h('img', { src: '/img/logo.svg', alt: '', width: 24, height: 24 }), h('span', {}, 'collab')),
      account,
    ),
    footer: h('div', {}, notifySlot, status.node),
  });
  const banner = connectionBanner(client);
  const pane = h('div', { class: 'chat__pane' });
  const callSlot = h('div', { class: 'chat__call', hidden: true });
  const main = h('main', { class: 'chat__main', id: 'main', tabindex: '-1' }, banner.node, problems.root, h('div', { class: 'chat__work' }, callSlot, pane));
  const backdrop = h('button', { type: 'button', class: 'chat__backdrop', tabindex: '-1', 'aria-label': 'Close the conversation list' });
  const node = h('div', { class: 'chat' }, h('div', { class: 'chat__side', id: 'chat-side' }, side.node), backdrop, main, announcer);

  let view = null; // {roomId, close(), ...} of the conversation, or the search
  let offered = false;

  // On a phone, screens without their own header (welcome, search) still need
  // a way to the drawer.
  const phoneBar = h(
    'div',
    { class: 'chat__phonebar' },
    h(
      'button',
      { type: 'button', class: 'conv__action', 'aria-label': 'Open the conversation list', onclick: () => toggleDrawer(true) },
      icon('menu'),
    ),
    h('span', { class: 'chat__phonebar-brand' }, h('img', { src: '/img/logo.svg', alt: '', width: 22, height: 22 }), 'collab'),
  );
  const setView = (next) => {
    view?.close();
    view = next;
    pane.replaceChildren(...(next?.roomId ? [] : [phoneBar]), next ? next.node : emptyState(ctx));
  };

  const toggleDrawer = (open = !node.classList.contains('is-drawer-open')) => {
    node.classList.toggle('is-drawer-open', open);
    if (open) side.node.querySelector('.side-room.is-active, .side-room, button')?.focus();
  };
  backdrop.addEventListener('click', () => toggleDrawer(false));

  const onKey = (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === 'k') {
      event.preventDefault();
      ctx.openSwitcher();
    } else if (event.key === 'Escape' && node.classList.contains('is-drawer-open')) {
      toggleDrawer(false);
    }
  };
  document.addEventListener('keydown', onKey);

  const offRooms = client.on('rooms', () => {
    if (view?.roomId) document.title = titleFor(view.roomId);
  });
  // Only a room the user really left closes its view: a room just created
  // may be shown before its room.joined arrives.
  const offLeft = client.on('room.left', (roomId) => {
    if (view?.roomId !== roomId) return;
    ctx.announce('You are no longer in that conversation.');
    navigate('/chat', { replace: true });
  });
  const offState = client.on('state', (state, extra) => banner.update(state, extra));

  const titleFor = (roomId) => {
    const summary = client.rooms.get(roomId);
    return summary ? `${roomLabel(summary.room, client.me)} · collab` : 'Chat · collab';
  };

  return {
    node,
    announce(text) {
      setText(announcer, '');
      window.setTimeout(() => setText(announcer, text), 50);
    },
    toggleDrawer,
    mountCall(callNode) {
      callSlot.replaceChildren(...(callNode ? [callNode] : []));
      callSlot.hidden = !callNode;
      node.classList.toggle('has-call', Boolean(callNode));
      if (!callNode) node.classList.remove('is-call-chat-open');
    },
    toggleCallChat(open) {
      node.classList.toggle('is-call-chat-open', open);
    },
    showRoom(roomId, seq) {
      toggleDrawer(false);
      side.setActive(roomId);
      side.setSearch('');
      if (view?.roomId === roomId) {
        if (seq) view.showMessage(seq);
        return view;
      }
      try {
        window.localStorage.setItem(LAST_ROOM_KEY + client.me.id, String(roomId));
      } catch {
        // Private mode: no memory of the last room.
      }
      setView(conversationView(ctx, roomId, { focusSeq: seq }));
      return view;
    },
    showHome() {
      side.setActive(null);
      if (view?.roomId || !pane.firstChild) setView(null);
      const openLast = () => {
        const last = Number(window.localStorage.getItem(LAST_ROOM_KEY + client.me.id));
        if (last && client.rooms.has(last) && currentPath() === '/chat') navigate(roomPath(last), { replace: true });
      };
      if (client.roomsLoaded) {
        openLast();
      } else {
        // Opened on #/chat before the room list came: go to the last room once it is here.
        const off = client.on('rooms', () => {
          off();
          openLast();
        });
      }
      return null;
    },
    showSearch(q, roomId) {
      toggleDrawer(false);
      side.setActive(null);
      side.setSearch(q);
      const back = view?.roomId ?? null;
      setView(
        searchView(ctx, {
          q,
          room: roomId,
          onDismiss: () => {
            side.setSearch('');
            if (back) {
              // Back to the conversation the search started from (the address never left it).
              navigate(roomPath(back), { replace: true });
            } else {
              setView(null);
            }
          },
        }),
      );
      view.focus?.();
    },
    offerNotifications() {
      if (offered) return;
      offered = true;
      const prompt = live?.notifications.permissionPrompt();
      if (prompt) notifySlot.replaceChildren(prompt);
    },
    title: (roomId) => titleFor(roomId),
    close() {
      view?.close();
      side.close();
      status.close?.();
      offRooms();
      offLeft();
      offState();
      document.removeEventListener('keydown', onKey);
    },
  };
}

/** The screen for the router: `roomId` and `seq` come from the address. */
export function chatView([roomParam, seqParam] = []) {
  const state = ensureLive();
  if (!state.shell) state.shell = buildShell(state.ctx);
  const shell = state.shell;
  const roomId = roomParam ? Number(roomParam) : null;
  const seq = seqParam ? Number(seqParam) : null;
  let focus = null;
  if (roomId) {
    const conversation = shell.showRoom(roomId, seq);
    focus = seq ? null : { focus: () => conversation.focus() };
  } else {
    shell.showHome();
  }
  return {
    title: roomId ? shell.title(roomId).replace(/ · collab$/, '') : 'Chat',
    node: shell.node,
    focus,
    keep: true,
  };
}
