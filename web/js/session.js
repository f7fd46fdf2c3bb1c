// Who is signed in, as far as this tab knows. The server stays the judge:
// api.js reports a session that ended under us.

import * as api from './api.js';

let user = null;

/** Take the answer of login, /me, password change or invitation acceptance. */
export function signedIn(body) {
  user = body.user;
  api.setSession(body.csrf_token);
}

export function signedOut() {
  user = null;
  api.setSession(null);
}

export function currentUser() {
  return user;
}

export function isAdmin() {
  return user?.role === 'admin';
}
