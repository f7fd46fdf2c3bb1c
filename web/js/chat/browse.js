// Browsing the public channels (and joining one), and creating a channel
// or private room.

import * as api from '../api.js';
import { h, icon, replace, setText, uid } from '../dom.js';
import { alertBox, button, field, notice, setBusy, showApiError } from '../ui.js';
import { debounce, liveRegion, openDialog } from './dialog.js';
import { userPicker } from './new-message.js';

const NAME_MAX = 80;
const TOPIC_MAX = 250;

function memberCount(n) {
  return n === 1 ? '1 member' : `${n.toLocaleString()} members`;
}

const GUEST_BROWSE_MESSAGE =
  'Guests cannot browse or join public channels. A member can add you to the rooms you need.';
const GUEST_CREATE_MESSAGE = 'Guests cannot create rooms. Ask a member to create one and add you.';

function guestDialog(title, message) {
  const ok = button('Close', { variant: 'primary' });
  const { close } = openDialog({
    title,
    className: 'modal--narrow',
    content: [notice('info', message)],
    actions: [ok],
    initialFocus: ok,
  });
  ok.addEventListener('click', () => close('cancel'));
  return { close };
}

// -- browse ---------------------------------------------------------------------

/** The "Browse channels" dialog. Returns {close()}. */
export function openBrowseChannels(ctx) {
  const me = ctx.client?.me ?? ctx.me;
  if (me?.role === 'guest') return guestDialog('Browse channels', GUEST_BROWSE_MESSAGE);

  const problems = alertBox('error');
  const live = liveRegion();
  const search = field({
    label: 'Find a channel',
    name: 'channel-search',
    type: 'search',
    autocomplete: 'off',
    attrs: { placeholder: 'Search by name', maxlength: String(NAME_MAX), spellcheck: 'false' },
  });
  const listId = uid('browse-list');
  const list = h('ul', { class: 'browse__list', id: listId, 'aria-label': 'Public channels' });
  const state = h('div', { class: 'browse__state' });
  const create = button('Create a channel', { variant: 'secondary' });
  const done = button('Close', { variant: 'primary' });
  let generation = 0;
  let busy = false;

  const { close, dialog } = openDialog({
    title: 'Browse channels',
    description: 'Public channels anyone here can find and join.',
    className: 'modal--wide modal--browse',
    content: [
      h('div', { class: 'browse__search', role: 'search' }, search.root),
      problems.root,
      h('div', { class: 'browse__results' }, list, state),
      live.node,
    ],
    actions: [create, done],
    initialFocus: search.input,
    onClose: () => live.clear(),
  });

  function channelRow(channel) {
    const name = channel.name ?? '';
    const action = channel.joined
      ? button('Open', { variant: 'secondary', small: true })
      : button('Join', { variant: 'primary', small: true });
    action.classList.add('browse__action');
    action.setAttribute('aria-label', `${channel.joined ? 'Open' : 'Join'} ${name}`);
    action.addEventListener('click', () => (channel.joined ? open(channel) : join(channel, action)));
    return h(
      'li',
      { class: ['browse__item', channel.joined && 'is-joined'] },
      h('span', { class: 'browse__sigil', 'aria-hidden': 'true' }, '#'),
      h(
        'div',
        { class: 'browse__text' },
        h(
          'p',
          { class: 'browse__name-line' },
          h('span', { class: 'browse__name' }, name),
          channel.joined ? h('span', { class: 'badge badge--success browse__joined' }, 'Joined') : null,
        ),
        channel.topic ? h('p', { class: 'browse__topic' }, channel.topic) : null,
        h('p', { class: 'browse__meta' }, icon('users'), memberCount(channel.member_count)),
      ),
      action,
    );
  }

  function open(channel) {
    close('done');
    ctx.openRoom(channel.id);
  }

  async function join(channel, action) {
    if (busy) return;
    busy = true;
    problems.hide();
    setBusy(action, true, 'Joining…');
    try {
      const answer = await api.request('POST', `/api/v1/rooms/${encodeURIComponent(channel.id)}/join`);
      ctx.announce?.(`You joined # ${channel.name}.`);
      close('done');
      ctx.openRoom(answer?.room?.id ?? channel.id);
    } catch (error) {
      busy = false;
      setBusy(action, false);
      problems.show(`Could not join # ${channel.name}: ${error.message}`, 'error');
      action.focus();
    }
  }

  async function load() {
    const q = search.input.value.trim();
    const mine = ++generation;
    list.setAttribute('aria-busy', 'true');
    dialog.classList.add('is-loading');
    if (!list.childElementCount) {
      replace(state, h('p', { class: 'browse__message browse__loading' }, h('span', { class: 'dlg-spinner', 'aria-hidden': 'true' }), 'Loading channels…'));
    }
    const query = new URLSearchParams({ limit: '200' });
    if (q) query.set('q', q);
    try {
      const answer = await api.request('GET', `/api/v1/channels?${query}`);
      if (mine !== generation || !dialog.isConnected) return; // a newer search is under way
      const channels = answer?.channels ?? [];
      problems.hide();
      replace(list, channels.map(channelRow));
      list.hidden = channels.length === 0;
      if (channels.length) {
        replace(state);
      } else if (q) {
        replace(
          state,
          h(
            'div',
            { class: 'browse__empty' },
            h('p', { class: 'browse__empty-title' }, `No channels match “${q}”.`),
            h('p', { class: 'browse__empty-text' }, 'Check the spelling, or create the channel yourself.'),
          ),
        );
      } else {
        replace(
          state,
          h(
            'div',
            { class: 'browse__empty' },
            h('p', { class: 'browse__empty-title' }, 'There are no public channels yet.'),
            h('p', { class: 'browse__empty-text' }, 'Create the first one, and invite people to it.'),
          ),
        );
      }
      live.say(
        channels.length === 0
          ? q
            ? `No channels match ${q}.`
            : 'No public channels yet.'
          : channels.length === 1
            ? '1 channel.'
            : `${channels.length} channels.`,
        q ? 400 : 800,
      );
    } catch (error) {
      if (mine !== generation || !dialog.isConnected) return;
      if (error.status === 403) {
        replace(list);
        replace(state, notice('info', GUEST_BROWSE_MESSAGE));
      } else {
        problems.show(`Could not load the channels: ${error.message}`, 'error');
        replace(state);
      }
    } finally {
      if (mine === generation) {
        list.removeAttribute('aria-busy');
        dialog.classList.remove('is-loading');
      }
    }
  }

  const later = debounce(load, 250);
  search.input.addEventListener('input', later);
  search.input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      later.cancel();
      load();
    }
  });
  create.addEventListener('click', () => {
    close('create');
    openCreateChannel(ctx, { name: search.input.value.trim() });
  });
  done.addEventListener('click', () => close('cancel'));
  load();
  return { close };
}

