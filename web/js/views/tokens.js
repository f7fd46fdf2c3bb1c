// #/account/tokens — personal API tokens: list, create (shown once), revoke.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { formatDate, formatDateTime } from '../format.js';
import {
  alertBox,
  button,
  confirmDialog,
  copyField,
  field,
  pageHeader,
  panel,
  selectField,
  setBusy,
  showApiError,
} from '../ui.js';
import { appLayout } from './layout.js';

const EXPIRY_OPTIONS = [
  ['30', '30 days'],
  ['90', '90 days'],
  ['365', '1 year'],
  ['', 'Never'],
];

function when(ms, fallback) {
  if (ms == null) return h('span', { class: 'muted' }, fallback);
  return h('time', { datetime: new Date(ms).toISOString(), title: formatDateTime(ms) }, formatDate(ms));
}

export function tokensView() {
  const listStatus = alertBox('error');
  const listBody = h('div', { class: 'table-slot' }, h('p', { class: 'muted', role: 'status' }, 'Loading tokens…'));
  const created = h('div', { class: 'created-slot' });

  async function revoke(token, btn) {
    const ok = await confirmDialog({
      title: 'Revoke this token?',
      message: `Scripts that use “${token.name}” stop working at once. This cannot be undone.`,
      confirmLabel: 'Revoke token',
      danger: true,
    });
    if (!ok) return;
    setBusy(btn, true, 'Revoking…');
    try {
      await api.revokeToken(token.id);
      listStatus.show(`The token “${token.name}” has been revoked.`, 'success');
      await load();
    } catch (error) {
      setBusy(btn, false);
      listStatus.show(error.message, 'error');
    }
  }

  function table(tokens) {
    if (tokens.length === 0) {
      return h('p', { class: 'empty' }, 'You have no API tokens yet.');
    }
    const rows = tokens.map((token) => {
      const revokeButton = button('Revoke', { variant: 'danger-ghost', small: true });
      revokeButton.setAttribute('aria-label', `Revoke token ${token.name}`);
      revokeButton.addEventListener('click', () => revoke(token, revokeButton));
      const expired = token.expires_at != null && token.expires_at <= Date.now();
      return h(
        'tr',
        {},
        h('td', { 'data-label': 'Name', class: 'cell-strong' }, token.name),
        h('td', { 'data-label': 'Token' }, h('code', { class: 'code' }, `${token.prefix}…`)),
        h('td', { 'data-label': 'Created' }, when(token.created_at, '')),
        h('td', { 'data-label': 'Last used' }, when(token.last_used_at, 'Never')),
        h(
          'td',
          { 'data-label': 'Expires' },
          expired ? h('span', { class: 'badge badge--muted' }, 'Expired') : when(token.expires_at, 'Never'),
        ),
        h('td', { class: 'cell-actions' }, revokeButton),
      );
    });
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table table--stack' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Name', 'Token', 'Created', 'Last used', 'Expires'].map((t) => h('th', { scope: 'col' }, t)),
            h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
          ),
        ),
        h('tbody', {}, rows),
      ),
    );
  }

  async function load() {
    try {
      const { tokens } = await api.listTokens();
      replace(listBody, table(tokens));
    } catch (error) {
      replace(listBody);
      listStatus.show(error.message, 'error');
    }
  }

  const name = field({
    label: 'Token name',
    name: 'name',
    hint: 'What the token is for, for example “Build server”.',
    attrs: { required: true, maxlength: 64 },
  });
  const expiry = selectField({ label: 'Expires after', name: 'expires_in_days', options: EXPIRY_OPTIONS, value: '90' });
  const formProblem = alertBox('error');
  const submit = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Create token');
  const form = h(
    'form',
    { class: 'form', novalidate: true },
    formProblem.root,
    h('div', { class: 'form__row' }, name.root, expiry.root),
    h('div', { class: 'form__actions' }, submit),
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    name.setError(null);
    formProblem.hide();
    const label = name.input.value.trim();
    if (!label) {
      name.setError('Give the token a name.');
      name.input.focus();
      return;
    }
    setBusy(submit, true, 'Creating…');
    try {
      const days = expiry.input.value ? Number(expiry.input.value) : null;
      const token = await api.createToken(label, days);
      form.reset();
      expiry.input.value = '90';
      const done = button('Done', { variant: 'secondary' });
      const box = h(
        'div',
        { class: 'secret', role: 'status' },
        h('h3', { class: 'secret__title' }, `Your new token “${token.name}”`),
        h(
          'p',
          { class: 'secret__warning' },
          h('strong', {}, 'Copy it now.'),
          ' For your security it is shown only this once. If you lose it, revoke it and create another.',
        ),
        copyField({ label: 'API token', value: token.token }),
        h('div', { class: 'form__actions' }, done),
      );
      done.addEventListener('click', () => {
        replace(created);
        name.input.focus();
      });
      replace(created, box);
      box.querySelector('input')?.focus();
      await load();
    } catch (error) {
      showApiError(error, formProblem, { name });
    } finally {
      setBusy(submit, false);
    }
  });

  load();
  const node = appLayout(
    '/account/tokens',
    pageHeader(
      'API tokens',
      'Scripts and integrations use a token to call the collab API as you, with the header “Authorization: Bearer <token>”. Treat a token like a password.',
    ),
    panel({ title: 'Create a token' }, form, created),
    panel({ title: 'Your tokens' }, listStatus.root, listBody),
  );
  return { title: 'API tokens', node };
}
