// The two frames every screen sits in: the centred card of the signed-out
// screens, and the header bar with the account menu of the signed-in ones.

import * as api from '../api.js';
import { h, icon } from '../dom.js';
import { colourSlot, initials, roleLabel } from '../format.js';
import { href, navigate } from '../router.js';
import * as session from '../session.js';
import { alertBox, roleBadge } from '../ui.js';

function brand() {
  return h(
    'div',
    { class: 'brand' },
    h('img', { class: 'brand__logo', src: '/img/logo.svg', alt: '', width: 40, height: 40 }),
    h('span', { class: 'brand__name' }, 'collab'),
  );
}

/** A signed-out screen: logo, a card with the title and content, a footer line. */
export function authLayout({ title, subtitle, footer }, ...content) {
  return h(
    'main',
    { class: 'auth' },
    h(
      'div',
      { class: 'auth__inner' },
      brand(),
      h(
        'div',
        { class: 'card auth__card' },
        h('h1', { class: 'auth__title', tabindex: '-1' }, title),
        subtitle ? h('p', { class: 'auth__subtitle' }, subtitle) : null,
        content,
      ),
      footer ? h('p', { class: 'auth__footer' }, footer) : null,
    ),
  );
}

export function avatar(user, size = '') {
  return h(
    'span',
    { class: ['avatar', `avatar--c${colourSlot(user.username)}`, size && `avatar--${size}`], 'aria-hidden': 'true' },
    initials(user.display_name || user.username),
  );
}

function menuLink(path, iconName, label, activePath) {
  return h(
    'a',
    {
      class: 'menu__item',
      href: href(path),
      'aria-current': path === activePath ? 'page' : null,
    },
    icon(iconName),
    h('span', {}, label),
  );
}

/**
 * The account button and its menu. `compact` shows only an icon (the chat's
 * sidebar, where the user's name and avatar are shown beside it already).
 */
export function accountMenu(user, activePath, problems, { compact = false } = {}) {
  const panelId = 'account-menu';
  const toggle = h(
    'button',
    {
      type: 'button',
      class: ['account__button', compact && 'account__button--compact'],
      'aria-expanded': 'false',
      'aria-controls': panelId,
      // The compact button shows no text; the full one is named by its own
      // text (so its name starts as people see it).
      'aria-label': compact ? `Account menu for ${user.display_name}` : null,
      title: compact ? 'Account and settings' : null,
    },
    compact
      ? icon('account')
      : [
          avatar(user),
          h('span', { class: 'visually-hidden' }, 'Account menu for '),
          h('span', { class: 'account__name', title: user.display_name }, user.display_name),
        ],
    compact ? null : icon('chevron', 'account__chevron'),
  );

  const signOut = h(
    'button',
    { type: 'button', class: 'menu__item menu__item--button' },
    icon('out'),
    h('span', {}, 'Sign out'),
  );

  const menu = h(
    'div',
    { class: 'menu', id: panelId, hidden: true },
    h(
      'div',
      { class: 'menu__who' },
      avatar(user, 'large'),
      h(
        'div',
        { class: 'menu__who-text' },
        h('p', { class: 'menu__who-name' }, user.display_name),
        h('p', { class: 'menu__who-username' }, `@${user.username}`),
        roleBadge(user.role, roleLabel(user.role)),
      ),
    ),
    h(
      'nav',
      { class: 'menu__section', 'aria-label': 'Account' },
      menuLink('/chat', 'chat', 'Chat', activePath),
      menuLink('/account/status', 'bell', 'Status and notifications', activePath),
      menuLink('/account/password', 'lock', 'Change password', activePath),
      menuLink('/account/tokens', 'key', 'API tokens', activePath),
      user.role === 'admin' ? menuLink('/admin/users', 'users', 'Users and invitations', activePath) : null,
    ),
    h('div', { class: 'menu__section' }, signOut),
  );

  const root = h('div', { class: ['account', compact && 'account--compact'] }, toggle, menu);

  const items = () => [...menu.querySelectorAll('.menu__item')];
  const setOpen = (open, { focusToggle = false } = {}) => {
    menu.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    if (open) items()[0]?.focus();
    else if (focusToggle) toggle.focus();
  };
  toggle.addEventListener('click', () => setOpen(menu.hidden));
  root.addEventListener('keydown', (event) => {
    if (menu.hidden) return;
    if (event.key === 'Escape') {
      event.preventDefault();
      setOpen(false, { focusToggle: true });
    } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const list = items();
      const at = list.indexOf(document.activeElement);
      const step = event.key === 'ArrowDown' ? 1 : -1;
      list[(at + step + list.length) % list.length]?.focus();
    }
  });
  // Close when focus or a click goes elsewhere.
  root.addEventListener('focusout', (event) => {
    if (!menu.hidden && event.relatedTarget && !root.contains(event.relatedTarget)) setOpen(false);
  });
  const onDocumentClick = (event) => {
    if (!root.isConnected) {
      document.removeEventListener('click', onDocumentClick);
    } else if (!menu.hidden && !root.contains(event.target)) {
      setOpen(false);
    }
  };
  document.addEventListener('click', onDocumentClick);
  menu.addEventListener('click', (event) => {
    if (event.target.closest('a')) setOpen(false);
  });

  signOut.addEventListener('click', async () => {
    signOut.disabled = true;
    try {
      await api.logout();
    } catch (error) {
      signOut.disabled = false;
      // A session that already ended has been handled by api.js.
      if (error.status === 401) return;
      setOpen(false);
      problems.show(`Could not sign out: ${error.message}`, 'error');
      return;
    }
    session.signedOut();
    navigate('/sign-in', { message: { kind: 'info', text: 'You have signed out.' } });
  });

  return root;
}

/** A signed-in screen: header bar and a main area holding `content`. */
export function appLayout(activePath, ...content) {
  const user = session.currentUser();
  const problems = alertBox('error');
  const main = h('main', { class: 'page', id: 'main', tabindex: '-1' }, problems.root, content);
  // The router owns the hash, so the skip link moves focus itself.
  const skip = h('a', { class: 'skip-link', href: '#main' }, 'Skip to content');
  skip.addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  return h(
    'div',
    { class: 'shell' },
    skip,
    h(
      'header',
      { class: 'topbar' },
      h(
        'div',
        { class: 'topbar__inner' },
        h(
          'a',
          { class: 'topbar__brand', href: href('/chat') },
          h('img', { class: 'topbar__logo', src: '/img/logo.svg', alt: '', width: 28, height: 28 }),
          h('span', {}, 'collab'),
        ),
        accountMenu(user, activePath, problems),
      ),
    ),
    main,
  );
}
