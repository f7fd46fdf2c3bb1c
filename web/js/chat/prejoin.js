// The check before a call: see yourself, hear that the microphone picks up
// sound, pick the devices, and choose whether the camera is on. Whatever fails
// (permission denied, no camera, a device unplugged) is said in words, and the
// call can still start with what works.

import { deviceProblem, listDevices, openCamera, openMicrophone } from '../call.js';
import { h, setText, uid } from '../dom.js';
import { openDialog } from './dialog.js';

function deviceSelect(label, id) {
  const select = h('select', { id, class: 'input select' });
  return { select, field: h('div', { class: 'field' }, h('label', { class: 'label', for: id }, label), select) };
}

function fillSelect(select, devices, currentId, noun) {
  const options = devices.map((device, index) => h('option', { value: device.deviceId }, device.label || `${noun} ${index + 1}`));
  select.replaceChildren(...(options.length ? options : [h('option', { value: '' }, `No ${noun.toLowerCase()} found`)]));
  select.disabled = !options.length;
  if (currentId && devices.some((d) => d.deviceId === currentId)) select.value = currentId;
}

/** A level meter on a microphone track (WebAudio), drawn as a bar's width. */
function levelMeter() {
  const bar = h('span', { class: 'prejoin__level-bar' });
  const node = h('div', { class: 'prejoin__level', 'aria-hidden': 'true' }, bar);
  let audio = null;
  let frame = 0;
  const stop = () => {
    cancelAnimationFrame(frame);
    audio?.close().catch(() => {});
    audio = null;
    bar.style.width = '0%';
  };
  return {
    node,
    attach(track) {
      stop();
      if (!track || !window.AudioContext) return;
      audio = new AudioContext();
      const analyser = audio.createAnalyser();
      analyser.fftSize = 512;
      audio.createMediaStreamSource(new MediaStream([track])).connect(analyser);
      const data = new Uint8Array(analyser.fftSize);
      const tick = () => {
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
        bar.style.width = `${Math.min(100, Math.round((peak / 64) * 100))}%`;
        frame = requestAnimationFrame(tick);
      };
      tick();
    },
    stop,
  };
}

/**
 * Resolves to {mic, camera} (MediaStreamTracks, either may be null) when the
 * person goes on, or null when they cancel (every track opened here is stopped).
 */
export function preJoinCheck({ title, confirm, place, video }) {
  return new Promise((resolve) => {
    const tracks = { mic: null, camera: null };
    let done = false;
    const preview = h('video', { class: 'prejoin__video', autoplay: true, playsinline: true, muted: true, 'aria-label': 'Your camera preview' });
    preview.muted = true;
    const previewOff = h('p', { class: 'prejoin__off' }, 'Camera off');
    const status = h('div', { class: 'prejoin__status', role: 'status', 'aria-live': 'polite' });
    const meter = levelMeter();
    const mic = deviceSelect('Microphone', uid('prejoin-mic'));
    const cam = deviceSelect('Camera', uid('prejoin-cam'));
    const cameraId = uid('prejoin-camera-on');
    const cameraOn = h('input', { type: 'checkbox', id: cameraId, class: 'checkbox' });
    cameraOn.checked = Boolean(video);
    const problems = new Map(); // 'mic' | 'camera' → text

    const showProblems = () => {
      status.replaceChildren(...[...problems.values()].map((text) => h('p', { class: 'prejoin__problem' }, text)));
    };
    const showPreview = () => {
      preview.srcObject = tracks.camera ? new MediaStream([tracks.camera]) : null;
      preview.hidden = !tracks.camera;
      previewOff.hidden = Boolean(tracks.camera);
      setText(previewOff, cameraOn.checked && !tracks.camera ? 'No camera picture' : 'Camera off');
    };
    const refreshDevices = async () => {
      const { mics, cameras } = await listDevices().catch(() => ({ mics: [], cameras: [] }));
      fillSelect(mic.select, mics, tracks.mic?.getSettings().deviceId, 'Microphone');
      fillSelect(cam.select, cameras, tracks.camera?.getSettings().deviceId, 'Camera');
      if (!cameras.length && !tracks.camera && cameraOn.checked && !problems.has('camera')) {
        problems.set('camera', 'No camera was found: you will join with audio only.');
        showProblems();
      }
    };
    const watch = (kind, track) =>
      track.addEventListener('ended', () => {
        if (tracks[kind] !== track) return;
        tracks[kind] = null;
        problems.set(kind, kind === 'mic' ? 'Your microphone was disconnected. Pick another one.' : 'Your camera was disconnected. Pick another one, or join with audio only.');
        showProblems();
        showPreview();
        if (kind === 'mic') meter.stop();
        refreshDevices();
      });
    const openMic = async (deviceId = null) => {
      tracks.mic?.stop();
      tracks.mic = null;
      try {
        tracks.mic = await openMicrophone(deviceId);
        watch('mic', tracks.mic);
        problems.delete('mic');
        meter.attach(tracks.mic);
      } catch (error) {
        problems.set('mic', `${deviceProblem(error, 'microphone')} You can still join and listen.`);
        meter.stop();
      }
      showProblems();
    };
    const openCam = async (deviceId = null) => {
      tracks.camera?.stop();
      tracks.camera = null;
      if (cameraOn.checked) {
        try {
          tracks.camera = await openCamera(deviceId);
          watch('camera', tracks.camera);
          problems.delete('camera');
        } catch (error) {
          problems.set('camera', `${deviceProblem(error, 'camera')} You can join with audio only.`);
        }
      } else {
        problems.delete('camera');
      }
      showProblems();
      showPreview();
    };

    mic.select.addEventListener('change', () => openMic(mic.select.value || null));
    cam.select.addEventListener('change', () => openCam(cam.select.value || null));
    cameraOn.addEventListener('change', () => openCam(cam.select.value || null));
    const onDeviceChange = () => refreshDevices();
    navigator.mediaDevices?.addEventListener?.('devicechange', onDeviceChange);

    const finish = (result) => {
      if (done) return;
      done = true;
      navigator.mediaDevices?.removeEventListener?.('devicechange', onDeviceChange);
      meter.stop();
      preview.srcObject = null;
      if (!result) {
        tracks.mic?.stop();
        tracks.camera?.stop();
      }
      resolve(result);
    };
    const go = h('button', { type: 'button', class: 'btn btn--primary' }, confirm);
    const cancel = h('button', { type: 'button', class: 'btn btn--secondary' }, 'Cancel');
    const dialog = openDialog({
      title,
      description: `Check your microphone and camera before the call in ${place}.`,
      className: 'modal--prejoin',
      content: [
        h('div', { class: 'prejoin__preview' }, preview, previewOff),
        h('div', { class: 'prejoin__mic' }, h('span', { class: 'prejoin__mic-label' }, 'Microphone level'), meter.node),
        status,
        mic.field,
        h('div', { class: 'prejoin__camera-row' }, cameraOn, h('label', { for: cameraId }, 'Camera on')),
        cam.field,
      ],
      actions: [cancel, go],
      initialFocus: go,
      closeOnBackdrop: false,
      onClose: (reason) => finish(reason === 'go' ? { ...tracks } : null),
    });
    go.addEventListener('click', () => dialog.close('go'));
    cancel.addEventListener('click', () => dialog.close('cancel'));
    showPreview();
    (async () => {
      await Promise.all([openMic(), openCam()]);
      if (!done) await refreshDevices();
    })();
  });
}
