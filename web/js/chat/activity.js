// Tells the server the user is here (`presence.activity`, docs/protocol.md
// "Idle time"): when they type, click, touch, move the pointer, scroll or
// come back to the tab, at most once a minute, and never from a tab they are
// not looking at, so that an unattended device goes away by itself.
//
// A burst of activity right after a report is not lost: one report follows
// when the minute is up (if the tab is still visible), so the server's idea
// of "last active" is never more than a minute behind.

const EVERY_MS = 60_000;
const MOVE_EVERY_MS = 1_000; // pointermove / wheel are looked at once a second at most.

/** Start reporting activity for `client` (a ChatClient). Returns stop(). */
export function startActivityReporter(client, { everyMs = EVERY_MS } = {}) {
  let lastSent = 0;
  let lastMove = 0;
  let pending = false;
  let timer = null;

  const visible = () => document.visibilityState === 'visible';

  function send() {
    lastSent = Date.now();
    pending = false;
    client.reportActivity();
  }

  function flushLater() {
    if (timer !== null) return;
    timer = window.setTimeout(() => {
      timer = null;
      if (pending && visible()) send();
      else pending = false;
    }, Math.max(0, lastSent + everyMs - Date.now()));
  }

  function activity() {
    if (!visible()) return;
    if (Date.now() - lastSent >= everyMs) {
      send();
    } else {
      pending = true;
      flushLater();
    }
  }

  function movement() {
    const now = Date.now();
    if (now - lastMove < MOVE_EVERY_MS) return;
    lastMove = now;
    activity();
  }

  function visibility() {
    if (visible()) {
      activity();
    } else {
      // A hidden tab reports nothing, not even what happened just before.
      pending = false;
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
    }
  }

  const passive = { capture: true, passive: true };
  const listeners = [
    [window, 'keydown', activity, passive],
    [window, 'pointerdown', activity, passive],
    [window, 'pointermove', movement, passive],
    [window, 'wheel', movement, passive],
    [window, 'focus', activity, false],
    [document, 'visibilitychange', visibility, false],
  ];
  for (const [target, type, fn, options] of listeners) target.addEventListener(type, fn, options);

  return function stop() {
    for (const [target, type, fn, options] of listeners) target.removeEventListener(type, fn, options);
    if (timer !== null) window.clearTimeout(timer);
    timer = null;
    pending = false;
  };
}
