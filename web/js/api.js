// The one way the client talks to the server's REST API.
//
// Every call sends and receives JSON. Unsafe methods carry the session's CSRF
// token. An answer of the form {"error": {"code", "message", ...}} becomes a
// thrown ApiError. A 401 that says the session is gone, while we believe we
// are signed in, is reported once to the handler the app registered, which
// takes the user back to the sign-in screen.

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const SESSION_GONE = new Set(['session_ended', 'unauthenticated']);
export const SESSION_ENDED_MESSAGE = 'Your session has ended. Please sign in again.';

let csrfToken = null;
let signedIn = false;
let sessionEndedHandler = null;

export class ApiError extends Error {
  constructor({ status, code, message, details = {} }) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    /** The request field the error is about, when the server says so. */
    this.field = typeof details.field === 'string' ? details.field : null;
    /** Seconds to wait before trying again (429 answers). */
    this.retryAfter = Number.isFinite(details.retry_after) ? details.retry_after : null;
  }
}

/** Remember the signed-in session (its CSRF token), or forget it with null. */
export function setSession(token) {
  signedIn = Boolean(token);
  csrfToken = token || null;
}

/** The headers an unsafe request made outside `request` (an upload) must carry. */
export function csrfHeaders() {
  return csrfToken ? { 'X-CSRF-Token': csrfToken } : {};
}

export function isSignedIn() {
  return signedIn;
}

/** Register the function called (with a message) when the session ends under us. */
export function onSessionEnded(handler) {
  sessionEndedHandler = handler;
}

/**
 * Call the API. `body` is sent as JSON; `raw` ({body, type}) sends bytes as
 * they are (a file) with that Content-Type instead.
 */
export async function request(method, path, body, { raw } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (raw) {
    headers['Content-Type'] = raw.type;
    init.body = raw.body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (!SAFE_METHODS.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;

  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError({
      status: 0,
      code: 'network',
      message: 'Cannot reach the server. Check your connection and try again.',
    });
  }
  if (response.status === 204) return null;

  let data = null;
  const type = response.headers.get('Content-Type') ?? '';
  if (type.includes('application/json')) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.ok) return data;

  const error = data && typeof data.error === 'object' && data.error ? data.error : {};
  const failure = new ApiError({
    status: response.status,
    code: typeof error.code === 'string' ? error.code : 'http_error',
    message:
      typeof error.message === 'string' && error.message
        ? error.message
        : `The server answered with an error (HTTP ${response.status}). Try again.`,
    details: error,
  });
  if (response.status === 401 && SESSION_GONE.has(failure.code) && signedIn) {
    setSession(null);
    sessionEndedHandler?.(SESSION_ENDED_MESSAGE);
  }
  throw failure;
}

const seg = encodeURIComponent;

// -- sign-in and the caller's own account --------------------------------------
export const login = (username, password) =>
  request('POST', '/api/v1/login', { username, password });
export const logout = () => request('POST', '/api/v1/logout');
export const me = () => request('GET', '/api/v1/me');
export const changePassword = (currentPassword, newPassword) =>
  request('POST', '/api/v1/me/password', {
    current_password: currentPassword,
    new_password: newPassword,
  });

// -- API tokens -----------------------------------------------------------------
export const listTokens = () => request('GET', '/api/v1/tokens');
export const createToken = (name, expiresInDays) =>
  request('POST', '/api/v1/tokens', {
    name,
    ...(expiresInDays ? { expires_in_days: expiresInDays } : {}),
  });
export const revokeToken = (id) => request('DELETE', `/api/v1/tokens/${seg(id)}`);

// -- invitations ----------------------------------------------------------------
export const getInvitation = (code) => request('GET', `/api/v1/invitations/${seg(code)}`);
export const acceptInvitation = (code, fields) =>
  request('POST', `/api/v1/invitations/${seg(code)}/accept`, fields);
export const listInvitations = () => request('GET', '/api/v1/invitations');
export const createInvitation = (fields) => request('POST', '/api/v1/invitations', fields);
export const revokeInvitation = (id) => request('DELETE', `/api/v1/invitations/${seg(id)}`);

// -- users ----------------------------------------------------------------------
export function listUsers({ after, limit = 100, includeInactive = false } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (after) query.set('after', after);
  if (includeInactive) query.set('include_inactive', 'true');
  return request('GET', `/api/v1/users?${query}`);
}
export const createUser = (fields) => request('POST', '/api/v1/users', fields);
export const updateUser = (username, fields) =>
  request('PATCH', `/api/v1/users/${seg(username)}`, fields);
