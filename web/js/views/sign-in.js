// #/sign-in — username and password.

import * as api from '../api.js';
import { h, setText } from '../dom.js';
import { pluralSeconds } from '../format.js';
import { navigate, takeFlash } from '../router.js';
import * as session from '../session.js';
import { alertBox, field, notice, setBusy } from '../ui.js';
import { authLayout } from './layout.js';

/** Where to go after signing in (a page the user asked for before signing in). */
let returnTo = null;

export function setReturnTo(path) {
  returnTo = path;
}

export function signInView() {
  const flash = takeFlash();
  const username = field({
    label: 'Username',
    name: 'username',
    autocomplete: 'username',
    attrs: { autocapitalize: 'none', spellcheck: 'false', required: true, maxlength: 64 },
  });
  const password = field({
    label: 'Password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    attrs: { required: true, maxlength: 1024 },
  });
  const problem = alertBox('error');
  const submit = h('button', { type: 'submit', class: 'btn btn--primary btn--block' }, 'Sign in');
  const form = h('form', { class: 'form', novalidate: true }, problem.root, username.root, password.root, submit);

  let countdown = null;
  const stopCountdown = () => {
    if (countdown) window.clearInterval(countdown);
    countdown = null;
  };

  function rateLimited(seconds) {
    stopCountdown();
    let left = Math.max(1, Math.ceil(seconds));
    const text = h('span', {});
    const tick = () => {
      setText(text, `Too many sign-in attempts. Try again in ${pluralSeconds(left)}.`);
    };
    tick();
    problem.show(text, 'warning');
    submit.disabled = true;
    countdown = window.setInterval(() => {
      if (!form.isConnected) {
        stopCountdown();
        return;
      }
      left -= 1;
      if (left > 0) {
        tick();
        return;
      }
      stopCountdown();
      submit.disabled = false;
      problem.show('You can try again now.', 'info');
    }, 1000);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    username.setError(null);
    password.setError(null);
    problem.hide();
    const name = username.input.value.trim();
    const secret = password.input.value;
    if (!name) {
      username.setError('Enter your username.');
      username.input.focus();
      return;
    }
    if (!secret) {
      password.setError('Enter your password.');
      password.input.focus();
      return;
    }
    setBusy(submit, true, 'Signing in…');
    try {
      const body = await api.login(name, secret);
      session.signedIn(body);
      const next = returnTo ?? '/chat';
      returnTo = null;
      navigate(next, { replace: true });
    } catch (error) {
      setBusy(submit, false);
      if (error.status === 429) {
        rateLimited(error.retryAfter ?? 1);
        return;
      }
      problem.show(error.message, 'error');
      if (error.code === 'bad_credentials') {
        password.input.value = '';
        password.input.focus();
      }
    }
  });

  const node = authLayout(
    {
      title: 'Sign in to collab',
      subtitle: 'Welcome back. Sign in with your username and password.',
      footer: 'No account yet? Ask an administrator for an invitation link.',
    },
    flash ? notice(flash.kind, flash.text) : null,
    form,
  );
  return { title: 'Sign in', node, focus: username.input };
}
