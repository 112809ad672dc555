// The demo's binary panel: a picture made in Python (bytes, drawn in a canvas as they came)
// and a file picked in the page, uploaded into Python with a progress bar and a cancel button.
// @ts-check

import { $, describeError, reportError } from './ui.js';

/** Wires the panel to the page's client. @param {import('./lib/index.js').IgorClient<import('./api').Api>} igor */
export function filesPanel(igor) {
  let pictureSeed = 0;

  /** Ask Python for an RGBA gradient (bytes, sent as binary) and draw it as it came. */
  async function drawPicture() {
    const canvas = /** @type {HTMLCanvasElement} */ ($('picture-canvas'));
    try {
      const picture = await igor.call('picture.make', { width: canvas.width, height: canvas.height, seed: pictureSeed });
      const pixels = picture.pixels;
      // A view over the received buffer (an ArrayBuffer: WebSocket messages are never shared memory), no copy.
      const rgba = new Uint8ClampedArray(/** @type {ArrayBuffer} */ (pixels.buffer), pixels.byteOffset, pixels.byteLength);
      const image = new ImageData(rgba, picture.width, picture.height);
      canvas.getContext('2d')?.putImageData(image, 0, 0);
      $('picture-info').textContent = `${picture.width}×${picture.height}, ${pixels.byteLength} bytes, seed ${picture.seed}`;
      $('picture-canvas').dataset.seed = String(picture.seed);
    } catch (error) {
      reportError('Could not draw the picture', error);
    }
  }

  $('picture-make').addEventListener('click', () => {
    pictureSeed += 1;
    void drawPicture();
  });

  igor.ready.then(() => drawPicture(), () => {});

  /** @type {AbortController | null} */
  let uploadController = null;

  function showUpload(state, text, done = 0, total = 0) {
    const percent = total > 0 ? Math.round((100 * done) / total) : state === 'done' ? 100 : 0;
    $('upload-progress').dataset.state = state;
    $('upload-progress').setAttribute('aria-valuenow', String(percent));
    $('upload-progress-bar').style.width = `${percent}%`;
    $('upload-percent').textContent = `${percent}%`;
    $('upload-status').textContent = text;
    $('upload-status').dataset.state = state;
  }

  $('upload-input').addEventListener('change', async () => {
    const file = /** @type {HTMLInputElement} */ ($('upload-input')).files?.[0];
    if (!file) return;
    uploadController?.abort();
    const controller = (uploadController = new AbortController());
    $('upload-cancel').disabled = false;
    showUpload('running', `Uploading ${file.name}…`, 0, file.size);
    try {
      const saved = await igor.upload('files.upload', file, {
        data: { name: file.name },
        signal: controller.signal,
        onProgress: (done, total) => showUpload('running', `Uploading ${file.name}…`, done, total ?? file.size),
      });
      const result = /** @type {import('./api').Saved} */ (saved);
      showUpload('done', `Saved ${result.name}: ${result.bytes} bytes`, result.bytes, result.bytes);
      $('upload-status').dataset.bytes = String(result.bytes);
    } catch (error) {
      if (controller.signal.aborted) showUpload('cancelled', 'Upload cancelled');
      else {
        showUpload('error', describeError(error).message);
        reportError('Upload failed', error);
      }
    } finally {
      if (uploadController === controller) {
        uploadController = null;
        $('upload-cancel').disabled = true;
      }
    }
  });

  $('upload-cancel').addEventListener('click', () => uploadController?.abort());
}
