// #/home — the signed-in landing screen. Chat is not built yet; say so plainly.

import { h, icon } from '../dom.js';
import { roleLabel } from '../format.js';
import { href } from '../router.js';
import * as session from '../session.js';
import { pageHeader, panel } from '../ui.js';
import { appLayout } from './layout.js';

export function homeView() {
  const user = session.currentUser();
  const links = [
    h('a', { class: 'btn btn--secondary', href: href('/account/password') }, 'Change password'),
    h('a', { class: 'btn btn--secondary', href: href('/account/tokens') }, 'API tokens'),
    user.role === 'admin'
      ? h('a', { class: 'btn btn--secondary', href: href('/admin/users') }, 'Users and invitations')
      : null,
  ];
  const node = appLayout(
    '/home',
    pageHeader(`Welcome, ${user.display_name}`, `Signed in as @${user.username} · ${roleLabel(user.role)}`),
    panel(
      { className: 'placeholder' },
      h('div', { class: 'placeholder__icon' }, icon('chat')),
      h('h2', { class: 'placeholder__title' }, 'Chat arrives in a later version'),
      h(
        'p',
        { class: 'placeholder__text' },
        'This version of collab covers sign-in and accounts. Conversations, presence and calls come next. Meanwhile, you can manage your account here.',
      ),
      h('div', { class: 'placeholder__actions' }, links),
    ),
  );
  return { title: 'Home', node };
}