// -- create ---------------------------------------------------------------------

const ERROR_FIELDS = {
  name_taken: 'name',
  guest_not_allowed: 'members',
  user_not_found: 'members',
  user_inactive: 'members',
};

/**
 * The "Create a channel" dialog: name, topic, private or not, people to add.
 * `name` pre-fills the name (e.g. from the channel search). Returns {close()}.
 */
export function openCreateChannel(ctx, { name = '', private: isPrivate = false } = {}) {
  const { client } = ctx;
  const me = client?.me ?? ctx.me;
  if (me?.role === 'guest') return guestDialog('Create a channel', GUEST_CREATE_MESSAGE);

  const formId = uid('create-channel');
  const problems = alertBox('error');
  const nameField = field({
    label: 'Name',
    name: 'name',
    autocomplete: 'off',
    value: name,
    hint: 'Short and easy to find, like “design” or “team-berlin”.',
    attrs: { required: true, maxlength: String(NAME_MAX), spellcheck: 'false' },
  });
  const topicField = field({
    label: 'Topic',
    name: 'topic',
    optional: true,
    autocomplete: 'off',
    hint: 'What it is about; shown under its name.',
    attrs: { maxlength: String(TOPIC_MAX) },
  });
  const privateId = uid('create-private');
  const privateHintId = uid('create-private-hint');
  const privateBox = h('input', {
    type: 'checkbox',
    id: privateId,
    class: 'check-row__input',
    name: 'private',
    'aria-describedby': privateHintId,
  });
  privateBox.checked = isPrivate;
  const privateHint = h('p', { class: 'hint check-row__hint', id: privateHintId });
  const privateRow = h(
    'div',
    { class: 'check-row' },
    privateBox,
    h(
      'div',
      { class: 'check-row__text' },
      h('label', { class: 'check-row__label', for: privateId }, icon('lock'), 'Private: only invited people can see it'),
      privateHint,
    ),
  );
  const updatePrivateHint = () => {
    setText(
      privateHint,
      privateBox.checked
        ? 'Only the people you add can find it and read it. Guests can be added.'
        : 'Anyone here except guests can find it in Browse channels and join it.',
    );
  };
  updatePrivateHint();

  const picker = userPicker({
    client,
    exclude: me ? [me.id] : [],
    max: 499,
    label: 'Add people',
    hint: 'Optional: you can add people later too.',
    placeholder: 'Type a name or username',
    onChange: () => picker.setError(null),
  });

  const submit = button('Create', { variant: 'primary', type: 'submit', attrs: { form: formId } });
  const cancel = button('Cancel', { variant: 'secondary' });
  const form = h(
    'form',
    { id: formId, class: 'form create-channel', novalidate: true },
    problems.root,
    nameField.root,
    topicField.root,
    privateRow,
    picker.node,
  );

  const { close } = openDialog({
    title: 'Create a channel',
    description: 'A place for a team, a project or a topic.',
    className: 'modal--wide',
    content: [form],
    actions: [cancel, submit],
    initialFocus: nameField.input,
    onClose: () => picker.destroy(),
  });

  const fieldMap = { name: nameField, topic: topicField, members: picker };
  let busy = false;

  privateBox.addEventListener('change', () => {
    updatePrivateHint();
    picker.setError(null);
  });
  nameField.input.addEventListener('input', () => nameField.setError(null));
  topicField.input.addEventListener('input', () => topicField.setError(null));
  cancel.addEventListener('click', () => close('cancel'));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    problems.hide();
    nameField.setError(null);
    topicField.setError(null);
    picker.setError(null);

    const roomName = nameField.input.value.trim();
    const topic = topicField.input.value.trim();
    const people = picker.selected();
    const kind = privateBox.checked ? 'private' : 'channel';
    if (!roomName) {
      nameField.setError('Give the channel a name.');
      nameField.input.focus();
      return;
    }
    if (kind === 'channel') {
      const guests = people.filter((user) => user.role === 'guest');
      if (guests.length) {
        picker.setError(
          `Guests can only be in private rooms: make it private, or remove ${guests
            .map((user) => user.display_name || user.username)
            .join(', ')}.`,
        );
        picker.focus();
        return;
      }
    }

    busy = true;
    setBusy(submit, true, 'Creating…');
    try {
      const answer = await api.request('POST', '/api/v1/rooms', {
        kind,
        name: roomName,
        topic,
        members: people.map((user) => user.username),
      });
      close('done');
      ctx.announce?.(kind === 'private' ? `Private room ${roomName} created.` : `Channel # ${roomName} created.`);
      ctx.openRoom(answer.room.id);
    } catch (error) {
      busy = false;
      setBusy(submit, false);
      const at = error.field || ERROR_FIELDS[error.code] || null;
      showApiError({ message: error.message, field: at }, problems, fieldMap);
    }
  });

  return { close };
}
