// #/admin/users — administrators manage accounts and invitation links.

import * as api from '../api.js';
import { append, h, replace } from '../dom.js';
import { formatDate, formatDateTime, formatRelative, roleLabel } from '../format.js';
import * as session from '../session.js';
import {
  alertBox,
  button,
  confirmDialog,
  copyField,
  field,
  pageHeader,
  panel,
  roleBadge,
  selectField,
  setBusy,
  showApiError,
} from '../ui.js';
import { appLayout, avatar } from './layout.js';

const ROLE_OPTIONS = [
  ['member', 'Member'],
  ['guest', 'Guest'],
  ['admin', 'Administrator'],
];

const VALIDITY_OPTIONS = [
  ['1', '1 hour'],
  ['24', '1 day'],
  ['72', '3 days'],
  ['168', '7 days'],
  ['720', '30 days'],
];

const PAGE_SIZE = 100;

function withArticle(role) {
  const label = roleLabel(role).toLowerCase();
  return /^[aeiou]/.test(label) ? `an ${label}` : `a ${label}`;
}

function time(ms) {
  return h('time', { datetime: new Date(ms).toISOString(), title: formatDateTime(ms) }, formatDate(ms));
}

function table(columns, rows, className = '') {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: ['table', 'table--stack', className] },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          columns.map((c) =>
            c ? h('th', { scope: 'col' }, c) : h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
          ),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}

// -- users --------------------------------------------------------------------

