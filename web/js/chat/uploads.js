// Uploading files to a room before they are sent with a message.
//
// XMLHttpRequest, not fetch: only it reports upload progress, which people
// need for anything bigger than a photo.

import { ApiError, csrfHeaders } from '../api.js';

/**
 * Start uploading `file` to a room. Returns {promise, abort()}; `onProgress`
 * gets a fraction 0..1. The promise resolves to the server's file object.
 */
export function uploadFile(roomId, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/files`);
    xhr.responseType = 'json';
    xhr.setRequestHeader('Accept', 'application/json');
    for (const [name, value] of Object.entries(csrfHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress?.(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      const body = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        onProgress?.(1);
        resolve(body.file ?? body);
        return;
      }
      const error = body && typeof body.error === 'object' ? body.error : {};
      reject(
        new ApiError({
          status: xhr.status,
          code: error.code ?? 'http_error',
          message: error.message ?? `The upload failed (HTTP ${xhr.status}).`,
          details: error,
        }),
      );
    });
    xhr.addEventListener('error', () =>
      reject(new ApiError({ status: 0, code: 'network', message: 'The upload failed: the server cannot be reached.' })),
    );
    xhr.addEventListener('abort', () =>
      reject(new ApiError({ status: 0, code: 'aborted', message: 'The upload was cancelled.' })),
    );
    const form = new FormData();
    form.append('file', file, file.name || 'pasted-image.png');
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

const UNITS = ['bytes', 'KB', 'MB', 'GB'];

/** "1.4 MB". */
export function formatSize(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} ${value === 1 ? 'byte' : 'bytes'}` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}
