// Building blocks shared by the screens: form fields, messages, buttons,
// a copy-to-clipboard field and a confirmation dialog.

import { h, icon, replace, setText, uid } from './dom.js';

/**
 * A labelled input with an optional hint and a slot for its error.
 * Returns {root, input, setError(message|null)}.
 */
export function field({
  label,
  name,
  type = 'text',
  autocomplete,
  hint,
  optional = false,
  value,
  attrs = {},
}) {
  const id = uid(name);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const input = h('input', {
    id,
    name,
    type,
    class: 'input',
    autocomplete,
    'aria-describedby': hintId,
    value,
    ...attrs,
  });
  return withError(
    input,
    h(
      'div',
      { class: 'field' },
      h(
        'label',
        { class: 'label', for: id },
        label,
        optional ? [' ', h('span', { class: 'label__optional' }, '(optional)')] : null,
      ),
      input,
      hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
      h('p', { class: 'field-error', id: errorId, hidden: true }),
    ),
    hintId,
    errorId,
  );
}

/** A labelled <select>; `options` is a list of [value, label]. */
export function selectField({ label, name, options, value, hint }) {
  const id = uid(name);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const select = h(
    'select',
    { id, name, class: 'input select', 'aria-describedby': hintId, value },
    options.map(([optionValue, text]) => h('option', { value: optionValue }, text)),
  );
  return withError(
    select,
    h(
      'div',
      { class: 'field' },
      h('label', { class: 'label', for: id }, label),
      select,
      hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
      h('p', { class: 'field-error', id: errorId, hidden: true }),
    ),
    hintId,
    errorId,
  );
}

function withError(input, root, hintId, errorId) {
  const errorEl = root.querySelector('.field-error');
  return {
    root,
    input,
    setError(message) {
      setText(errorEl, message ?? '');
      errorEl.hidden = !message;
      const describedBy = [message ? errorId : null, hintId].filter(Boolean).join(' ');
      if (describedBy) input.setAttribute('aria-describedby', describedBy);
      else input.removeAttribute('aria-describedby');
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    },
  };
}

/**
 * A message box. kind: 'error' | 'warning' | 'success' | 'info'.
 * Returns {root, show(text | nodes, kind?), hide()}; hidden until shown.
 */
export function alertBox(kind = 'error') {
  const body = h('div', { class: 'alert__body' });
  const root = h('div', { class: `alert alert--${kind}`, hidden: true }, body);
  let current = kind;
  const box = {
    root,
    show(content, newKind = current) {
      root.classList.remove(`alert--${current}`);
      current = newKind;
      root.classList.add(`alert--${current}`);
      root.setAttribute('role', current === 'error' || current === 'warning' ? 'alert' : 'status');
      replace(body, content);
      root.hidden = false;
      return box;
    },
    hide() {
      root.hidden = true;
      replace(body);
      return box;
    },
  };
  return box;
}

/** A message box that is shown at once. */
export function notice(kind, content) {
  return alertBox(kind).show(content).root;
}

/** A button; `variant` is primary | secondary | danger | ghost. */
export function button(label, { variant = 'secondary', type = 'button', small = false, onClick, attrs = {} } = {}) {
  return h(
    'button',
    {
      type,
      class: ['btn', `btn--${variant}`, small && 'btn--small'],
      onclick: onClick,
      ...attrs,
    },
    label,
  );
}

/** Put a button in (or out of) its busy state while a request is in flight. */
export function setBusy(btn, busy, busyLabel) {
  if (busy) {
    if (!btn.dataset.idleLabel) btn.dataset.idleLabel = btn.textContent;
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
    if (busyLabel) setText(btn, busyLabel);
  } else {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
    if (btn.dataset.idleLabel) setText(btn, btn.dataset.idleLabel);
    delete btn.dataset.idleLabel;
  }
}

/**
 * Show an ApiError where it belongs: next to the field it names (using
 * `fieldMap` from server field names to field objects), else in `box`.
 */
export function showApiError(error, box, fieldMap = {}) {
  const target = error.field ? fieldMap[error.field] : null;
  if (target) {
    target.setError(error.message);
    target.input.focus();
    box?.hide();
  } else {
    box?.show(error.message ?? String(error), 'error');
  }
}

/** A read-only text with a Copy button; for a secret or a link shown once. */
export function copyField({ label, value, mono = true }) {
  const id = uid('copy');
  const input = h('input', {
    id,
    class: ['input', 'copy-field__input', mono && 'input--mono'],
    type: 'text',
    readonly: true,
    value,
    spellcheck: 'false',
    onfocus: (event) => event.target.select(),
  });
  const status = h('span', { class: 'copy-field__status', role: 'status' });
  const copy = h(
    'button',
    { type: 'button', class: 'btn btn--secondary copy-field__button' },
    icon('copy'),
    h('span', {}, 'Copy'),
  );
  copy.addEventListener('click', async () => {
    const label = copy.querySelector('span');
    try {
      await navigator.clipboard.writeText(value);
      setText(label, 'Copied');
      setText(status, 'Copied to the clipboard.');
      copy.classList.add('is-done');
      window.setTimeout(() => {
        setText(label, 'Copy');
        setText(status, '');
        copy.classList.remove('is-done');
      }, 2000);
    } catch {
      input.focus();
      input.select();
      setText(status, 'Press Ctrl+C (or ⌘C) to copy the selected text.');
    }
  });
  return h(
    'div',
    { class: 'copy-field' },
    h('label', { class: 'label', for: id }, label),
    h('div', { class: 'copy-field__row' }, input, copy),
    status,
  );
}

/**
 * Ask before doing something that matters. Resolves true when confirmed.
 * Uses a native modal <dialog>, so focus is trapped and Escape cancels.
 */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const titleId = uid('dialog-title');
    const cancel = button('Cancel', { variant: 'secondary', attrs: { value: 'cancel' } });
    const confirm = button(confirmLabel, {
      variant: danger ? 'danger' : 'primary',
      attrs: { value: 'confirm' },
    });
    const dialog = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': titleId },
      h('h2', { class: 'dialog__title', id: titleId }, title),
      h('p', { class: 'dialog__message' }, message),
      h('div', { class: 'dialog__actions' }, cancel, confirm),
    );
    let answered = false;
    const finish = (result) => {
      if (answered) return;
      answered = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      resolve(result);
    };
    cancel.addEventListener('click', () => finish(false));
    confirm.addEventListener('click', () => finish(true));
    dialog.addEventListener('close', () => finish(false));
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** The title block at the top of a signed-in screen. */
export function pageHeader(title, description) {
  return h(
    'div',
    { class: 'page-header' },
    h('h1', { class: 'page-header__title', tabindex: '-1' }, title),
    description ? h('p', { class: 'page-header__description' }, description) : null,
  );
}

/** A white card with an optional heading and actions at the right of the heading. */
export function panel({ title, description, actions, className } = {}, ...children) {
  const head =
    title || actions
      ? h(
          'div',
          { class: 'panel__head' },
          h(
            'div',
            { class: 'panel__titles' },
            title ? h('h2', { class: 'panel__title' }, title) : null,
            description ? h('p', { class: 'panel__description' }, description) : null,
          ),
          actions ? h('div', { class: 'panel__actions' }, actions) : null,
        )
      : null;
  return h('section', { class: ['panel', className] }, head, h('div', { class: 'panel__body' }, children));
}

/** A role shown as a small coloured label. */
export function roleBadge(role, label) {
  return h('span', { class: ['badge', `badge--${role}`] }, label);
}
