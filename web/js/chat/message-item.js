// One message of the conversation as an element: its author line, text,
// quoted reply, files, reactions and the actions a person may take on it.
//
// Rendering is pure: the conversation decides when to build a message again
// (its `change` moved, or its neighbours changed how it is grouped) and hands
// in the callbacks for the actions.

import { h, icon } from '../dom.js';
import { colourSlot, formatDateTime, initials } from '../format.js';
import { mentionsMe, richText } from './richtext.js';
import { formatSize } from './uploads.js';

export const QUICK_EMOJI = ['👍', '❤️', '😄', '🎉', '🙏', '👀', '✅', '😮', '😢', '🔥', '👏', '🤔'];

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export function timeLabel(ms) {
  return timeOnly.format(new Date(ms));
}

function senderName(message) {
  if (message.kind === 'bot') return message.bot_name ?? 'Bot';
  return message.sender?.display_name ?? 'Deleted user';
}

function avatarFor(message) {
  const key = message.kind === 'bot' ? `bot:${message.bot_name}` : (message.sender?.username ?? '?');
  return h(
    'span',
    { class: ['avatar', 'msg__avatar', `avatar--c${colourSlot(key)}`], 'aria-hidden': 'true' },
    initials(senderName(message)),
  );
}

function reactionNames(reaction, me) {
  const names = reaction.users.map((username) => (username === me.username ? 'you' : `@${username}`));
  return names.join(', ');
}

function reactionsRow(message, me, actions) {
  if (!message.reactions.length) return null;
  return h(
    'div',
    { class: 'reactions', role: 'group', 'aria-label': 'Reactions' },
    message.reactions.map((reaction) => {
      const mine = reaction.users.includes(me.username);
      const who = reactionNames(reaction, me);
      return h(
        'button',
        {
          type: 'button',
          class: ['reaction', mine && 'reaction--mine'],
          'aria-pressed': String(mine),
          'aria-label': `${reaction.emoji} ${reaction.count}: ${who}. ${mine ? 'Remove your reaction' : 'React too'}`,
          title: `${who} reacted with ${reaction.emoji}`,
          onclick: () => actions.react(message, reaction.emoji, !mine),
        },
        h('span', { class: 'reaction__emoji', 'aria-hidden': 'true' }, reaction.emoji),
        h('span', { class: 'reaction__count', 'aria-hidden': 'true' }, String(reaction.count)),
      );
    }),
    h(
      'button',
      {
        type: 'button',
        class: 'reaction reaction--add',
        'aria-label': 'Add a reaction',
        title: 'Add a reaction',
        onclick: (event) => actions.pickReaction(message, event.currentTarget),
      },
      icon('smile'),
    ),
  );
}

function quote(message, actions) {
  const reply = message.reply_to;
  if (!reply) return null;
  return h(
    'button',
    {
      type: 'button',
      class: 'msg__quote',
      title: 'Show the message this answers',
      onclick: () => actions.showMessage(reply.seq),
    },
    h(
      'span',
      { class: 'msg__quote-name' },
      h('span', { class: 'visually-hidden' }, 'Replying to '),
      reply.sender?.display_name ?? 'Deleted user',
    ),
    h('span', { class: ['msg__quote-text', reply.deleted && 'is-deleted'] }, reply.deleted ? 'Deleted message' : reply.excerpt),
  );
}

function fileCard(file) {
  if (file.thumbnail_url || file.content_type.startsWith('image/')) {
    const width = file.width ?? 320;
    const height = file.height ?? 200;
    const scale = Math.min(1, 360 / width, 280 / height);
    const img = h('img', {
      class: 'msg-image__img',
      src: file.thumbnail_url ?? file.url,
      alt: file.name,
      width: Math.max(1, Math.round(width * scale)),
      height: Math.max(1, Math.round(height * scale)),
      loading: 'lazy',
      decoding: 'async',
    });
    return h(
      'a',
      { class: 'msg-image', href: file.url, target: '_blank', rel: 'noopener noreferrer', title: `${file.name} (${formatSize(file.size)})` },
      img,
    );
  }
  return h(
    'div',
    { class: 'file-card' },
    h('span', { class: 'file-card__icon', 'aria-hidden': 'true' }, icon('file')),
    h(
      'span',
      { class: 'file-card__text' },
      h('span', { class: 'file-card__name' }, file.name),
      h('span', { class: 'file-card__meta' }, formatSize(file.size)),
    ),
    h(
      'a',
      { class: 'btn btn--secondary btn--small file-card__download', href: file.url, download: file.name, 'aria-label': `Download ${file.name}` },
      icon('download'),
      h('span', {}, 'Download'),
    ),
  );
}

