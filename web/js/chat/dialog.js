// A modal dialog for the chat screens (quick switcher, channel browser,
// new message, create channel): a native <dialog> opened with showModal(),
// so the rest of the page is inert, focus stays inside and Escape closes it.
// It is removed from the page when it closes, and focus goes back to where
// it was before it opened.

import { h, uid } from '../dom.js';

const FOCUSABLE =
  'input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), ' +
  'button:not([disabled]), a[href], [tabindex]:not([tabindex="-1"])';

/**
 * Open a modal dialog.
 *
 * - `title` (text) is its heading and accessible name; `description` (text or
 *   nodes, optional) is shown under it and is its accessible description.
 * - `content`: nodes for the body (scrolls when it is too tall).
 * - `actions`: buttons for the footer (right-aligned; full width on phones).
 * - `className`: extra classes for the <dialog> (e.g. 'modal--wide').
 * - `initialFocus`: the element to focus first (else the first control of
 *   the body, else the close button).
 * - `onClose(reason)`: called once, after it closed; reason is the value given
 *   to close() ('cancel' for Escape, the × button and a backdrop click).
 * - `closeOnBackdrop` (default true): a click outside the box closes it.
 *
 * Returns {dialog, body, close(reason)}.
 */
export function openDialog({
  title,
  description = null,
  content = [],
  actions = [],
  className = '',
  initialFocus = null,
  onClose = null,
  closeOnBackdrop = true,
}) {
  const titleId = uid('modal-title');
  const descriptionId = description ? uid('modal-description') : null;
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;

  const closeButton = h(
    'button',
    { type: 'button', class: 'modal__close', 'aria-label': 'Close' },
    h('span', { 'aria-hidden': 'true' }, '×'),
  );
  const body = h('div', { class: 'modal__body' }, content);
  const actionList = [actions].flat(Infinity).filter(Boolean);
  const footer = actionList.length ? h('div', { class: 'modal__actions' }, actionList) : null;

  const dialog = h(
    'dialog',
    {
      class: ['modal', className],
      'aria-labelledby': titleId,
      'aria-describedby': descriptionId,
    },
    h(
      'div',
      { class: 'modal__frame' },
      h(
        'div',
        { class: 'modal__head' },
        h(
          'div',
          { class: 'modal__titles' },
          h('h2', { class: 'modal__title', id: titleId }, title),
          description ? h('p', { class: 'modal__description', id: descriptionId }, description) : null,
        ),
        closeButton,
      ),
      body,
      footer,
    ),
  );

  let closed = false;
  let reason = 'cancel';

  const finish = () => {
    if (closed) return;
    closed = true;
    dialog.remove();
    if (!document.querySelector('dialog.modal[open]')) document.documentElement.classList.remove('has-modal');
    if (opener?.isConnected && !opener.closest('[inert]')) {
      opener.focus({ preventScroll: true });
    }
    if (onClose) {
      try {
        onClose(reason);
      } catch (error) {
        console.error('dialog onClose failed', error);
      }
    }
  };

  const close = (why = 'cancel') => {
    if (closed) return;
    reason = why;
    if (dialog.open) dialog.close(); // fires 'close', which finishes
    finish();
  };

  closeButton.addEventListener('click', () => close('cancel'));
  dialog.addEventListener('cancel', (event) => {
    // Escape: close through our own path so the reason is right.
    event.preventDefault();
    close('cancel');
  });
  dialog.addEventListener('close', finish);
  if (closeOnBackdrop) {
    // The frame fills the dialog box, so a click on the <dialog> itself
    // landed on the backdrop around it.
    let downOnBackdrop = false;
    dialog.addEventListener('pointerdown', (event) => {
      downOnBackdrop = event.target === dialog;
    });
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog && downOnBackdrop) close('cancel');
      downOnBackdrop = false;
    });
  }

  document.body.append(dialog);
  document.documentElement.classList.add('has-modal');
  dialog.showModal();
  const first = initialFocus ?? body.querySelector(FOCUSABLE) ?? closeButton;
  first.focus();

  return { dialog, body, close };
}

/** A visually hidden live region for a dialog's own announcements (counts, progress). */
export function liveRegion() {
  const node = h('p', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' });
  let timer = 0;
  return {
    node,
    /** Say `text` after a short pause (so fast typing does not make it chatter). */
    say(text, delay = 400) {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        // Clearing first makes the same text be read again.
        node.textContent = '';
        window.setTimeout(() => {
          node.textContent = text;
        }, 30);
      }, delay);
    },
    clear() {
      window.clearTimeout(timer);
      node.textContent = '';
    },
  };
}

/** Call `fn` once `ms` after the last call; `.cancel()` drops a pending call. */
export function debounce(fn, ms) {
  let timer = 0;
  const wrapped = (...args) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => window.clearTimeout(timer);
  return wrapped;
}