function usersSection() {
  const me = session.currentUser();
  const status = alertBox('success');
  const slot = h('div', { class: 'table-slot' }, h('p', { class: 'muted', role: 'status' }, 'Loading users…'));
  const more = h('div', { class: 'more' });
  let tbody = null;

  function roleSelect(user) {
    const select = h(
      'select',
      { class: 'input select select--compact', 'aria-label': `Role of @${user.username}`, value: user.role },
      ROLE_OPTIONS.map(([value, label]) => h('option', { value }, label)),
    );
    select.addEventListener('change', async () => {
      const wanted = select.value;
      select.disabled = true;
      try {
        const body = await api.updateUser(user.username, { role: wanted });
        Object.assign(user, body.user);
        status.show(`@${user.username} is now ${withArticle(user.role)}.`, 'success');
      } catch (error) {
        select.value = user.role;
        status.show(error.message, 'error');
      } finally {
        select.disabled = false;
      }
    });
    return select;
  }

  function userRow(user) {
    const isMe = user.id === me.id;
    // Your own role is changed by another administrator, never by yourself.
    const role = isMe ? roleBadge(user.role, roleLabel(user.role)) : roleSelect(user);

    const activeBadge = user.active
      ? h('span', { class: 'badge badge--success' }, 'Active')
      : h('span', { class: 'badge badge--muted' }, 'Deactivated');

    let action = null;
    if (!isMe) {
      action = user.active
        ? button('Deactivate', { variant: 'danger-ghost', small: true })
        : button('Reactivate', { variant: 'secondary', small: true });
      action.setAttribute('aria-label', `${user.active ? 'Deactivate' : 'Reactivate'} @${user.username}`);
      action.addEventListener('click', () => toggleActive(user, action));
    }

    return h(
      'tr',
      { class: user.active ? null : 'is-inactive', dataset: { username: user.username } },
      h(
        'td',
        { 'data-label': 'User' },
        h(
          'div',
          { class: 'person' },
          avatar(user),
          h(
            'div',
            { class: 'person__text' },
            h('span', { class: 'person__name' }, user.display_name, isMe ? h('span', { class: 'badge badge--muted person__you' }, 'You') : null),
            h('span', { class: 'person__username' }, `@${user.username}`),
          ),
        ),
      ),
      h('td', { 'data-label': 'Email' }, user.email ? user.email : h('span', { class: 'muted' }, '—')),
      h('td', { 'data-label': 'Role' }, role),
      h('td', { 'data-label': 'Status' }, activeBadge),
      h('td', { class: 'cell-actions' }, action),
    );
  }

  async function toggleActive(user, btn) {
    const deactivate = user.active;
    const ok = await confirmDialog(
      deactivate
        ? {
            title: `Deactivate @${user.username}?`,
            message: `${user.display_name} is signed out everywhere at once and can no longer sign in. Their account is kept, and you can reactivate it later.`,
            confirmLabel: 'Deactivate',
            danger: true,
          }
        : {
            title: `Reactivate @${user.username}?`,
            message: `${user.display_name} can sign in again with their existing password.`,
            confirmLabel: 'Reactivate',
          },
    );
    if (!ok) return;
    setBusy(btn, true, deactivate ? 'Deactivating…' : 'Reactivating…');
    try {
      const body = await api.updateUser(user.username, { active: !deactivate });
      status.show(
        deactivate ? `@${user.username} has been deactivated.` : `@${user.username} has been reactivated.`,
        'success',
      );
      const row = userRow(body.user);
      btn.closest('tr').replaceWith(row);
      row.querySelector('.cell-actions button')?.focus();
    } catch (error) {
      setBusy(btn, false);
      status.show(error.message, 'error');
    }
  }

  async function load(after = null) {
    try {
      const page = await api.listUsers({ after, limit: PAGE_SIZE, includeInactive: true });
      const rows = page.users.map(userRow);
      if (!after) {
        tbody = null;
        const t = table(['User', 'Email', 'Role', 'Status', null], rows, 'table--users');
        tbody = t.querySelector('tbody');
        replace(slot, t);
      } else {
        append(tbody, rows);
      }
      if (page.next_after) {
        const next = button('Show more users', { variant: 'secondary' });
        next.addEventListener('click', () => {
          setBusy(next, true, 'Loading…');
          load(page.next_after);
        });
        replace(more, next);
      } else {
        replace(more);
      }
    } catch (error) {
      status.show(error.message, 'error');
    }
  }

  // The "Add user" form, folded away until asked for.
  const username = field({
    label: 'Username',
    name: 'username',
    autocomplete: 'off',
    attrs: { autocapitalize: 'none', spellcheck: 'false', required: true, maxlength: 32 },
  });
  const displayName = field({ label: 'Display name', name: 'display_name', optional: true, autocomplete: 'off', attrs: { maxlength: 64 } });
  const email = field({ label: 'Email', name: 'email', type: 'email', optional: true, autocomplete: 'off', attrs: { maxlength: 254 } });
  const password = field({
    label: 'Initial password',
    name: 'password',
    type: 'password',
    autocomplete: 'new-password',
    hint: 'At least 8 characters. Give it to the person safely; they can change it.',
    attrs: { required: true, maxlength: 1024 },
  });
  const role = selectField({ label: 'Role', name: 'role', options: ROLE_OPTIONS, value: 'member' });
  const formProblem = alertBox('error');
  const create = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Create user');
  const cancel = button('Cancel', { variant: 'secondary' });
  const form = h(
    'form',
    { class: 'form subform', novalidate: true, hidden: true, 'aria-label': 'Add a user' },
    h('h3', { class: 'subform__title' }, 'Add a user'),
    formProblem.root,
    h('div', { class: 'form__row' }, username.root, displayName.root),
    h('div', { class: 'form__row' }, email.root, role.root),
    password.root,
    h('div', { class: 'form__actions' }, create, cancel),
  );
  const addUser = button('Add user', { variant: 'primary' });
  addUser.setAttribute('aria-expanded', 'false');
  const showForm = (show) => {
    form.hidden = !show;
    addUser.setAttribute('aria-expanded', String(show));
    addUser.hidden = show;
    if (show) username.input.focus();
    else addUser.focus();
  };
  addUser.addEventListener('click', () => showForm(true));
  cancel.addEventListener('click', () => {
    form.reset();
    formProblem.hide();
    showForm(false);
  });
  const fieldMap = { username, display_name: displayName, email, password, role };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const f of Object.values(fieldMap)) f.setError(null);
    formProblem.hide();
    if (!username.input.value.trim()) {
      username.setError('Choose a username.');
      username.input.focus();
      return;
    }
    if (password.input.value.length < 8) {
      password.setError('Use at least 8 characters.');
      password.input.focus();
      return;
    }
    setBusy(create, true, 'Creating…');
    try {
      const body = await api.createUser({
        username: username.input.value.trim(),
        password: password.input.value,
        role: role.input.value,
        ...(displayName.input.value.trim() ? { display_name: displayName.input.value.trim() } : {}),
        ...(email.input.value.trim() ? { email: email.input.value.trim() } : {}),
      });
      form.reset();
      showForm(false);
      status.show(`Created @${body.user.username}.`, 'success');
      await load();
    } catch (error) {
      showApiError(error, formProblem, fieldMap);
    } finally {
      setBusy(create, false);
    }
  });

  load();
  return panel(
    {
      title: 'Users',
      description: 'Everyone with an account, including deactivated ones.',
      actions: addUser,
    },
    form,
    status.root,
    slot,
    more,
  );
}

// -- invitations ---------------------------------------------------------------