function toolbar(message, me, actions) {
  const own = message.sender?.id === me.id && message.kind === 'user';
  const canDelete = own || me.role === 'admin';
  const tool = (name, label, onclick) =>
    h('button', { type: 'button', class: 'msg-tool', 'aria-label': label, title: label, onclick }, icon(name));
  return h(
    'div',
    { class: 'msg__tools', role: 'toolbar', 'aria-label': 'Message actions' },
    tool('smile', 'Add a reaction', (event) => actions.pickReaction(message, event.currentTarget)),
    tool('reply', 'Reply', () => actions.reply(message)),
    own ? tool('edit', 'Edit', () => actions.edit(message)) : null,
    canDelete ? tool('trash', 'Delete', () => actions.remove(message)) : null,
  );
}

/**
 * A message element. `grouped`: it follows a message of the same sender
 * closely, so the author line is left out. `actions`: react, pickReaction,
 * reply, edit, remove, showMessage.
 */
export function messageItem(message, { me, grouped, actions, editor = null }) {
  const when = formatDateTime(message.created_at);
  if (message.kind === 'system') {
    return h(
      'li',
      { class: 'msg msg--system', id: `msg-${message.seq}`, dataset: { seq: String(message.seq) } },
      h('span', { class: 'msg--system__text' }, message.body),
      h('time', { class: 'msg--system__time', datetime: new Date(message.created_at).toISOString(), title: when }, timeLabel(message.created_at)),
    );
  }
  const classes = [
    'msg',
    grouped && 'msg--grouped',
    message.deleted && 'msg--deleted',
    !message.deleted && mentionsMe(message, me) && message.sender?.id !== me.id && 'msg--mention',
  ];
  const header = grouped
    ? null
    : h(
        'div',
        { class: 'msg__head' },
        h('span', { class: 'msg__author' }, senderName(message)),
        message.kind === 'bot' ? h('span', { class: 'badge badge--bot' }, 'Bot') : null,
        h('time', { class: 'msg__time', datetime: new Date(message.created_at).toISOString(), title: when }, timeLabel(message.created_at)),
      );
  let body;
  if (message.deleted) {
    body = h('p', { class: 'msg__tombstone' }, icon('trash'), 'This message was deleted.');
  } else if (editor) {
    body = editor;
  } else {
    body = [
      message.body
        ? h(
            'div',
            { class: 'msg__body' },
            richText(message.body, { mentions: message.mentions, me }),
            message.edited_at
              ? h('span', { class: 'msg__edited', title: `Edited ${formatDateTime(message.edited_at)}` }, ' (edited)')
              : null,
          )
        : null,
      message.files.length ? h('div', { class: 'msg__files' }, message.files.map(fileCard)) : null,
      reactionsRow(message, me, actions),
    ];
  }
  return h(
    'li',
    {
      class: classes,
      id: `msg-${message.seq}`,
      tabindex: '-1',
      dataset: { seq: String(message.seq), id: String(message.id) },
      'aria-label': `${senderName(message)}, ${when}`,
    },
    h(
      'div',
      { class: 'msg__gutter' },
      grouped
        ? h('time', { class: 'msg__hover-time', datetime: new Date(message.created_at).toISOString(), title: when }, timeLabel(message.created_at))
        : avatarFor(message),
    ),
    h('div', { class: 'msg__main' }, header, message.deleted ? null : quote(message, actions), body),
    message.deleted || editor ? null : toolbar(message, me, actions),
  );
}

/** A message the server has not confirmed: waiting, being sent, or refused. */
export function pendingItem(item, { me, actions }) {
  const failed = item.state === 'failed';
  const status = failed
    ? h(
        'div',
        { class: 'msg__failed', role: 'alert' },
        icon('alert'),
        h('span', {}, `Not sent: ${item.error ?? 'the server refused it.'}`),
        h('button', { type: 'button', class: 'btn btn--secondary btn--small', onclick: () => actions.retry(item) }, 'Retry'),
        h('button', { type: 'button', class: 'btn btn--ghost btn--small', onclick: () => actions.discard(item) }, 'Discard'),
      )
    : h(
        'div',
        { class: 'msg__pending-state' },
        item.state === 'sending' ? 'Sending…' : item.error ? `Waiting to send: ${item.error}` : 'Waiting for the connection…',
      );
  return h(
    'li',
    { class: ['msg', 'msg--pending', failed && 'msg--failed'], dataset: { clientMsgId: item.clientMsgId } },
    h(
      'div',
      { class: 'msg__gutter' },
      h('span', { class: ['avatar', 'msg__avatar', `avatar--c${colourSlot(me.username)}`], 'aria-hidden': 'true' }, initials(me.display_name)),
    ),
    h(
      'div',
      { class: 'msg__main' },
      h('div', { class: 'msg__head' }, h('span', { class: 'msg__author' }, me.display_name)),
      item.replyTo
        ? h('div', { class: 'msg__quote' }, h('span', { class: 'msg__quote-name' }, item.replyTo.name), h('span', { class: 'msg__quote-text' }, item.replyTo.excerpt))
        : null,
      item.body ? h('div', { class: 'msg__body' }, richText(item.body, { mentions: [], me })) : null,
      item.files.length
        ? h('div', { class: 'msg__files' }, item.files.map((file) => h('span', { class: 'file-chip' }, icon('file'), file.name)))
        : null,
      status,
    ),
  );
}
