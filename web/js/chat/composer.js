// The box where messages are written: Enter sends, Shift+Enter starts a new
// line, Up on an empty box edits the last own message, @ offers the room's
// people, files come from the button, drag-and-drop or paste and upload at
// once with a progress bar. Drafts survive switching rooms.

import { h, icon, setText, uid } from '../dom.js';
import { formatSize, uploadFile } from './uploads.js';

const MAX_LENGTH = 10000;
const MAX_FILES = 10;
const drafts = new Map();
const ROOM_MENTIONS = [{ username: 'room', display_name: 'Notify everyone in this conversation' }];

/**
 * `roomLabel()` names the room in the box's label; `members()` resolves to the
 * people @ can complete; `canMentionRoom()` says whether @room is offered;
 * `onSend(body, {replyTo, files})`, `onEditLast()` (true if it started an
 * edit), `onTyping()`.
 */
export function composer({ roomId, roomLabel, members, canMentionRoom, onSend, onEditLast, onTyping }) {
  const inputId = uid('composer');
  const listId = uid('mentions');
  const errorId = uid('composer-error');
  const textarea = h('textarea', {
    id: inputId,
    class: 'composer__input',
    rows: '1',
    'aria-autocomplete': 'list',
    'aria-describedby': errorId,
    spellcheck: 'true',
  });
  textarea.value = drafts.get(roomId) ?? '';
  const fileInput = h('input', { type: 'file', multiple: true, class: 'visually-hidden', tabindex: '-1', 'aria-hidden': 'true' });
  const attach = h(
    'button',
    { type: 'button', class: 'composer__tool', 'aria-label': 'Attach files', title: 'Attach files' },
    icon('clip'),
  );
  const send = h('button', { type: 'submit', class: 'composer__send', 'aria-label': 'Send message', title: 'Send (Enter)' }, icon('send'));
  const replyBar = h('div', { class: 'composer__reply', hidden: true });
  const uploadsList = h('ul', { class: 'composer__uploads', hidden: true, 'aria-label': 'Files to send' });
  const error = h('p', { class: 'composer__error', id: errorId, role: 'alert', hidden: true });
  const suggestions = h('ul', { class: 'mention-list', id: listId, role: 'listbox', 'aria-label': 'People to mention', hidden: true });
  const hint = h('p', { class: 'composer__hint', 'aria-hidden': 'true' }, h('kbd', {}, 'Enter'), ' to send · ', h('kbd', {}, 'Shift + Enter'), ' for a new line');
  const form = h(
    'form',
    { class: 'composer', 'aria-label': 'Write a message' },
    replyBar,
    uploadsList,
    h('div', { class: 'composer__box' }, attach, textarea, send, suggestions),
    error,
    hint,
    fileInput,
  );

  const setLabel = (label) => {
    textarea.placeholder = `Message ${label}`;
    textarea.setAttribute('aria-label', `Message ${label}`);
  };
  setLabel(roomLabel());

  let replyTo = null;
  const uploads = [];
  let mention = null; // {start, options, active}

  const autosize = () => {
    textarea.style.height = 'auto';
    textarea.style.height = `${Math.min(textarea.scrollHeight, 240)}px`;
  };

  const showError = (text) => {
    setText(error, text ?? '');
    error.hidden = !text;
  };

  // -- replies -------------------------------------------------------------------
  const setReply = (message) => {
    replyTo = message
      ? { id: message.id, name: message.sender?.display_name ?? 'Deleted user', excerpt: message.body.slice(0, 200) }
      : null;
    replyBar.replaceChildren();
    replyBar.hidden = !replyTo;
    if (replyTo) {
      replyBar.append(
        icon('reply'),
        h('span', { class: 'composer__reply-text' }, 'Replying to ', h('strong', {}, replyTo.name), ': ', replyTo.excerpt),
        h('button', { type: 'button', class: 'composer__tool', 'aria-label': 'Cancel reply', title: 'Cancel reply (Esc)', onclick: () => setReply(null) }, icon('close')),
      );
      textarea.focus();
    }
  };

  // -- uploads -------------------------------------------------------------------
  const renderUploads = () => {
    uploadsList.hidden = uploads.length === 0;
    uploadsList.replaceChildren(
      ...uploads.map((upload) => {
        const bar = h('span', { class: 'upload__bar' });
        bar.style.width = `${Math.round(upload.progress * 100)}%`;
        const state = upload.error ? upload.error : upload.file ? formatSize(upload.size) : `${Math.round(upload.progress * 100)}%`;
        return h(
          'li',
          { class: ['upload', upload.error && 'upload--failed', upload.file && 'upload--done'] },
          upload.preview ? h('img', { class: 'upload__preview', src: upload.preview, alt: '' }) : h('span', { class: 'upload__icon', 'aria-hidden': 'true' }, icon('file')),
          h(
            'span',
            { class: 'upload__text' },
            h('span', { class: 'upload__name' }, upload.name),
            h('span', { class: 'upload__state' }, state),
            upload.file || upload.error
              ? null
              : h(
                  'span',
                  {
                    class: 'upload__track',
                    role: 'progressbar',
                    'aria-label': `Uploading ${upload.name}`,
                    'aria-valuemin': '0',
                    'aria-valuemax': '100',
                    'aria-valuenow': String(Math.round(upload.progress * 100)),
                  },
                  bar,
                ),
          ),
          h(
            'button',
            {
              type: 'button',
              class: 'composer__tool',
              'aria-label': `Remove ${upload.name}`,
              title: 'Remove',
              onclick: () => {
                upload.task?.abort();
                if (upload.preview) URL.revokeObjectURL(upload.preview);
                uploads.splice(uploads.indexOf(upload), 1);
                renderUploads();
              },
            },
            icon('close'),
          ),
        );
      }),
    );
  };

  const addFiles = (files) => {
    showError(null);
    for (const file of files) {
      if (uploads.length >= MAX_FILES) {
        showError(`At most ${MAX_FILES} files go with one message.`);
        break;
      }
      const upload = {
        name: file.name || 'pasted-image.png',
        size: file.size,
        progress: 0,
        file: null,
        error: null,
        preview: file.type.startsWith('image/') ? URL.createObjectURL(file) : null,
      };
      upload.task = uploadFile(roomId, file, (fraction) => {
        upload.progress = fraction;
        renderUploads();
      });
      upload.task.promise.then(
        (stored) => {
          upload.file = stored;
          upload.task = null;
          renderUploads();
        },
        (failure) => {
          upload.task = null;
          if (failure.code !== 'aborted') upload.error = failure.message;
          renderUploads();
        },
      );
      uploads.push(upload);
    }
    renderUploads();
    textarea.focus();
  };

  attach.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    addFiles([...fileInput.files]);
    fileInput.value = '';
  });
  textarea.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });

  // -- @mentions -----------------------------------------------------------------
  const closeMentions = () => {
    mention = null;
    suggestions.hidden = true;
    suggestions.replaceChildren();
    textarea.removeAttribute('aria-activedescendant');
    textarea.removeAttribute('aria-controls');
  };

  const renderMentions = () => {
    if (!mention || mention.options.length === 0) {
      closeMentions();
      return;
    }
    suggestions.hidden = false;
    textarea.setAttribute('aria-controls', listId);
    suggestions.replaceChildren(
      ...mention.options.map((person, index) => {
        const option = h(
          'li',
          {
            id: `${listId}-${index}`,
            class: ['mention-option', index === mention.active && 'is-active'],
            role: 'option',
            'aria-selected': String(index === mention.active),
          },
          h('span', { class: 'mention-option__name' }, person.username === 'room' ? '@room' : person.display_name),
          h('span', { class: 'mention-option__user' }, person.username === 'room' ? person.display_name : `@${person.username}`),
        );
        option.addEventListener('mousedown', (event) => {
          event.preventDefault();
          mention.active = index;
          pickMention();
        });
        return option;
      }),
    );
    textarea.setAttribute('aria-activedescendant', `${listId}-${mention.active}`);
  };

  const updateMentions = async () => {
    const before = textarea.value.slice(0, textarea.selectionStart);
    const match = before.match(/(?:^|\s)@([\w.-]{0,64})$/);
    if (!match) {
      closeMentions();
      return;
    }
    const query = match[1].toLowerCase();
    const start = textarea.selectionStart - match[1].length - 1;
    let people;
    try {
      people = await members();
    } catch {
      people = [];
    }
    const pool = [...people, ...(canMentionRoom() ? ROOM_MENTIONS : [])];
    const options = pool
      .filter(
        (person) =>
          person.username.toLowerCase().startsWith(query) ||
          person.display_name.toLowerCase().split(/\s+/).some((word) => word.startsWith(query)),
      )
      .slice(0, 8);
    mention = { start, options, active: 0 };
    renderMentions();
  };

  const pickMention = () => {
    const person = mention?.options[mention.active];
    if (!person) return;
    const value = textarea.value;
    const caret = textarea.selectionStart;
    const insert = `@${person.username} `;
    textarea.value = value.slice(0, mention.start) + insert + value.slice(caret);
    const at = mention.start + insert.length;
    textarea.setSelectionRange(at, at);
    closeMentions();
    drafts.set(roomId, textarea.value);
    textarea.focus();
  };

  // -- sending -------------------------------------------------------------------
  const submit = () => {
    const body = textarea.value.trim();
    if (uploads.some((upload) => !upload.file && !upload.error)) {
      showError('Wait for the files to finish uploading, then send.');
      return;
    }
    const files = uploads.filter((upload) => upload.file).map((upload) => ({ id: upload.file.id, name: upload.file.name }));
    if (!body && files.length === 0) return;
    if (body.length > MAX_LENGTH) {
      showError(`A message can be at most ${MAX_LENGTH.toLocaleString()} characters; this one has ${body.length.toLocaleString()}.`);
      return;
    }
    showError(null);
    onSend(body, { replyTo, files });
    textarea.value = '';
    drafts.delete(roomId);
    for (const upload of uploads) if (upload.preview) URL.revokeObjectURL(upload.preview);
    uploads.length = 0;
    renderUploads();
    setReply(null);
    autosize();
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });

  textarea.addEventListener('keydown', (event) => {
    if (mention && !suggestions.hidden) {
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        const step = event.key === 'ArrowDown' ? 1 : -1;
        mention.active = (mention.active + step + mention.options.length) % mention.options.length;
        renderMentions();
        return;
      }
      if (event.key === 'Enter' || event.key === 'Tab') {
        event.preventDefault();
        pickMention();
        return;
      }
      if (event.key === 'Escape') {
        event.preventDefault();
        closeMentions();
        return;
      }
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === 'ArrowUp' && textarea.value === '' && !event.shiftKey) {
      if (onEditLast()) event.preventDefault();
    } else if (event.key === 'Escape' && replyTo) {
      event.preventDefault();
      setReply(null);
    }
  });

  textarea.addEventListener('input', () => {
    drafts.set(roomId, textarea.value);
    autosize();
    showError(null);
    if (textarea.value.trim()) onTyping();
    updateMentions();
  });
  textarea.addEventListener('blur', () => window.setTimeout(closeMentions, 150));

  requestAnimationFrame(autosize);

  return {
    node: form,
    focus: () => textarea.focus({ preventScroll: true }),
    setReply,
    setLabel,
    addFiles,
    textarea,
  };
}
