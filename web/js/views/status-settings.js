// #/account/status — how collab notifies the user and what makes them busy:
// this browser's notification preferences (desktop notifications, sound),
// the server's presence settings (silence when busy, quiet hours, time zone;
// /api/v1/me/presence/settings) and the calendar (/api/v1/me/calendar).
//
// REST only: it works without a ChatClient.

import * as api from '../api.js';
import {
  getPrefs,
  notificationPermission,
  playNotificationSound,
  requestPermission,
  setPrefs,
} from '../chat/notifications.js';
import { h, replace, setText, uid } from '../dom.js';
import { formatDateTime, formatRelative } from '../format.js';
import { href } from '../router.js';
import * as session from '../session.js';
import { alertBox, button, confirmDialog, field, pageHeader, panel, setBusy, showApiError } from '../ui.js';
import { appLayout } from './layout.js';

export const STATUS_SETTINGS_PATH = '/account/status';
export const STATUS_SETTINGS_TITLE = 'Status and notifications';

/** A link to this page (for menus): <a href="#/account/status">. */
export function statusSettingsLink(label = STATUS_SETTINGS_TITLE, { className } = {}) {
  return h('a', { href: href(STATUS_SETTINGS_PATH), class: className }, label);
}

const SETTINGS_PATH = '/api/v1/me/presence/settings';
const CALENDAR_PATH = '/api/v1/me/calendar';
const CALENDAR_FILE_PATH = '/api/v1/me/calendar/file';
const DEFAULT_QUIET = [22 * 60, 7 * 60];

// -- small helpers ------------------------------------------------------------------------

