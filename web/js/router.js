// Hash routing: '#/account/tokens' is the path '/account/tokens'.
//
// A "flash" is a one-time message for the next screen (for example why the
// user is back on the sign-in screen); the screen takes it when it renders.

let handler = null;
let flash = null;

export function currentPath() {
  let raw = window.location.hash.replace(/^#/, '');
  try {
    raw = decodeURI(raw);
  } catch {
    // A malformed escape: route on the raw text.
  }
  if (raw === '' || raw === '/') return '/';
  return raw.startsWith('/') ? raw : `/${raw}`;
}

export function start(onRoute) {
  handler = onRoute;
  window.addEventListener('hashchange', () => handler(currentPath()));
  handler(currentPath());
}

/**
 * Go to `path`. `replace` swaps the current history entry (for redirects),
 * `message` ({kind, text}) is shown once by the next screen that asks for it.
 */
export function navigate(path, { replace = false, message } = {}) {
  if (message !== undefined) flash = message;
  const target = `#${path}`;
  if (window.location.hash === target) {
    handler?.(currentPath());
  } else if (replace) {
    window.history.replaceState(null, '', target);
    handler?.(currentPath());
  } else {
    window.location.hash = target;
  }
}

export function setFlash(message) {
  flash = message;
}

export function takeFlash() {
  const message = flash;
  flash = null;
  return message;
}

export function href(path) {
  return `#${path}`;
}
