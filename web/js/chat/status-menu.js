// The user's own status: the sidebar's "me" button and the dialog that sets
// the status (available / busy / do not disturb / away, with an end) and the
// custom status line (emoji + text, with when it clears itself).
//
// Everything goes through ctx.client.setStatus() (`presence.set`,
// docs/protocol.md): `status` is required; `text`/`emoji` null keep what is
// set and "" clears; `text_until` is read only with `text` or `emoji`.
//
// ctx: {client, me, navigate(path), announce(text)}.

import { h, replace, setText, uid } from '../dom.js';
import { href } from '../router.js';
import { alertBox, button, setBusy } from '../ui.js';
import {
  STATUS_LABELS,
  avatarWithPresence,
  customStatus,
  hasCustomStatus,
  presenceDot,
  presenceStatus,
  statusText,
} from './presence-ui.js';

export const STATUS_SETTINGS_PATH = '/account/status';
const TEXT_MAX = 100;
const EMOJI_MAX = 64;
const MINUTE = 60e3;

const CHOICES = [
  { status: 'available', label: 'Available', hint: 'Automatic: busy in calls and meetings, away when idle' },
  { status: 'busy', label: 'Busy', hint: 'Show as busy, whatever you are doing' },
  { status: 'dnd', label: 'Do not disturb', hint: 'Only badges: no pop-ups, no sounds' },
  { status: 'away', label: 'Away', hint: 'Show as away, even while you are active' },
];

const UNTIL_OPTIONS = [
  ['', 'Until I change it'],
  ['30m', '30 minutes'],
  ['1h', '1 hour'],
  ['today', 'Until end of today'],
  ['custom', 'Custom…'],
];

const CLEAR_OPTIONS = [
  ['never', 'Never'],
  ['30m', 'In 30 minutes'],
  ['1h', 'In 1 hour'],
  ['today', 'At the end of today'],
];

const EMOJI = [
  ['📅', 'Calendar'],
  ['🚌', 'Bus'],
  ['🤒', 'Face with thermometer'],
  ['🌴', 'Palm tree'],
  ['🏠', 'House'],
  ['🍽️', 'Fork and knife with plate'],
  ['🎧', 'Headphones'],
  ['☕', 'Hot beverage'],
  ['💻', 'Laptop'],
  ['✈️', 'Aeroplane'],
  ['🎉', 'Party popper'],
  ['🔕', 'Bell with slash'],
];

const PRESETS = [
  { emoji: '📅', text: 'In a meeting', clear: '1h' },
  { emoji: '🚌', text: 'Commuting', clear: '30m' },
  { emoji: '🤒', text: 'Out sick', clear: 'today' },
  { emoji: '🌴', text: 'On holiday', clear: 'never' },
  { emoji: '🏠', text: 'Working remotely', clear: 'today' },
];

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayClock = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });

/** "15:00" today, "Tue 4 Jun, 15:00" another day. */
function formatEnd(ms) {
  const date = new Date(ms);
  return date.toDateString() === new Date().toDateString() ? clock.format(date) : dayClock.format(date);
}

function endOfToday() {
  const date = new Date();
  date.setHours(24, 0, 0, 0);
  return date.getTime();
}

/** An end time for a choice of UNTIL_OPTIONS / CLEAR_OPTIONS; null for "never". */
function endFor(choice, now) {
  if (choice === '30m') return now + 30 * MINUTE;
  if (choice === '1h') return now + 60 * MINUTE;
  if (choice === 'today') return endOfToday();
  return null;
}