function invitationsSection() {
  const status = alertBox('success');
  const slot = h('div', { class: 'table-slot' }, h('p', { class: 'muted', role: 'status' }, 'Loading invitations…'));
  const created = h('div', { class: 'created-slot' });

  async function revoke(invitation, btn) {
    const ok = await confirmDialog({
      title: 'Revoke this invitation?',
      message: 'The link stops working at once. Nobody can create an account with it any more.',
      confirmLabel: 'Revoke invitation',
      danger: true,
    });
    if (!ok) return;
    setBusy(btn, true, 'Revoking…');
    try {
      await api.revokeInvitation(invitation.id);
      status.show('The invitation has been revoked.', 'success');
      await load();
    } catch (error) {
      setBusy(btn, false);
      status.show(error.message, 'error');
    }
  }

  async function load() {
    try {
      const { invitations } = await api.listInvitations();
      if (invitations.length === 0) {
        replace(slot, h('p', { class: 'empty' }, 'No pending invitations.'));
        return;
      }
      const rows = invitations.map((inv) => {
        const revokeButton = button('Revoke', { variant: 'danger-ghost', small: true });
        revokeButton.setAttribute('aria-label', `Revoke the ${roleLabel(inv.role).toLowerCase()} invitation created ${formatDateTime(inv.created_at)}`);
        revokeButton.addEventListener('click', () => revoke(inv, revokeButton));
        return h(
          'tr',
          { dataset: { invitationId: String(inv.id) } },
          h('td', { 'data-label': 'Role' }, roleBadge(inv.role, roleLabel(inv.role))),
          h('td', { 'data-label': 'For' }, inv.email ? inv.email : h('span', { class: 'muted' }, 'Anyone with the link')),
          h('td', { 'data-label': 'Created' }, time(inv.created_at)),
          h(
            'td',
            { 'data-label': 'Expires' },
            h('span', {}, time(inv.expires_at), h('span', { class: 'muted cell-sub' }, formatRelative(inv.expires_at))),
          ),
          h('td', { class: 'cell-actions' }, revokeButton),
        );
      });
      replace(slot, table(['Role', 'For', 'Created', 'Expires', null], rows, 'table--invitations'));
    } catch (error) {
      replace(slot);
      status.show(error.message, 'error');
    }
  }

  const role = selectField({ label: 'Role', name: 'role', options: ROLE_OPTIONS, value: 'member' });
  const validity = selectField({ label: 'Valid for', name: 'expires_in_hours', options: VALIDITY_OPTIONS, value: '72' });
  const email = field({
    label: 'Email',
    name: 'email',
    type: 'email',
    optional: true,
    autocomplete: 'off',
    hint: 'Recorded on the new account.',
    attrs: { maxlength: 254 },
  });
  const formProblem = alertBox('error');
  const submit = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Create invitation link');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'Create an invitation link' },
    formProblem.root,
    h('div', { class: 'form__row form__row--three' }, role.root, validity.root, email.root),
    h('div', { class: 'form__actions' }, submit),
  );
  const fieldMap = { role, expires_in_hours: validity, email };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const f of Object.values(fieldMap)) f.setError(null);
    formProblem.hide();
    setBusy(submit, true, 'Creating…');
    try {
      const invitation = await api.createInvitation({
        role: role.input.value,
        expires_in_hours: Number(validity.input.value),
        ...(email.input.value.trim() ? { email: email.input.value.trim() } : {}),
      });
      email.input.value = '';
      const done = button('Done', { variant: 'secondary' });
      const box = h(
        'div',
        { class: 'secret', role: 'status' },
        h('h3', { class: 'secret__title' }, `Invitation link for ${withArticle(invitation.role)}`),
        h(
          'p',
          { class: 'secret__warning' },
          'Send this link to the person you are inviting. It works once and expires ',
          h('time', { datetime: new Date(invitation.expires_at).toISOString() }, formatDateTime(invitation.expires_at)),
          '. It is shown only now.',
        ),
        copyField({ label: 'Invitation link', value: invitation.url }),
        h('div', { class: 'form__actions' }, done),
      );
      done.addEventListener('click', () => {
        replace(created);
        submit.focus();
      });
      replace(created, box);
      box.querySelector('input')?.focus();
      await load();
    } catch (error) {
      showApiError(error, formProblem, fieldMap);
    } finally {
      setBusy(submit, false);
    }
  });

  load();
  return [
    panel(
      {
        title: 'Invite people',
        description: 'An invitation is a link that lets one person create their own account.',
      },
      form,
      created,
    ),
    panel({ title: 'Pending invitations' }, status.root, slot),
  ];
}

export function adminUsersView() {
  const node = appLayout(
    '/admin/users',
    pageHeader('Users and invitations', 'Decide who can use this collab server and what they may do.'),
    usersSection(),
    invitationsSection(),
  );
  return { title: 'Users and invitations', node };
}
