// The settings of one conversation: which of its messages notify the user,
// its name and topic, adding people, archiving and leaving. Each part is
// shown only to those the server lets do it (docs: `updateRoom`,
// `addMember`, `setNotifyLevel`, `leaveRoom` in the OpenAPI file).

import * as api from '../api.js';
import { h, setText, uid } from '../dom.js';
import { alertBox, confirmDialog, field, setBusy, showApiError } from '../ui.js';
import { openDialog } from './dialog.js';
import { userPicker } from './new-message.js';
import { isDirect, roomLabel } from './rooms.js';

const LEVELS = [
  ['default', 'Default', 'Direct messages, mentions of you and @room.'],
  ['all', 'All messages', 'Every new message in this conversation.'],
  ['mute', 'Muted', 'Nothing. Unread counts still show.'],
];

function levelChoice(ctx, roomId, problems) {
  const summary = ctx.client.rooms.get(roomId);
  const current = summary?.notify ?? 'default';
  const name = uid('level');
  const status = h('p', { class: 'hint', role: 'status' });
  const options = LEVELS.map(([value, label, hint]) => {
    const input = h('input', { type: 'radio', class: 'check-row__input', name, value, checked: value === current, id: `${name}-${value}` });
    input.addEventListener('change', async () => {
      problems.hide();
      try {
        await api.request('PUT', `/api/v1/rooms/${roomId}/notify`, { level: value });
        const entry = ctx.client.rooms.get(roomId);
        if (entry) entry.notify = value;
        setText(status, `Saved: ${label}.`);
      } catch (error) {
        problems.show(error.message, 'error');
      }
    });
    return h(
      'div',
      { class: 'check-row' },
      input,
      h(
        'span',
        { class: 'check-row__text' },
        h('label', { class: 'check-row__label', for: `${name}-${value}` }, label),
        h('span', { class: 'hint' }, hint),
      ),
    );
  });
  return h(
    'fieldset',
    { class: 'settings-group' },
    h('legend', { class: 'settings-group__title' }, 'Notify me about'),
    options,
    status,
  );
}

function detailsForm(ctx, room, { canRename }, problems) {
  const name = canRename ? field({ label: 'Name', name: 'name', value: room.name ?? '', attrs: { maxlength: '80' } }) : null;
  const topic = field({ label: 'Topic', name: 'topic', value: room.topic ?? '', optional: true, attrs: { maxlength: '250' } });
  const save = h('button', { type: 'submit', class: 'btn btn--primary btn--small' }, 'Save');
  const status = h('p', { class: 'hint', role: 'status' });
  const form = h('form', { class: 'settings-group' }, name?.root, topic.root, h('div', { class: 'form__actions' }, save, status));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problems.hide();
    name?.setError(null);
    topic.setError(null);
    const body = { topic: topic.input.value };
    if (name) body.name = name.input.value;
    setBusy(save, true, 'Saving…');
    try {
      await api.request('PATCH', `/api/v1/rooms/${room.id}`, body);
      setText(status, 'Saved.');
    } catch (error) {
      showApiError(error, problems, { name, topic });
    } finally {
      setBusy(save, false);
    }
  });
  return form;
}

function addPeople(ctx, room, problems) {
  const picker = userPicker({
    client: ctx.client,
    exclude: [ctx.client.me.username],
    max: 50,
    label: 'Add people',
    hint: 'They see the whole history of the conversation.',
  });
  const add = h('button', { type: 'button', class: 'btn btn--secondary btn--small' }, 'Add');
  const status = h('p', { class: 'hint', role: 'status' });
  add.addEventListener('click', async () => {
    const people = picker.selected();
    if (!people.length) {
      picker.setError('Choose someone to add first.');
      return;
    }
    problems.hide();
    setBusy(add, true, 'Adding…');
    const added = [];
    try {
      for (const person of people) {
        await api.request('POST', `/api/v1/rooms/${room.id}/members`, { username: person.username });
        added.push(person.display_name);
      }
      picker.clear();
    } catch (error) {
      problems.show(error.message, 'error');
    } finally {
      setBusy(add, false);
      if (added.length) setText(status, `Added ${added.join(', ')}.`);
    }
  });
  return {
    node: h('div', { class: 'settings-group' }, picker.node, h('div', { class: 'form__actions' }, add, status)),
    destroy: () => picker.destroy?.(),
  };
}

/** Open the settings of a room the user is in. */
export function openRoomSettings(ctx, roomId) {
  const summary = ctx.client.rooms.get(roomId);
  const room = summary?.room;
  if (!room) return null;
  const myRole = summary.role ?? 'member';
  const me = ctx.client.me;
  const problems = alertBox('error');
  const direct = isDirect(room);
  const manager = !direct && (myRole === 'owner' || me.role === 'admin');
  const people = !direct && !room.archived && me.role !== 'guest' ? addPeople(ctx, room, problems) : null;

  const leave = h('button', { type: 'button', class: 'btn btn--danger btn--small' }, 'Leave');
  const archive = manager
    ? h('button', { type: 'button', class: 'btn btn--secondary btn--small' }, room.archived ? 'Unarchive' : 'Archive')
    : null;

  const dialog = openDialog({
    title: `Settings of ${roomLabel(room, me)}`,
    className: 'modal--wide',
    content: [
      problems.root,
      levelChoice(ctx, roomId, problems),
      room.archived ? null : detailsForm(ctx, room, { canRename: manager }, problems),
      people?.node,
      direct
        ? null
        : h(
            'div',
            { class: 'settings-group settings-group--danger' },
            h('p', { class: 'hint' }, 'Leaving takes the conversation off your list; you can join a public channel again.'),
            h('div', { class: 'form__actions' }, leave, archive),
          ),
    ],
    onClose: () => people?.destroy(),
  });

  leave.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: `Leave ${roomLabel(room, me)}?`,
      message: room.kind === 'private' ? 'You need someone to add you again to come back.' : 'You can join it again from “Browse channels”.',
      confirmLabel: 'Leave',
      danger: true,
    });
    if (!ok) return;
    try {
      await api.request('POST', `/api/v1/rooms/${roomId}/leave`);
      dialog.close('left');
      ctx.navigate('/chat');
    } catch (error) {
      problems.show(error.message, 'error');
    }
  });
  archive?.addEventListener('click', async () => {
    try {
      await api.request('PATCH', `/api/v1/rooms/${roomId}`, { archived: !room.archived });
      dialog.close('archived');
    } catch (error) {
      problems.show(error.message, 'error');
    }
  });
  return dialog;
}