/** The value of a datetime-local input for a time (local clock). */
function localInputValue(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function codePoints(text) {
  return [...text].length;
}

/**
 * What the user chose, as far as the presence tells: the server does not say
 * whether a busy/away was chosen or worked out, so a `busy` in a call or a
 * meeting, or an `away` from idle time, counts as "automatic" (available).
 * Chosen ones have no reason or "until HH:MM"; dnd is only ever chosen.
 */
function chosenOf(presence) {
  const status = presenceStatus(presence);
  if (status === 'dnd') return { status, until: presence.until ?? null };
  if (status === 'busy' || status === 'away') {
    const reason = presence.reason ?? '';
    if (!reason || reason.startsWith('until')) return { status, until: presence.until ?? null };
  }
  return { status: 'available', until: null };
}

function meOf(ctx) {
  return ctx.client?.me ?? ctx.me;
}

function nowOf(ctx) {
  return typeof ctx.client?.now === 'function' ? ctx.client.now() : Date.now();
}

let openDialog = null;

/**
 * Open the status dialog (a modal <dialog>). Escape, Cancel or a click on the
 * backdrop close it; focus goes back to `anchor`. Resolves to the presence
 * the server answered after Save / Clear status, or null when nothing was saved.
 */
export function openStatusMenu(ctx, anchor = document.activeElement) {
  if (openDialog) {
    openDialog.focus();
    return Promise.resolve(null);
  }
  return new Promise((resolve) => {
    const { client } = ctx;
    const me = meOf(ctx);
    const presence = client.presenceOf(me.id);
    const chosen = chosenOf(presence);
    const now = nowOf(ctx);
    let saved = null;
    let customDirty = false;

    const titleId = uid('status-title');
    const descId = uid('status-desc');
    const problem = alertBox('error');

    // -- who and what now ---------------------------------------------------------
    const current = h('div', { class: 'status-current', id: descId });
    const renderCurrent = () => {
      const p = client.presenceOf(me.id);
      replace(
        current,
        avatarWithPresence(me, p, 'large', { decorative: true }),
        h(
          'div',
          { class: 'status-current__text' },
          h('p', { class: 'status-current__name' }, me.display_name),
          h('p', { class: 'status-current__status' }, p ? statusText(p, nowOf(ctx)) : 'Not connected'),
          customStatus(p, { className: 'status-current__custom' }),
        ),
      );
    };
    renderCurrent();

    // -- the status choices (a radio group) ----------------------------------------
    const radioName = uid('status-choice');
    const radios = CHOICES.map((choice) => {
      const hintId = uid('status-hint');
      const labelId = uid('status-label');
      const input = h('input', {
        type: 'radio',
        name: radioName,
        value: choice.status,
        class: 'status-choice__input',
        // Named by the label alone; the hint is its description.
        'aria-labelledby': labelId,
        'aria-describedby': hintId,
        checked: choice.status === chosen.status,
      });
      const row = h(
        'label',
        { class: 'status-choice' },
        input,
        h(
          'span',
          { class: 'status-choice__body' },
          presenceDot({ status: choice.status }, { decorative: true }),
          h(
            'span',
            { class: 'status-choice__text' },
            h('span', { class: 'status-choice__label', id: labelId }, choice.label),
            h('span', { class: 'status-choice__hint', id: hintId }, choice.hint),
          ),
        ),
      );
      return { input, row };
    });
    const selectedStatus = () => radios.find((r) => r.input.checked)?.input.value ?? 'available';

    // -- until --------------------------------------------------------------------
    const untilId = uid('status-until');
    const untilOptions = [...UNTIL_OPTIONS];
    const keepUntil = chosen.until != null && chosen.until > now;
    if (keepUntil) untilOptions.splice(1, 0, ['keep', `Until ${formatEnd(chosen.until)}`]);
    const untilSelect = h(
      'select',
      { id: untilId, class: 'input select', value: keepUntil ? 'keep' : '' },
      untilOptions.map(([value, text]) => h('option', { value }, text)),
    );
    const customId = uid('status-until-custom');
    const customErrorId = `${customId}-error`;
    const customInput = h('input', {
      id: customId,
      type: 'datetime-local',
      class: 'input',
      min: localInputValue(Date.now()),
      value: localInputValue(Date.now() + 2 * 60 * MINUTE),
    });
    const customError = h('p', { class: 'field-error', id: customErrorId, hidden: true });
    const customField = h(
      'div',
      { class: 'field status-until__custom', hidden: true },
      h('label', { class: 'label', for: customId }, 'Ends at'),
      customInput,
      customError,
    );
    const setCustomError = (message) => {
      setText(customError, message ?? '');
      customError.hidden = !message;
      if (message) {
        customInput.setAttribute('aria-invalid', 'true');
        customInput.setAttribute('aria-describedby', customErrorId);
      } else {
        customInput.removeAttribute('aria-invalid');
        customInput.removeAttribute('aria-describedby');
      }
    };
    const untilLabel = h('label', { class: 'label', for: untilId }, 'How long');
    const untilBlock = h(
      'div',
      { class: 'status-until' },
      h('div', { class: 'field' }, untilLabel, untilSelect),
      customField,
    );
    const syncUntil = () => {
      const automatic = selectedStatus() === 'available';
      untilBlock.hidden = automatic;
      customField.hidden = automatic || untilSelect.value !== 'custom';
      if (customField.hidden) setCustomError(null);
      setText(untilLabel, automatic ? 'How long' : `How long to show “${STATUS_LABELS[selectedStatus()]}”`);
    };
    for (const { input } of radios) {
      input.addEventListener('change', syncUntil);
    }
    untilSelect.addEventListener('change', () => {
      syncUntil();
      if (untilSelect.value === 'custom') customInput.focus();
    });
    customInput.addEventListener('input', () => setCustomError(null));
    syncUntil();

    // -- the custom status line -------------------------------------------------------
    const textId = uid('status-text');
    const emojiId = uid('status-emoji');
    const countId = uid('status-count');
    const textErrorId = `${textId}-error`;
    const textInput = h('input', {
      id: textId,
      type: 'text',
      class: 'input',
      maxlength: TEXT_MAX,
      autocomplete: 'off',
      placeholder: 'What are you up to?',
      'aria-describedby': countId,
      value: presence?.text ?? '',
    });
    const emojiInput = h('input', {
      id: emojiId,
      type: 'text',
      class: 'input status-emoji__input',
      maxlength: EMOJI_MAX,
      autocomplete: 'off',
      spellcheck: 'false',
      value: presence?.emoji ?? '',
    });
    const count = h('span', { class: 'status-text__count', id: countId });
    const textError = h('p', { class: 'field-error', id: textErrorId, hidden: true });
    const emojiError = h('p', { class: 'field-error', id: `${emojiId}-error`, hidden: true });
    const setFieldError = (input, errorEl, message, describedBy) => {
      setText(errorEl, message ?? '');
      errorEl.hidden = !message;
      const ids = [message ? errorEl.id : null, describedBy].filter(Boolean).join(' ');
      if (ids) input.setAttribute('aria-describedby', ids);
      else input.removeAttribute('aria-describedby');
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    };
    const updateCount = () => {
      const n = codePoints(textInput.value);
      setText(count, `${n}/${TEXT_MAX}`);
      count.classList.toggle('is-over', n > TEXT_MAX);
    };
    updateCount();

    const pickerButtons = EMOJI.map(([emoji, name]) =>
      h(
        'button',
        {
          type: 'button',
          class: 'status-emoji-picker__item',
          'aria-label': name,
          'aria-pressed': 'false',
          title: name,
          dataset: { emoji },
          onclick: () => {
            emojiInput.value = emojiInput.value === emoji ? '' : emoji;
            markCustomDirty();
            syncPicker();
          },
        },
        emoji,
      ),
    );
    const picker = h('div', { class: 'status-emoji-picker', role: 'group', 'aria-label': 'Common emoji' }, pickerButtons);
    const syncPicker = () => {
      for (const b of pickerButtons) b.setAttribute('aria-pressed', String(b.dataset.emoji === emojiInput.value.trim()));
    };
    syncPicker();

    const clearId = uid('status-clear');
    const clearOptions = [...CLEAR_OPTIONS];
    const keepClear = presence?.text_until != null && presence.text_until > now && hasCustomStatus(presence);
    if (keepClear) clearOptions.splice(1, 0, ['keep', `At ${formatEnd(presence.text_until)}`]);
    const clearSelect = h(
      'select',
      { id: clearId, class: 'input select', value: keepClear ? 'keep' : 'never' },
      clearOptions.map(([value, text]) => h('option', { value }, text)),
    );

    const presetButtons = PRESETS.map((preset) =>
      h(
        'button',
        {
          type: 'button',
          class: 'status-preset',
          onclick: () => {
            emojiInput.value = preset.emoji;
            textInput.value = preset.text;
            if ([...clearSelect.options].some((o) => o.value === preset.clear)) clearSelect.value = preset.clear;
            markCustomDirty();
            syncPicker();
            updateCount();
            textInput.focus();
          },
        },
        h('span', { class: 'status-preset__emoji', 'aria-hidden': 'true' }, preset.emoji),
        h('span', {}, preset.text),
      ),
    );

    const clearTextButton = h(
      'button',
      {
        type: 'button',
        class: 'status-text__clear',
        'aria-label': 'Clear the custom status',
        title: 'Clear the custom status',
        onclick: () => {
          textInput.value = '';
          emojiInput.value = '';
          markCustomDirty();
          syncPicker();
          updateCount();
          textInput.focus();
        },
      },
      h('span', { 'aria-hidden': 'true' }, '×'),
    );

    function markCustomDirty() {
      customDirty = true;
      setFieldError(textInput, textError, null, countId);
      setFieldError(emojiInput, emojiError, null, null);
      clearTextButton.hidden = !textInput.value && !emojiInput.value;
    }
    clearTextButton.hidden = !textInput.value && !emojiInput.value;
    textInput.addEventListener('input', () => {
      markCustomDirty();
      updateCount();
    });
    emojiInput.addEventListener('input', () => {
      markCustomDirty();
      syncPicker();
    });
    clearSelect.addEventListener('change', () => {
      customDirty = true;
    });

    const customBlock = h(
      'fieldset',
      { class: 'status-fieldset' },
      h('legend', { class: 'status-fieldset__legend' }, 'Custom status'),
      h(
        'div',
        { class: 'status-text' },
        h(
          'div',
          { class: 'field status-emoji' },
          h('label', { class: 'label', for: emojiId }, 'Emoji'),
          emojiInput,
        ),
        h(
          'div',
          { class: 'field status-text__field' },
          h('label', { class: 'label', for: textId }, 'Text'),
          h('div', { class: 'status-text__wrap' }, textInput, clearTextButton),
        ),
      ),
      emojiError,
      h('div', { class: 'status-text__meta' }, textError, count),
      picker,
      h('div', { class: 'status-presets', role: 'group', 'aria-label': 'Suggestions' }, presetButtons),
      h('div', { class: 'field' }, h('label', { class: 'label', for: clearId }, 'Clear the custom status'), clearSelect),
    );

    // -- actions -----------------------------------------------------------------------
    const save = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Save');
    const cancel = button('Cancel', { variant: 'secondary', onClick: () => close() });
    const clearAll = button('Clear status', { variant: 'secondary' });
    clearAll.classList.add('status-dialog__clear');
    const closeButton = h(
      'button',
      { type: 'button', class: 'status-dialog__close', 'aria-label': 'Close', title: 'Close', onclick: () => close() },
      h('span', { 'aria-hidden': 'true' }, '×'),
    );
    const settingsLink = h(
      'a',
      { class: 'status-dialog__settings', href: href(STATUS_SETTINGS_PATH) },
      'Status settings',
    );
    settingsLink.addEventListener('click', (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      close();
      ctx.navigate?.(STATUS_SETTINGS_PATH);
    });

    const form = h(
      'form',
      { class: 'status-dialog__form', novalidate: true },
      h(
        'div',
        { class: 'status-dialog__head' },
        h('h2', { class: 'dialog__title', id: titleId }, 'Set your status'),
        closeButton,
      ),
      current,
      problem.root,
      h(
        'fieldset',
        { class: 'status-fieldset' },
        h('legend', { class: 'status-fieldset__legend' }, 'Status'),
        h('div', { class: 'status-choices' }, radios.map((r) => r.row)),
        untilBlock,
      ),
      customBlock,
      h(
        'div',
        { class: 'status-dialog__foot' },
        settingsLink,
        h('div', { class: 'status-dialog__actions' }, clearAll, cancel, save),
      ),
    );

    const dialog = h(
      'dialog',
      { class: 'dialog status-dialog', 'aria-labelledby': titleId, 'aria-describedby': descId },
      form,
    );

    // -- saving --------------------------------------------------------------------------
    const fieldErrors = {
      text: (m) => setFieldError(textInput, textError, m, countId),
      emoji: (m) => setFieldError(emojiInput, emojiError, m, null),
      until: (m) => setCustomError(m),
      text_until: (m) => problem.show(m, 'error'),
    };
    const focusFor = { text: textInput, emoji: emojiInput, until: customInput };

    async function send(fields, busyButton, busyLabel) {
      problem.hide();
      setBusy(busyButton, true, busyLabel);
      try {
        saved = await client.setStatus(fields);
        const words = statusText(saved, nowOf(ctx));
        const custom = [saved.emoji, saved.text].filter(Boolean).join(' ');
        ctx.announce?.(`Status saved: ${words}${custom ? `, ${custom}` : ''}.`);
        close();
      } catch (error) {
        setBusy(busyButton, false);
        const show = error.field ? fieldErrors[error.field] : null;
        if (show && (error.field !== 'until' || !customField.hidden)) {
          show(error.message);
          focusFor[error.field]?.focus();
        } else {
          problem.show(error.message ?? String(error), 'error');
        }
      }
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const status = selectedStatus();
      const nowMs = nowOf(ctx);
      const fields = { status };
      if (status !== 'available') {
        const choice = untilSelect.value;
        if (choice === 'keep') {
          fields.until = chosen.until; // The end shown in the option ("Until 15:00").
        } else if (choice === 'custom') {
          const when = customInput.value ? new Date(customInput.value).getTime() : NaN;
          if (!Number.isFinite(when)) {
            setCustomError('Choose a date and time.');
            customInput.focus();
            return;
          }
          if (when <= Date.now()) {
            setCustomError('Choose a time in the future.');
            customInput.focus();
            return;
          }
          fields.until = Math.round(when);
        } else {
          fields.until = endFor(choice, nowMs);
        }
      }
      if (customDirty) {
        const text = textInput.value.trim();
        const emoji = emojiInput.value.trim();
        if (codePoints(text) > TEXT_MAX) {
          fieldErrors.text(`Use at most ${TEXT_MAX} characters.`);
          textInput.focus();
          return;
        }
        if (codePoints(emoji) > EMOJI_MAX) {
          fieldErrors.emoji(`Use at most ${EMOJI_MAX} characters.`);
          emojiInput.focus();
          return;
        }
        fields.text = text;
        fields.emoji = emoji;
        if (text || emoji) {
          const clear = clearSelect.value;
          fields.text_until = clear === 'keep' ? presence?.text_until ?? null : endFor(clear, nowMs);
        }
      }
      send(fields, save, 'Saving…');
    });

    clearAll.addEventListener('click', () => {
      send({ status: 'available', text: '', emoji: '' }, clearAll, 'Clearing…');
    });

    // -- opening and closing -----------------------------------------------------------------
    const offPresence = client.on('presence', (userId) => {
      if (userId === me.id) renderCurrent();
    });
    let closed = false;
    function close() {
      if (dialog.open) dialog.close();
      else finish();
    }
    function finish() {
      if (closed) return;
      closed = true;
      offPresence();
      dialog.remove();
      openDialog = null;
      if (anchor && anchor.isConnected && typeof anchor.focus === 'function') anchor.focus();
      resolve(saved);
    }
    dialog.addEventListener('close', finish);
    // A click on the backdrop (the dialog box itself has no padding: the form fills it).
    let downOnBackdrop = false;
    dialog.addEventListener('pointerdown', (event) => {
      downOnBackdrop = event.target === dialog;
    });
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog && downOnBackdrop) close();
      downOnBackdrop = false;
    });

    document.body.append(dialog);
    openDialog = dialog;
    dialog.showModal();
    (radios.find((r) => r.input.checked)?.input ?? radios[0].input).focus();
  });
}

