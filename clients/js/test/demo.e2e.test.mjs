// End-to-end test of the demo app: the real Python server (server_instance.py,
// started with igor-client/node's launch) and the real page in headless
// Chromium, driven through playwright-core.
//
// Run from clients/js after a build: node --test test/demo.e2e.test.mjs
// Needs /usr/bin/chromium (Debian: apt-get install -y chromium), or the path
// in $CHROMIUM_PATH. IGOR_UPDATE_SCREENSHOT=1 also writes docs/demo.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, copyFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';


import { launch } from '../dist/node.js';
import { launchChromium } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');
const python = process.env.PYTHON || 'python3';
const STEP_TIMEOUT = 15_000;

test('the demo app works end to end in Chromium', { timeout: 120_000 }, async (t) => {
  assert.ok(
    existsSync(path.join(repoRoot, 'examples', 'demo', 'lib', 'index.js')),
    'examples/demo/lib/index.js is missing: run `npm run build` in clients/js first',
  );

  let serverLog = '';
  const server = await launch(python, ['server_instance.py'], {
    cwd: repoRoot,
    env: {
      ...process.env,
      PYTHONPATH: [repoRoot, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    },
    connect: true,
    client: { clientId: 'node-observer' },
    stderr: (text) => {
      serverLog += text;
    },
    stdout: (text) => {
      serverLog += text;
    },
  });
  t.after(() => server.close());
  assert.equal(typeof server.token, 'string', 'server_instance.py has a token by default');

  // A second client, this Node process: the page's targeted notification must
  // not reach it.
  const notificationsSeenByNode = [];
  server.client.on('notification', (data) => notificationsSeenByNode.push(data));

  const browser = await launchChromium();
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);

  const problems = [];
  const foreign = [];
  const origin = `http://127.0.0.1:${server.port}`;
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin + '/') && !url.startsWith(`ws://127.0.0.1:${server.port}/`) && !url.startsWith('data:')) {
      foreign.push(url);
    }
  });
  const context_ = () => `\nbrowser problems:\n${problems.join('\n')}\nserver output:\n${serverLog}`;

  // What the page sends on its WebSocket, to see the typing go into one open call.
  // Binary frames (protocol 3) are counted apart: their bytes are no JSON.
  const framesSent = [];
  let binaryFramesSent = 0;
  page.on('websocket', (ws) =>
    ws.on('framesent', ({ payload }) => {
      if (typeof payload === 'string') framesSent.push(JSON.parse(payload));
      else binaryFramesSent++;
    }),
  );

  const shotDir = await mkdtemp(path.join(tmpdir(), 'igor-demo-e2e-'));
  const byId = (id) => page.getByTestId(id);

  try {
    await page.goto(`${origin}/#token=${encodeURIComponent(server.token)}`);

    // Connected, with a window-... client id.
    await page.waitForSelector('[data-testid="status"][data-state="open"]');
    const clientId = await byId('client-id').textContent();
    assert.match(clientId, /^window-[0-9a-f]+$/);
    assert.equal(await byId('connection-banner').isVisible(), false);

    // A call: the hello form.
    await byId('hello-name').fill('Grace');
    await byId('hello-submit').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="hello-result"]').textContent === 'Hello Grace');

    // Shared events: add two, remove one.
    for (const title of ['Design review', 'Release 1.0']) {
      await byId('events-title').fill(title);
      await byId('events-add').click();
      await page.locator('[data-testid="event"]', { hasText: title }).waitFor();
    }
    await byId('events-title').fill('Scratch event');
    await byId('events-add').click();
    const scratchEvent = page.locator('[data-testid="event"]', { hasText: 'Scratch event' });
    await scratchEvent.waitFor();
    await scratchEvent.getByTestId('event-remove').click();
    await scratchEvent.waitFor({ state: 'detached' });

    // A stream: the job reports progress, then is cancelled (without the halfway question).
    await byId('job-confirm').uncheck();
    await byId('job-steps').fill('40');
    await byId('job-start').click();
    await page.waitForSelector('[data-testid="job-status"][data-state="running"]');
    const percentNow = () => page.evaluate(() => Number(document.querySelector('[data-testid="job-progress"]').getAttribute('aria-valuenow')));
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="job-progress"]').getAttribute('aria-valuenow')) >= 30);
    const before = await percentNow();
    await page.waitForFunction((p) => Number(document.querySelector('[data-testid="job-progress"]').getAttribute('aria-valuenow')) > p, before);
    assert.ok((await percentNow()) > before, 'the progress bar advances');
    assert.equal(await byId('job-cancel').isEnabled(), true);
    await byId('job-cancel').click();
    await page.waitForSelector('[data-testid="job-status"][data-state="cancelled"]');
    const cancelledAt = await percentNow();
    assert.ok(cancelledAt > 0 && cancelledAt < 100, `cancelled part way (${cancelledAt}%)`);
    assert.match(await byId('job-status').textContent(), /^Cancelled at \d+%$/);
    assert.equal(await byId('job-start').isEnabled(), true, 'a new job can be started');

    // A push to every window: the counter changes.
    await page.waitForFunction(() => /^\d+$/.test(document.querySelector('[data-testid="counter-value"]').textContent));
    const counter = Number(await byId('counter-value').textContent());
    await page.waitForFunction(
      (c) => Number(document.querySelector('[data-testid="counter-value"]').textContent) > c,
      counter,
    );
    // The cancelled job stayed where it was while time passed.
    assert.equal(await percentNow(), cancelledAt, 'no progress after the cancel');
    assert.equal(await byId('job-status').getAttribute('data-state'), 'cancelled');

    // Python calls the page: halfway the job asks this window, and waits for the answer.
    await byId('job-confirm').check();
    await byId('job-steps').fill('6');
    await byId('job-start').click();
    await byId('confirm-dialog').waitFor({ state: 'visible' });
    assert.equal(await byId('confirm-question').textContent(), 'Step 3 of 6 is done. Run the remaining 3?');
    await page.waitForSelector('[data-testid="job-status"][data-state="waiting"]');
    assert.equal(await percentNow(), 50);
    // The job waits on the question while the rest of the page lives: the counter goes on.
    const counterWhileAsking = Number(await byId('counter-value').textContent());
    await page.waitForFunction(
      (c) => Number(document.querySelector('[data-testid="counter-value"]').textContent) > c,
      counterWhileAsking,
    );
    assert.equal(await percentNow(), 50, 'the job did not go on without an answer');
    await byId('confirm-yes').click();
    await byId('confirm-dialog').waitFor({ state: 'hidden' });
    await page.waitForSelector('[data-testid="job-status"][data-state="done"]');
    assert.equal(await percentNow(), 100);

    // Answered "Stop", the Python job stops where it asked.
    await byId('job-steps').fill('4');
    await byId('job-start').click();
    await byId('confirm-dialog').waitFor({ state: 'visible' });
    await byId('confirm-no').click();
    await page.waitForSelector('[data-testid="job-status"][data-state="stopped"]');
    assert.equal(await byId('job-status').textContent(), 'Stopped after step 2: you chose to stop');
    assert.equal(await percentNow(), 50);

    // The typing streams into one open call; the handler answers as it goes.
    const text = 'live words from the page';
    await byId('live-input').pressSequentially(text);
    await page.waitForFunction((t) => document.querySelector('[data-testid="live-echo"]').textContent === t, text.toUpperCase());
    assert.equal(await byId('live-words').textContent(), '5');
    assert.equal(await byId('live-chars').textContent(), String(text.length));
    const liveCall = framesSent.find((m) => m.action === 'text.live');
    assert.ok(liveCall, 'the page opened a text.live call');
    const inputs = framesSent.filter((m) => m.streamId === liveCall.streamId && !('action' in m) && 'data' in m);
    assert.equal(inputs.length, text.length, 'one input per keystroke, all into the one call');
    assert.equal(inputs.at(-1).data, text);
    await byId('live-finish').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="live-state"]').textContent === 'Finished: 5 words');
    assert.ok(framesSent.some((m) => m.streamId === liveCall.streamId && m.end === true), 'Finish ended the input');

    // A push to this window only: notify.me.
    await byId('notify-text').fill('Your export is ready');
    await byId('notify-submit').click();
    await page.locator('[data-testid="notification"]', { hasText: 'Your export is ready' }).waitFor();
    assert.deepEqual(notificationsSeenByNode, [], "another client does not get this window's notification");

    // An error, shown politely.
    await byId('fail-button').click();
    await byId('error-box').waitFor({ state: 'visible' });
    assert.equal(await byId('error-message').textContent(), 'This action fails on purpose');
    assert.match(await byId('error-detail').textContent(), /ValueError/);

    // A picture made in Python, sent as bytes, drawn with putImageData: every pixel as Python made it.
    const expectedPixel = (x, y, w, h, seed) => [Math.floor((x * 255) / (w - 1)), Math.floor((y * 255) / (h - 1)), (seed * 40) % 256, 255];
    const canvasCheck = async (seed) => {
      await page.waitForSelector(`[data-testid="picture-canvas"][data-seed="${seed}"]`);
      return page.evaluate(() => {
        const canvas = document.querySelector('[data-testid="picture-canvas"]');
        const { data, width, height } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        return { width, height, pixels: Array.from(data) };
      });
    };
    for (const seed of [0, 1]) {
      if (seed > 0) await byId('picture-make').click();
      const { width, height, pixels } = await canvasCheck(seed);
      assert.ok(pixels.some((v, i) => i % 4 !== 3 && v !== 0), 'the canvas is not blank');
      let mismatches = 0;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const at = (y * width + x) * 4;
          const want = expectedPixel(x, y, width, height, seed);
          if (want.some((v, k) => pixels[at + k] !== v)) mismatches++;
        }
      }
      assert.equal(mismatches, 0, `every pixel of the ${width}x${height} canvas is what Python made (seed ${seed})`);
      assert.equal(await byId('picture-info').textContent(), `${width}×${height}, ${width * height * 4} bytes, seed ${seed}`);
    }

    // A file picked in the page, uploaded in paced chunks with a progress bar, into a handler that counts its bytes.
    const uploadFile = path.join(shotDir, 'picked.bin');
    const uploadSize = 3 * 1024 * 1024 + 12345;
    await writeFile(uploadFile, Buffer.alloc(uploadSize, 0x5a));
    const binaryBefore = binaryFramesSent;
    const percents = [];
    await page.exposeFunction('notePercent', (p) => percents.push(p));
    await page.evaluate(() => {
      const target = document.querySelector('[data-testid="upload-progress"]');
      new MutationObserver(() => window.notePercent(Number(target.getAttribute('aria-valuenow')))).observe(target, { attributes: true });
    });
    await byId('upload-input').setInputFiles(uploadFile);
    await page.waitForSelector('[data-testid="upload-status"][data-state="done"]');
    assert.equal(await byId('upload-percent').textContent(), '100%');
    assert.equal(await byId('upload-progress').getAttribute('aria-valuenow'), '100');
    assert.equal(Number(await byId('upload-status').getAttribute('data-bytes')), uploadSize, "the handler's byte count is the file's size");
    assert.equal(await byId('upload-status').textContent(), `Saved picked.bin: ${uploadSize} bytes`);
    assert.ok(binaryFramesSent - binaryBefore >= 4, `the file went as binary chunks (${binaryFramesSent - binaryBefore} frames)`);
    assert.ok(percents.some((p) => p > 0 && p < 100), `the bar showed progress on the way: ${percents.join(', ')}`);

    // The server-side session of this window counts its whoami calls.
    assert.equal(await byId('session-client-id').textContent(), clientId);
    await page.waitForFunction(() => /^\d+$/.test(document.querySelector('[data-testid="whoami"]').textContent));
    const asked = Number(await byId('whoami').textContent());
    await byId('whoami-button').click();
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid="whoami"]').textContent) === n + 1, asked);

    assert.deepEqual(foreign, [], 'the page loads nothing from the network');
    assert.deepEqual(problems, [], 'no errors in the page');

    // Screenshots: one for this run, and the README's when asked.
    await page.mouse.move(0, 0);
    const shot = path.join(shotDir, 'demo.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok((await stat(shot)).size > 10_000, 'a real screenshot was written');
    t.diagnostic(`screenshot: ${shot}`);
    if (process.env.IGOR_UPDATE_SCREENSHOT === '1') {
      const target = path.join(repoRoot, 'docs', 'demo.png');
      await copyFile(shot, target);
      t.diagnostic(`updated ${target}`);
    }

    // Removing an event another client removed first: a polite error, then the truth.
    await byId('events-title').fill('Removed elsewhere');
    await byId('events-add').click();
    const stale = page.locator('[data-testid="event"]', { hasText: 'Removed elsewhere' });
    await stale.waitFor();
    const staleId = Number(await stale.getAttribute('data-id'));
    assert.deepEqual(await server.client.call('events.remove', { id: staleId }), { removed: staleId });
    await stale.getByTestId('event-remove').click();
    await page.locator('[data-testid="toast-error"]', { hasText: `Could not remove the event: no event with id ${staleId}` }).waitFor();
    await stale.waitFor({ state: 'detached' });

    // The connection-loss banner: stop the server under the page.
    await server.close();
    await byId('connection-banner').waitFor({ state: 'visible' });
    assert.notEqual(await byId('status').getAttribute('data-state'), 'open');
    await page.screenshot({ path: path.join(shotDir, 'demo-disconnected.png'), fullPage: true });
  } catch (error) {
    try {
      await page.screenshot({ path: path.join(shotDir, 'failure.png'), fullPage: true });
      t.diagnostic(`failure screenshot: ${path.join(shotDir, 'failure.png')}`);
    } catch {
      // The page may be gone.
    }
    error.message += context_();
    throw error;
  }
});
