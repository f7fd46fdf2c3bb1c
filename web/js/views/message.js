// Signed-in screens that only explain something: not allowed, nothing here.

import { h } from '../dom.js';
import { href } from '../router.js';
import { pageHeader, panel } from '../ui.js';
import { appLayout } from './layout.js';

export function forbiddenView(activePath) {
  const node = appLayout(
    activePath,
    pageHeader('Not available'),
    panel(
      { className: 'message-panel' },
      h('p', {}, 'Only administrators can manage users and invitations.'),
      h('a', { class: 'btn btn--secondary', href: href('/chat') }, 'Back to chat'),
    ),
  );
  return { title: 'Not available', node };
}

export function notFoundView(activePath) {
  const node = appLayout(
    activePath,
    pageHeader('Page not found'),
    panel(
      { className: 'message-panel' },
      h('p', {}, 'There is nothing at this address.'),
      h('a', { class: 'btn btn--secondary', href: href('/chat') }, 'Back to chat'),
    ),
  );
  return { title: 'Page not found', node };
}
