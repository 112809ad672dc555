// Row 12 of bench.peers: 1920x1080 RGBA frames pushed to a headless Chromium page that draws each one on a
// canvas with putImageData. Every peer is paced the same way: the page answers each frame on arrival
// (before drawing it), and the server sends the next one on that answer; after 2 warm-up frames the page
// counts the frames it draws for SECONDS. Igor: its IgorProcess pushes with output.send (a process's push
// never waits for a slow client: one frame at a time is what keeps it connected), the page uses the JS
// client (clients/js/dist); websockets: plain binary frames; python-socketio: an event with a binary
// attachment, Engine.IO v4 / Socket.IO v5 spoken by hand in the page.
// Run by bench/peers/binary.py: node frames.mjs '{"peer": "igor", "port": N, "seconds": 3}'; prints JSON.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CHROMIUM } from '../../clients/js/test/helpers.mjs';

const { peer, port, seconds } = JSON.parse(process.argv[2]);
const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'clients', 'js');

// What each peer's page does to start the frames, answer one, and stop them; `frame(bytes)` is called with
// each frame's bytes as a Uint8Array.
const PEERS = {
  igor: `
    import { IgorClient } from './lib/index.js';
    const igor = new IgorClient('ws://' + location.host + '/', { token: null });
    await igor.ready;
    igor.on('frame', (data) => frame(data));
    const answer = (what) => igor.sendToProcess('frames', what);
    answer({ frames: 1000000 });`,
  websockets: `
    const ws = new WebSocket('ws://' + location.host + '/');
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e) => { if (typeof e.data !== 'string') frame(new Uint8Array(e.data)); };
    await new Promise((resolve) => { ws.onopen = resolve; });
    const answer = (what) => ws.send(what === 'ack' ? 'ack' : what === 'stop' ? 'stop' : '!frames 1000000');
    answer('start');`,
  socketio: `
    const ws = new WebSocket('ws://' + location.host + '/socket.io/?EIO=4&transport=websocket');
    ws.binaryType = 'arraybuffer';
    const answer = (what) => ws.send(what === 'start' ? '42["frames",1000000]' : '42["' + what + '"]');
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') frame(new Uint8Array(e.data));  // the attachment of 451-["frame",...]
      else if (e.data.startsWith('0{')) ws.send('40');
      else if (e.data.startsWith('40')) answer('start');
      else if (e.data === '2') ws.send('3');
    };`,
};

const PAGE = `<!doctype html><meta charset="utf-8"><body><script type="module">
  const W = 1920, H = 1080, SECONDS = ${Number(seconds)}, WARM = 2;
  const canvas = document.createElement('canvas');
  canvas.width = W;
  canvas.height = H;
  document.body.append(canvas);
  const ctx = canvas.getContext('2d');
  let drawn = 0, started = 0, finished = false, last = null, drawing = 0;
  function frame(bytes) {
    if (finished) return answer('stop');
    answer('ack');  // the next frame travels while this one is drawn
    if (bytes.byteLength !== W * H * 4) throw new Error('a frame of ' + bytes.byteLength + ' bytes');
    const t0 = performance.now();
    ctx.putImageData(new ImageData(new Uint8ClampedArray(bytes.buffer, bytes.byteOffset, bytes.byteLength), W, H), 0, 0);
    if (drawn >= WARM) drawing += performance.now() - t0;
    drawn++;
    last = Array.from(bytes.subarray(0, 4));
    const now = performance.now();
    if (drawn === WARM) started = now;
    if (drawn > WARM && now - started >= SECONDS * 1000) {
      finished = true;
      const pixel = Array.from(ctx.getImageData(0, 0, 1, 1).data);
      window.__result = { frames: drawn - WARM, seconds: (now - started) / 1000, frameBytes: W * H * 4,
                          drawMs: drawing / (drawn - WARM), pixelOk: pixel.join() === last.join() };
    }
  }
  window.addEventListener('error', (e) => { window.__result = { error: String(e.message) }; });
  window.addEventListener('unhandledrejection', (e) => { window.__result = { error: String(e.reason) }; });
  ${PEERS[peer]}
</script>`;

// The flags of clients/js/test/helpers.mjs launchChromium, and Local Network Access off: a page that
// page.route fulfils has no address of its own, so Chromium would count it as public and block its WebSocket
// to 127.0.0.1 (a page the server serves itself is loopback and is not blocked).
const { chromium } = createRequire(path.join(JS, 'package.json'))('playwright-core');
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  timeout: 30000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-features=LocalNetworkAccessChecks'],
});
try {
  const page = await browser.newPage();
  const origin = `http://127.0.0.1:${port}`;
  // The page and the JS client come from here, under the server's own origin (Igor without a token lets only
  // that origin in); the WebSocket goes to the real server, which page.route does not intercept.
  await page.route(`${origin}/**`, (route) => {
    const { pathname } = new URL(route.request().url());
    if (pathname === '/frames.html') return route.fulfill({ contentType: 'text/html', body: PAGE });
    if (pathname.startsWith('/lib/')) {
      return route.fulfill({ contentType: 'text/javascript', path: path.join(JS, 'dist', pathname.slice(5)) });
    }
    return route.fulfill({ status: 404, body: '' });
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => errors.push(m.text()));
  page.on('websocket', (w) => w.on('close', () => errors.push('websocket closed')));
  await page.goto(`${origin}/frames.html`);
  const handle = await page.waitForFunction(() => window.__result, null, { timeout: (seconds + 30) * 1000 })
    .catch((e) => { throw new Error(`${e.message}: ${errors.join('; ')}`); });
  const result = await handle.jsonValue();
  if (result.error || !result.pixelOk) throw new Error(`the page: ${JSON.stringify(result)} ${errors.join('; ')}`);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