function minutesToTime(minutes) {
  const m = Number.isInteger(minutes) ? minutes : 0;
  return `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

function timeToMinutes(value) {
  const match = /^(\d{1,2}):(\d{2})/.exec(value ?? '');
  if (!match) return null;
  const hours = Number(match[1]);
  const minutes = Number(match[2]);
  if (hours > 23 || minutes > 59) return null;
  return hours * 60 + minutes;
}

function browserTimeZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

function offsetLabel(zone, at) {
  try {
    const parts = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'shortOffset' }).formatToParts(at);
    return parts.find((p) => p.type === 'timeZoneName')?.value ?? '';
  } catch {
    return '';
  }
}

/** The time zones as <optgroup>s by region ("Europe" › "Berlin (GMT+1)"); values are IANA names. */
function timeZoneOptions(extra) {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf?.('timeZone') ?? [];
  } catch {
    zones = [];
  }
  const all = [...new Set(['UTC', ...zones, ...extra.filter(Boolean)])];
  const at = new Date();
  const groups = new Map();
  const loose = [];
  for (const zone of all) {
    const slash = zone.indexOf('/');
    const offset = offsetLabel(zone, at);
    if (slash < 0) {
      loose.push([zone, offset && zone !== 'UTC' ? `${zone} (${offset})` : zone]);
      continue;
    }
    const region = zone.slice(0, slash);
    const place = zone.slice(slash + 1).replaceAll('_', ' ').replaceAll('/', ' – ');
    if (!groups.has(region)) groups.set(region, []);
    groups.get(region).push([zone, offset ? `${place} (${offset})` : place]);
  }
  const option = ([value, text]) => h('option', { value }, text);
  return [
    loose.sort((a, b) => a[1].localeCompare(b[1])).map(option),
    [...groups.keys()]
      .sort()
      .map((region) =>
        h('optgroup', { label: region }, groups.get(region).sort((a, b) => a[1].localeCompare(b[1])).map(option)),
      ),
  ];
}

/** An on/off switch: a checkbox with role="switch", its label and hint. */
function switchField({ label, hint, checked = false }) {
  const id = uid('switch');
  const hintId = hint ? `${id}-hint` : null;
  const input = h('input', {
    id,
    type: 'checkbox',
    role: 'switch',
    class: 'switch',
    checked,
    'aria-describedby': hintId,
  });
  const hintEl = hint ? h('p', { class: 'hint', id: hintId }, hint) : null;
  const root = h(
    'div',
    { class: 'setting' },
    h('div', { class: 'setting__text' }, h('label', { class: 'setting__label', for: id }, label), hintEl),
    h('div', { class: 'setting__control' }, input),
  );
  return { root, input, hint: hintEl };
}

/** PUT the .ics file as it is (not JSON). */
function uploadCalendarFile(file) {
  return api.request('PUT', CALENDAR_FILE_PATH, undefined, { raw: { body: file, type: 'text/calendar' } });
}

// -- this browser ---------------------------------------------------------------------------

const PERMISSION_TEXT = {
  granted: ['Allowed by this browser', 'badge--success'],
  denied: ['Blocked in this browser', 'settings-badge--danger'],
  default: ['Not asked yet', 'badge--muted'],
  unsupported: ['Not supported by this browser', 'badge--muted'],
};

function deviceSection(user) {
  const status = alertBox('success');
  const permissionBadge = h('span', { class: 'badge' });
  const askButton = button('Ask for permission', { variant: 'secondary', small: true });
  const desktop = switchField({
    label: 'Desktop notifications',
    hint: 'For direct messages, mentions and rooms you follow closely, while collab is open in a tab.',
  });
  const permissionRow = h(
    'div',
    { class: 'setting__extra' },
    h('span', { class: 'setting__extra-label' }, 'Browser permission:'),
    permissionBadge,
    askButton,
  );
  desktop.root.querySelector('.setting__text').append(permissionRow);
  const blockedHint = h(
    'p',
    { class: 'hint setting__warning' },
    'To turn them on, allow notifications for this site in your browser’s site settings (the icon left of the address), then reload this page.',
  );
  desktop.root.querySelector('.setting__text').append(blockedHint);

  const sound = switchField({
    label: 'Sound',
    hint: 'A short, soft chime with each notification.',
  });
  const test = button('Play a test sound', { variant: 'secondary', small: true, onClick: () => playNotificationSound() });
  sound.root.querySelector('.setting__text').append(h('div', { class: 'setting__extra' }, test));

  const render = () => {
    const prefs = getPrefs(user.id);
    const permission = notificationPermission();
    const [text, kind] = PERMISSION_TEXT[permission] ?? PERMISSION_TEXT.unsupported;
    setText(permissionBadge, text);
    permissionBadge.className = `badge ${kind}`;
    askButton.hidden = permission !== 'default';
    blockedHint.hidden = permission !== 'denied';
    desktop.input.disabled = permission === 'denied' || permission === 'unsupported';
    desktop.input.checked = prefs.desktop && permission === 'granted';
    sound.input.checked = prefs.sound;
  };

  const ask = async () => {
    const answer = await requestPermission();
    if (answer === 'granted') {
      setPrefs(user.id, { desktop: true });
      status.show('Desktop notifications are on.', 'success');
    } else if (answer === 'denied') {
      setPrefs(user.id, { desktop: false });
      status.show('This browser blocks notifications from collab. You can allow them in its site settings.', 'warning');
    }
    render();
  };

  askButton.addEventListener('click', ask);
  desktop.input.addEventListener('change', async () => {
    status.hide();
    if (!desktop.input.checked) {
      setPrefs(user.id, { desktop: false });
      status.show('Desktop notifications are off.', 'success');
      render();
      return;
    }
    if (notificationPermission() === 'granted') {
      setPrefs(user.id, { desktop: true });
      status.show('Desktop notifications are on.', 'success');
      render();
      return;
    }
    desktop.input.checked = false; // Until the browser says yes.
    await ask();
  });
  sound.input.addEventListener('change', () => {
    setPrefs(user.id, { sound: sound.input.checked });
    status.show(sound.input.checked ? 'Notification sounds are on.' : 'Notification sounds are off.', 'success');
    if (sound.input.checked) playNotificationSound();
  });
  // The permission can change in the browser's settings while the page is open.
  const onVisible = () => {
    if (!status.root.isConnected) {
      document.removeEventListener('visibilitychange', onVisible);
      return;
    }
    if (document.visibilityState === 'visible') render();
  };
  document.addEventListener('visibilitychange', onVisible);
  render();

  return h(
    'section',
    { class: 'settings-section' },
    h('h3', { class: 'settings-section__title' }, 'On this browser'),
    h('p', { class: 'settings-section__description' }, 'Saved in this browser only; your other devices keep their own choice.'),
    status.root,
    h('div', { class: 'settings-list' }, desktop.root, sound.root),
  );
}

// -- the server's presence settings -----------------------------------------------------------

function serverSection(state) {
  const result = alertBox('success');
  const browserZone = browserTimeZone();
  const silence = switchField({
    label: 'Silence notifications while I am busy',
    hint: 'No pop-ups or sounds while you are in a call, in a meeting, or have chosen Busy. Do not disturb always silences them.',
  });
  const quiet = switchField({
    label: 'Quiet hours',
    hint: 'Every day between these times notifications are silent; your status stays as it is. They may run past midnight.',
  });
  const from = field({ label: 'From', name: 'quiet_start', type: 'time', attrs: { required: true, step: 60 } });
  const to = field({ label: 'To', name: 'quiet_end', type: 'time', hint: 'Not included.', attrs: { required: true, step: 60 } });
  const quietTimes = h('div', { class: 'form__row quiet-hours' }, from.root, to.root);

  const zoneId = uid('time_zone');
  const zoneHintId = `${zoneId}-hint`;
  const zoneErrorId = `${zoneId}-error`;
  const zoneSelect = h('select', {
    id: zoneId,
    name: 'time_zone',
    class: 'input select',
    'aria-describedby': zoneHintId,
  });
  const zoneHint = h('p', { class: 'hint', id: zoneHintId });
  const zoneError = h('p', { class: 'field-error', id: zoneErrorId, hidden: true });
  const zone = {
    input: zoneSelect,
    root: h(
      'div',
      { class: 'field' },
      h('label', { class: 'label', for: zoneId }, 'Time zone'),
      zoneSelect,
      zoneHint,
      zoneError,
    ),
    setError(message) {
      setText(zoneError, message ?? '');
      zoneError.hidden = !message;
      zoneSelect.setAttribute('aria-describedby', [message ? zoneErrorId : null, zoneHintId].filter(Boolean).join(' '));
      if (message) zoneSelect.setAttribute('aria-invalid', 'true');
      else zoneSelect.removeAttribute('aria-invalid');
    },
  };

  const submit = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Save settings');
  const form = h(
    'form',
    { class: 'form', novalidate: true },
    result.root,
    h('div', { class: 'settings-list' }, silence.root, h('div', { class: 'setting-group' }, quiet.root, quietTimes)),
    zone.root,
    h('div', { class: 'form__actions' }, submit),
  );

  const syncQuiet = () => {
    const on = quiet.input.checked;
    quietTimes.hidden = !on;
    from.input.disabled = !on;
    to.input.disabled = !on;
    if (!on) {
      from.setError(null);
      to.setError(null);
    }
  };
  quiet.input.addEventListener('change', () => {
    syncQuiet();
    if (quiet.input.checked) from.input.focus();
  });

  function fill(settings) {
    silence.input.checked = Boolean(settings.silence_when_busy);
    const hasQuiet = settings.quiet_start != null && settings.quiet_end != null && settings.quiet_start !== settings.quiet_end;
    quiet.input.checked = hasQuiet;
    from.input.value = minutesToTime(hasQuiet ? settings.quiet_start : DEFAULT_QUIET[0]);
    to.input.value = minutesToTime(hasQuiet ? settings.quiet_end : DEFAULT_QUIET[1]);
    syncQuiet();

    const saved = settings.time_zone || 'UTC';
    replace(zoneSelect, timeZoneOptions([saved, browserZone]));
    // The server says UTC until the user picks a zone: start from the browser's.
    const useBrowser = saved === 'UTC' && browserZone !== 'UTC';
    zoneSelect.value = useBrowser ? browserZone : saved;
    if (useBrowser) {
      setText(zoneHint, `Your settings say UTC. This browser’s time zone, ${browserZone}, is selected: save to use it.`);
    } else if (saved !== browserZone) {
      setText(zoneHint, `Used for quiet hours, calendar events and times like “until 14:30”. This browser is set to ${browserZone}.`);
    } else {
      setText(zoneHint, 'Used for quiet hours, calendar events and times like “until 14:30”.');
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    result.hide();
    for (const f of [from, to, zone]) f.setError(null);
    const body = { time_zone: zoneSelect.value, silence_when_busy: silence.input.checked };
    if (quiet.input.checked) {
      const start = timeToMinutes(from.input.value);
      const end = timeToMinutes(to.input.value);
      if (start === null) {
        from.setError('Enter the time quiet hours start.');
        from.input.focus();
        return;
      }
      if (end === null) {
        to.setError('Enter the time quiet hours end.');
        to.input.focus();
        return;
      }
      if (start === end) {
        to.setError('Choose an end that differs from the start.');
        to.input.focus();
        return;
      }
      body.quiet_start = start;
      body.quiet_end = end;
    } else {
      body.quiet_hours = false;
    }
    setBusy(submit, true, 'Saving…');
    try {
      const settings = await api.request('PATCH', SETTINGS_PATH, body);
      state.set(settings);
      result.show('Your settings are saved. They apply on all your devices.', 'success');
    } catch (error) {
      showApiError(error, result, { quiet_start: from, quiet_end: to, time_zone: zone });
    } finally {
      setBusy(submit, false);
    }
  });

  state.listen(fill);

  return h(
    'section',
    { class: 'settings-section' },
    h('h3', { class: 'settings-section__title' }, 'On all your devices'),
    h('p', { class: 'settings-section__description' }, 'Silent notifications still count as unread; they just do not pop up or play a sound.'),
    form,
  );
}

// -- the calendar -------------------------------------------------------------------------------

function calendarPanel(state) {
  const message = alertBox('success');
  const summary = h('div', { class: 'calendar-state' });
  const url = field({
    label: 'Calendar address',
    name: 'url',
    type: 'url',
    autocomplete: 'off',
    hint: 'The secret iCal (.ics) address your calendar offers for subscribing. A webcal:// link works too.',
    attrs: { maxlength: 2000, spellcheck: 'false', inputmode: 'url', placeholder: 'https://' },
  });
  const saveUrl = h('button', { type: 'submit', class: 'btn btn--primary' }, 'Save address');
  const remove = button('Remove calendar', { variant: 'danger-ghost' });
  const urlForm = h(
    'form',
    { class: 'form', novalidate: true },
    url.root,
    h('div', { class: 'form__actions' }, saveUrl, remove),
  );

  const fileId = uid('calendar-file');
  const fileInput = h('input', {
    id: fileId,
    type: 'file',
    class: 'file-input',
    accept: '.ics,text/calendar',
    'aria-describedby': `${fileId}-hint`,
  });
  const upload = h('button', { type: 'submit', class: 'btn btn--secondary', disabled: true }, 'Upload file');
  const fileForm = h(
    'form',
    { class: 'form calendar-upload', novalidate: true },
    h(
      'div',
      { class: 'field' },
      h('label', { class: 'label', for: fileId }, 'Or upload an .ics file'),
      fileInput,
      h(
        'p',
        { class: 'hint', id: `${fileId}-hint` },
        'For a calendar without an address. collab keeps reading the file, so repeating meetings keep counting; upload it again when it changes.',
      ),
    ),
    h('div', { class: 'form__actions' }, upload),
  );
  fileInput.addEventListener('change', () => {
    upload.disabled = !fileInput.files?.length;
  });

  function render(settings) {
    const kind = settings.calendar_kind;
    remove.hidden = !kind;
    if (kind === 'url' && settings.calendar_url && document.activeElement !== url.input) {
      url.input.value = settings.calendar_url;
    } else if (kind !== 'url' && document.activeElement !== url.input) {
      url.input.value = '';
    }
    const checked = settings.calendar_checked_at;
    const when = checked
      ? h(
          'time',
          { datetime: new Date(checked).toISOString(), title: formatDateTime(checked) },
          formatRelative(checked),
        )
      : null;
    let head;
    if (!kind) {
      head = h(
        'p',
        { class: 'calendar-state__text' },
        'No calendar connected. With one, collab shows you as busy during your meetings.',
      );
    } else {
      head = h(
        'div',
        { class: 'calendar-state__row' },
        h('span', { class: 'calendar-state__icon', 'aria-hidden': 'true' }, '📅'),
        h(
          'div',
          { class: 'calendar-state__main' },
          h(
            'p',
            { class: 'calendar-state__text' },
            kind === 'url' ? 'Reading your calendar from its address' : 'Reading your uploaded calendar file',
          ),
          kind === 'url' && settings.calendar_url ? h('p', { class: 'calendar-state__url' }, settings.calendar_url) : null,
          h(
            'p',
            { class: 'calendar-state__meta' },
            settings.calendar_error
              ? h('span', { class: 'badge settings-badge--danger' }, 'Last reading failed')
              : checked
                ? h('span', { class: 'badge badge--success' }, 'Up to date')
                : null,
            when ? [' ', h('span', {}, 'Last read ', when)] : null,
          ),
        ),
      );
    }
    replace(
      summary,
      head,
      settings.calendar_error
        ? h(
            'div',
            { class: 'alert alert--warning calendar-state__error', role: 'status' },
            h('strong', {}, 'The last reading failed: '),
            settings.calendar_error,
            ' Until it works again, the busy times of the last good reading still count.',
          )
        : null,
    );
  }
  state.listen(render);

  urlForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hide();
    url.setError(null);
    let address = url.input.value.trim();
    if (!address) {
      url.setError('Enter the calendar’s address.');
      url.input.focus();
      return;
    }
    // The server wants http(s): webcal:// is the same address.
    if (/^webcals?:\/\//i.test(address)) address = address.replace(/^webcals?:\/\//i, 'https://');
    setBusy(saveUrl, true, 'Reading the calendar…');
    try {
      const settings = await api.request('PUT', CALENDAR_PATH, { url: address });
      url.input.value = address;
      state.set(settings);
      message.show('Your calendar is connected. collab reads it again every few minutes.', 'success');
    } catch (error) {
      if (error.field === 'url' || error.code?.startsWith('calendar_')) {
        url.setError(error.message);
        url.input.focus();
      } else {
        showApiError(error, message, { url });
      }
    } finally {
      setBusy(saveUrl, false);
    }
  });

  fileForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hide();
    const file = fileInput.files?.[0];
    if (!file) {
      message.show('Choose an .ics file first.', 'error');
      fileInput.focus();
      return;
    }
    setBusy(upload, true, 'Uploading…');
    try {
      const settings = await uploadCalendarFile(file);
      fileForm.reset();
      url.setError(null);
      state.set(settings);
      message.show(`“${file.name}” is your calendar now.`, 'success');
    } catch (error) {
      message.show(error.message, 'error');
    } finally {
      setBusy(upload, false);
      upload.disabled = !fileInput.files?.length;
    }
  });

  remove.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Remove your calendar?',
      message: 'collab forgets it and its busy times; a meeting in progress stops showing you as busy.',
      confirmLabel: 'Remove calendar',
      danger: true,
    });
    if (!ok) return;
    message.hide();
    setBusy(remove, true, 'Removing…');
    try {
      await api.request('DELETE', CALENDAR_PATH);
      url.input.value = '';
      url.setError(null);
      state.set(await api.request('GET', SETTINGS_PATH));
      message.show('Your calendar is removed.', 'success');
      url.input.focus();
    } catch (error) {
      message.show(error.message, 'error');
    } finally {
      setBusy(remove, false);
    }
  });

  return panel(
    {
      title: 'Calendar',
      description: 'While your calendar has a meeting, you show as busy (“in a meeting until 14:30”). Free and declined events do not count.',
      className: 'settings-panel',
    },
    message.root,
    summary,
    urlForm,
    h('div', { class: 'settings-divider', role: 'presentation' }),
    fileForm,
  );
}

// -- the page ------------------------------------------------------------------------------------

export function statusSettingsView() {
  const user = session.currentUser();

  // The settings the server answered last; sections re-render when they change.
  const listeners = [];
  const state = {
    value: null,
    set(settings) {
      if (!settings) return;
      state.value = settings;
      for (const fn of listeners) fn(settings);
    },
    listen(fn) {
      listeners.push(fn);
      if (state.value) fn(state.value);
    },
  };

  const loadProblem = alertBox('error');
  const loading = h('p', { class: 'muted settings-loading', role: 'status' }, 'Loading your settings…');
  const serverSlot = h('div', { class: 'settings-slot' }, loading);
  const calendarSlot = h('div', { class: 'settings-slot' });

  async function load() {
    loadProblem.hide();
    try {
      const settings = await api.request('GET', SETTINGS_PATH);
      replace(serverSlot, serverSection(state));
      replace(calendarSlot, calendarPanel(state));
      state.set(settings);
    } catch (error) {
      replace(serverSlot);
      const retry = button('Try again', { variant: 'secondary', small: true, onClick: () => {
        replace(serverSlot, loading);
        load();
      } });
      loadProblem.show([`Your settings could not be loaded: ${error.message} `, retry], 'error');
    }
  }
  load();

  const node = appLayout(
    STATUS_SETTINGS_PATH,
    pageHeader(
      STATUS_SETTINGS_TITLE,
      'How collab lets you know about new messages, and what shows you as busy.',
    ),
    loadProblem.root,
    panel(
      {
        title: 'Notifications',
        description: 'You get one for direct messages, mentions of you or of the whole room, and rooms set to every message.',
        className: 'settings-panel',
      },
      deviceSection(user),
      h('div', { class: 'settings-divider', role: 'presentation' }),
      serverSlot,
    ),
    calendarSlot,
  );
  return { title: STATUS_SETTINGS_TITLE, node };
}
