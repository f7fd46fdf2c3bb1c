// #/invite/<code> — set up the first administrator, or accept an invitation.

import * as api from '../api.js';
import { h, replace } from '../dom.js';
import { formatDateTime, formatRelative } from '../format.js';
import { href, navigate } from '../router.js';
import * as session from '../session.js';
import { alertBox, field, notice, setBusy, showApiError } from '../ui.js';
import { authLayout } from './layout.js';

const MIN_PASSWORD = 8;

const BROKEN_LINK = {
  invitation_not_found: 'Invitation link not valid',
  invitation_used: 'Invitation link already used',
  invitation_expired: 'Invitation link expired',
};

function texts(invitation) {
  if (invitation.role === 'admin' && invitation.first_run !== false) {
    return {
      title: 'Create the first administrator account',
      subtitle:
        'Welcome to your new collab server. The administrator invites people and manages their accounts.',
      submit: 'Create administrator account',
    };
  }
  const subtitles = {
    admin: 'Create your account. You will be an administrator: you can invite people and manage accounts.',
    member: 'Create your account to join your colleagues.',
    guest:
      'Create your account. You are joining as a guest, so you will see only the conversations you are added to.',
  };
  return {
    title: "You're invited to collab",
    subtitle: subtitles[invitation.role] ?? subtitles.member,
    submit: 'Create account',
  };
}

function brokenLink(error) {
  const title = BROKEN_LINK[error.code] ?? 'This invitation link cannot be used';
  return {
    title: 'Invitation',
    node: authLayout(
      { title, subtitle: error.message },
      h(
        'div',
        { class: 'form__actions' },
        h('a', { class: 'btn btn--primary btn--block', href: href('/sign-in') }, 'Go to sign-in'),
      ),
    ),
  };
}

function acceptForm(code, invitation, screen) {
  const t = texts(invitation);
  const username = field({
    label: 'Username',
    name: 'username',
    autocomplete: 'username',
    hint: "Lowercase letters, digits, '.', '_' or '-'; up to 32 characters. Colleagues use it to mention you.",
    attrs: { autocapitalize: 'none', spellcheck: 'false', required: true, maxlength: 32 },
  });
  const displayName = field({
    label: 'Display name',
    name: 'display_name',
    autocomplete: 'name',
    optional: true,
    hint: 'How others see you, for example “Ada Lovelace”.',
    attrs: { maxlength: 64 },
  });
  const password = field({
    label: 'Password',
    name: 'password',
    type: 'password',
    autocomplete: 'new-password',
    hint: `At least ${MIN_PASSWORD} characters.`,
    attrs: { required: true, minlength: MIN_PASSWORD, maxlength: 1024 },
  });
  const confirm = field({
    label: 'Confirm password',
    name: 'confirm_password',
    type: 'password',
    autocomplete: 'new-password',
    attrs: { required: true, maxlength: 1024 },
  });
  const problem = alertBox('error');
  const submit = h('button', { type: 'submit', class: 'btn btn--primary btn--block' }, t.submit);
  const current = session.currentUser();

  const form = h(
    'form',
    { class: 'form', novalidate: true },
    current
      ? notice(
          'info',
          `You are signed in as @${current.username}. Creating this account signs you in as the new account instead.`,
        )
      : null,
    problem.root,
    username.root,
    displayName.root,
    password.root,
    confirm.root,
    submit,
  );

  const fields = { username, display_name: displayName, password, new_password: password };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const f of [username, displayName, password, confirm]) f.setError(null);
    problem.hide();
    const name = username.input.value.trim();
    let firstBad = null;
    if (!name) {
      username.setError('Choose a username.');
      firstBad ??= username;
    }
    if (password.input.value.length < MIN_PASSWORD) {
      password.setError(`Use at least ${MIN_PASSWORD} characters.`);
      firstBad ??= password;
    } else if (password.input.value !== confirm.input.value) {
      confirm.setError('The passwords do not match.');
      firstBad ??= confirm;
    }
    if (firstBad) {
      firstBad.input.focus();
      return;
    }
    setBusy(submit, true, 'Creating account…');
    try {
      const body = await api.acceptInvitation(code, {
        username: name,
        password: password.input.value,
        ...(displayName.input.value.trim() ? { display_name: displayName.input.value.trim() } : {}),
      });
      session.signedIn(body);
      navigate('/chat', { replace: true });
    } catch (error) {
      setBusy(submit, false);
      if (BROKEN_LINK[error.code]) {
        replace(screen, brokenLink(error).node);
        return;
      }
      showApiError(error, problem, fields);
    }
  });

  const validity = h(
    'p',
    { class: 'auth__meta' },
    'This link works once and is valid until ',
    h('time', { datetime: new Date(invitation.expires_at).toISOString() }, formatDateTime(invitation.expires_at)),
    ` (${formatRelative(invitation.expires_at)}).`,
  );

  return {
    node: authLayout({ title: t.title, subtitle: t.subtitle }, validity, form),
    focus: username.input,
    heading: t.title,
  };
}

export function inviteView({ code }) {
  // The screen is filled in once we know what the link is for.
  const screen = h(
    'div',
    { class: 'screen' },
    authLayout({ title: 'Invitation' }, h('p', { class: 'muted', role: 'status' }, 'Checking your invitation link…')),
  );

  async function load() {
    try {
      const invitation = await api.getInvitation(code);
      const view = acceptForm(code, invitation, screen);
      replace(screen, view.node);
      view.focus.focus();
    } catch (error) {
      if (BROKEN_LINK[error.code]) {
        replace(screen, brokenLink(error).node);
        return;
      }
      const retry = h('button', { type: 'button', class: 'btn btn--primary btn--block', onclick: load }, 'Try again');
      replace(
        screen,
        authLayout(
          { title: 'Could not check the invitation' },
          notice('error', error.message),
          h('div', { class: 'form__actions' }, retry),
        ),
      );
    }
  }
  load();
  return { title: 'Invitation', node: screen };
}