/**
 * The sidebar's "me" button: avatar with the status dot, display name, and
 * the custom status (or the status line). It opens the status dialog.
 * Returns {node, update(), close()}: it follows the client's 'presence'
 * events for the user by itself; close() stops that.
 */
export function statusButton(ctx) {
  const { client } = ctx;
  const node = h('button', { type: 'button', class: 'status-button', 'aria-haspopup': 'dialog' });

  function update() {
    const me = meOf(ctx);
    // While this tab has no connection, others see no live presence from it either.
    const online = client.connection?.state !== 'waiting';
    const presence = online ? client.presenceOf(me.id) : { ...client.presenceOf(me.id), status: 'offline', reason: null, last_seen: null };
    const words = presence ? statusText(presence, nowOf(ctx)) : '';
    const custom = customStatus(presence, { className: 'status-button__custom' });
    let line;
    if (custom) {
      line = h(
        'span',
        { class: 'status-button__line' },
        h('span', { class: 'visually-hidden' }, `${STATUS_LABELS[presenceStatus(presence)]}: `),
        custom,
      );
    } else {
      line = h('span', { class: 'status-button__line' }, words || 'Set a status');
    }
    replace(
      node,
      avatarWithPresence(me, presence, '', { decorative: true }),
      h('span', { class: 'status-button__text' }, h('span', { class: 'status-button__name' }, me.display_name), line),
      h('span', { class: 'visually-hidden' }, ' (change your status)'),
    );
    node.title = [words, presence && hasCustomStatus(presence) ? [presence.emoji, presence.text].filter(Boolean).join(' ') : '']
      .filter(Boolean)
      .join(' — ');
    node.dataset.status = presence ? presenceStatus(presence) : 'unknown';
  }

  node.addEventListener('click', () => openStatusMenu(ctx, node));
  const off = client.on('presence', (userId) => {
    if (userId === meOf(ctx).id) update();
  });
  const offState = client.on('state', () => update());
  update();
  return {
    node,
    update,
    close() {
      off();
      offState();
    },
  };
}
