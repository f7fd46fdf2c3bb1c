// Start-up and routing: ask the server who we are, then show the screen the
// address asks for (or the sign-in screen when that needs a signed-in user).

import * as api from './api.js';
import { h, replace } from './dom.js';
import { currentPath, navigate, setFlash, start, takeFlash } from './router.js';
import * as session from './session.js';
import { adminUsersView } from './views/admin-users.js';
import { chatView, stopChat } from './views/chat.js';
import { inviteView } from './views/invite.js';
import { authLayout } from './views/layout.js';
import { forbiddenView, notFoundView } from './views/message.js';
import { passwordView } from './views/password.js';
import { setReturnTo, signInView } from './views/sign-in.js';
import { statusSettingsView } from './views/status-settings.js';
import { tokensView } from './views/tokens.js';
import { notice } from './ui.js';

const root = document.getElementById('app');

// access: 'signed-out' (signed-in users go home), 'any', 'user', 'admin'.
const ROUTES = [
  { pattern: /^\/(sign-in)?$/, access: 'signed-out', view: signInView },
  { pattern: /^\/invite\/([A-Za-z0-9_-]+)$/, access: 'any', view: ([code]) => inviteView({ code }) },
  { pattern: /^\/chat(?:\/(\d{1,10})(?:\/(\d{1,16}))?)?$/, access: 'user', view: chatView },
  { pattern: /^\/home$/, access: 'user', view: () => navigate('/chat', { replace: true }) },
  { pattern: /^\/account\/status$/, access: 'user', view: statusSettingsView },
  { pattern: /^\/account\/password$/, access: 'user', view: passwordView },
  { pattern: /^\/account\/tokens$/, access: 'user', view: tokensView },
  { pattern: /^\/admin\/users$/, access: 'admin', view: adminUsersView },
];

function show(screen) {
  if (!screen) return; // The route redirected.
  document.title = screen.title ? `${screen.title} · collab` : 'collab';
  if (screen.keep && root.firstChild === screen.node) {
    // The same screen showing something else (another conversation): keep it in place.
    screen.focus?.focus({ preventScroll: true });
    return;
  }
  replace(root, screen.node);
  // Move focus to the new screen, so keyboard and screen-reader users start at its top.
  const target = screen.focus ?? root.querySelector('h1');
  target?.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function render(path) {
  const user = session.currentUser();
  if (!user) stopChat();
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (!route) {
    if (user) show(notFoundView(path));
    else navigate('/sign-in', { replace: true });
    return;
  }
  const params = path.match(route.pattern).slice(1);
  if (route.access === 'signed-out' && user) {
    navigate('/home', { replace: true });
    return;
  }
  if ((route.access === 'user' || route.access === 'admin') && !user) {
    setReturnTo(path);
    navigate('/sign-in', { replace: true });
    return;
  }
  if (route.access === 'admin' && user.role !== 'admin') {
    show(forbiddenView(path));
    return;
  }
  show(route.view(params));
}

function bootFailed(error) {
  const retry = h('button', { type: 'button', class: 'btn btn--primary btn--block' }, 'Try again');
  retry.addEventListener('click', () => window.location.reload());
  show({
    title: 'Cannot start',
    node: authLayout(
      { title: 'collab cannot start' },
      notice('error', error.message),
      h('div', { class: 'form__actions' }, retry),
    ),
  });
}

async function boot() {
  api.onSessionEnded((message) => {
    session.signedOut();
    const here = currentPath();
    if (ROUTES.some((r) => r.access !== 'signed-out' && r.access !== 'any' && r.pattern.test(here))) {
      setReturnTo(here);
    }
    navigate('/sign-in', { replace: true, message: { kind: 'warning', text: message } });
  });
  try {
    session.signedIn(await api.me());
  } catch (error) {
    if (error.status !== 401) {
      bootFailed(error);
      return;
    }
    // The browser still holds a cookie for a session the server ended (a
    // password change elsewhere, a deactivation, or it expired): say so on
    // the sign-in screen, if that is where this address leads.
    if (error.code === 'session_ended') {
      setFlash({ kind: 'warning', text: api.SESSION_ENDED_MESSAGE });
    }
  }
  start(render);
  takeFlash(); // Not shown on the first screen: not meant for a later one either.
}

boot();
