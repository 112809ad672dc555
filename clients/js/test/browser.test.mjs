// The built library in headless Chromium, loaded as ES modules from a page
// that the Igor server itself serves (static_dir), against the real server.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, it } from 'node:test';

import { launchChromium, startServer } from './helpers.mjs';

const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const PAGE = fileURLToPath(new URL('./browser/', import.meta.url));
const TOKEN = 'browser-token-123';

let root;
let server;
let browser;

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.js')), 'dist/ is missing: run npm run build first (npm test does it)');
  root = mkdtempSync(join(tmpdir(), 'igor-browser-'));
  cpSync(PAGE, root, { recursive: true });
  cpSync(DIST, join(root, 'lib'), { recursive: true });
  server = await startServer({ token: TOKEN, staticDir: root });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

it('call, stream, pushes, errors, cancel, 1 MB and the token from #token= work in Chromium', async () => {
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
  await page.goto(`http://127.0.0.1:${server.port}/index.html#token=${TOKEN}`);
  await page.waitForFunction(() => window.__igorResults !== undefined, null, { timeout: 20000 }).catch((e) => {
    throw new Error(`${e.message}\nbrowser console:\n${consoleLines.join('\n')}`);
  });
  const results = await page.evaluate(() => window.__igorResults);
  assert.equal(results.failed, undefined, `the page failed: ${results.failed}\nbrowser console:\n${consoleLines.join('\n')}`);

  assert.equal(results.nativeWebSocket, true);
  assert.equal(results.refused.isIgorError, true);
  assert.equal(results.refused.type, 'ConnectionFailed');
  assert.match(results.refused.message, /401/, 'the message names the likely cause');
  assert.equal(results.wrongToken, 'ConnectionFailed', 'a token given is used, not the one in the address');
  assert.equal(results.fromHash, 'Hello fragment', 'without a token option the client took #token= from the address');
  assert.equal(results.status, 'open');
  assert.equal(results.hello, 'Hello Chromium');
  assert.equal(results.whoami, 'browser-window');
  assert.deepEqual(results.stream, [0, 1, 2, 3, 4]);
  assert.equal(results.tick.push.action, 'tick');
  assert.equal(results.tick.push.processId, 'ticker');
  assert.equal(typeof results.tick.data.n, 'number');
  assert.deepEqual(results.targeted, { hello: 'browser' });
  assert.deepEqual(results.error, { isIgorError: true, code: 500, type: 'ValueError', message: 'nope: browser' });
  assert.deepEqual(results.cancelled, { seen: [0, 1], serverSaw: true });
  assert.equal(results.bigEcho, 1024 * 1024);
  await page.close();
});
