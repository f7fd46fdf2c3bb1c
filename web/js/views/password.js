// #/account/password — change the password; every other session ends.

import * as api from '../api.js';
import { h } from '../dom.js';
import * as session from '../session.js';
import { alertBox, field, pageHeader, panel, setBusy, showApiError } from '../ui.js';
import { appLayout } from './layout.js';

const MIN_PASSWORD = 8;

export function passwordView() {
  const user = session.currentUser();
  const current = field({
    label: 'Current password',
    name: 'current_password',
    type: 'password',
    autocomplete: 'current-password',
    attrs: { required: true, maxlength: 1024 },
  });
  const next = field({
    label: 'New password',
    name: 'new_password',
    type: 'password',
    autocomplete: 'new-password',
    hint: `At least ${MIN_PASSWORD} characters, and not your username.`,
    attrs: { required: true, minlength: MIN_PASSWORD, maxlength: 1024 },
  });
  const confirm = field({
    label: 'Confirm new password',
    name: 'confirm_password',
    type: 'password',
    autocomplete: 'new-password',
    attrs: { required: true, maxlength: 1024 },
  });
  const result = alertBox('success');
  const submit = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Change password');
  // Lets password managers file the new password under the right account.
  const hiddenUsername = h('input', {
    type: 'text',
    name: 'username',
    autocomplete: 'username',
    value: user.username,
    hidden: true,
    readonly: true,
  });
  const form = h(
    'form',
    { class: 'form', novalidate: true },
    result.root,
    hiddenUsername,
    current.root,
    next.root,
    confirm.root,
    h('div', { class: 'form__actions' }, submit),
  );
  const fields = { current_password: current, new_password: next, password: next };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const f of [current, next, confirm]) f.setError(null);
    result.hide();
    let firstBad = null;
    if (!current.input.value) {
      current.setError('Enter your current password.');
      firstBad ??= current;
    }
    if (next.input.value.length < MIN_PASSWORD) {
      next.setError(`Use at least ${MIN_PASSWORD} characters.`);
      firstBad ??= next;
    } else if (next.input.value !== confirm.input.value) {
      confirm.setError('The new passwords do not match.');
      firstBad ??= confirm;
    }
    if (firstBad) {
      firstBad.input.focus();
      return;
    }
    setBusy(submit, true, 'Changing password…');
    try {
      const body = await api.changePassword(current.input.value, next.input.value);
      if (body) session.signedIn(body);
      form.reset();
      hiddenUsername.value = user.username;
      result.show(
        [
          h('strong', {}, 'Your password has been changed.'),
          ' You are still signed in here; every other browser and device signed in to your account has been signed out.',
        ],
        'success',
      );
    } catch (error) {
      if (error.code === 'bad_credentials') {
        current.setError(error.message);
        current.input.value = '';
        current.input.focus();
      } else {
        showApiError(error, result, fields);
      }
    } finally {
      setBusy(submit, false);
    }
  });

  const node = appLayout(
    '/account/password',
    pageHeader(
      'Change password',
      'After the change you stay signed in here. Every other browser and device signed in to your account is signed out.',
    ),
    panel({ className: 'panel--narrow' }, form),
  );
  return { title: 'Change password', node, focus: current.input };
}
