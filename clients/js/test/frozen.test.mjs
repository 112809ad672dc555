// The demo backend frozen with PyInstaller (examples/electron/freeze.py), run
// the way a packaged Electron app runs it: launch() on the bare executable, no
// Python interpreter involved.
//
// One build per run, into a temporary folder (PyInstaller's cache included),
// shared by the tests below. Skipped only when PyInstaller is not installed:
// pip install -e '.[freeze]' (test/run_all.sh does).
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { IgorClient } from '../dist/index.js';
import { launch } from '../dist/node.js';
import { within } from './helpers.mjs';
import { collectStderr, firstLine, freezeSkip, isAlive, packagedAppEnv, waitGone } from './processes.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');
const python = process.env.PYTHON || 'python3';
const ELECTRON_EXAMPLE = path.join(repoRoot, 'examples', 'electron');
const FREEZE = path.join(ELECTRON_EXAMPLE, 'freeze.py');
const NAME = 'igor-backend';

const skip = freezeSkip(python);

const appEnv = packagedAppEnv();

let scratch;
let executable;

before(
  async () => {
    if (skip) return;
    scratch = await mkdtemp(path.join(tmpdir(), 'igor-frozen-'));
    const dist = path.join(scratch, 'dist');
    const started = Date.now();
    // Run from the scratch folder: the recipe must not depend on the caller's cwd.
    const build = spawn(python, [FREEZE, '--dist', dist, '--work', path.join(scratch, 'work')], {
      cwd: scratch,
      env: {
        ...process.env,
        // Freeze this checkout's igor, and keep PyInstaller's cache out of ~/.cache.
        PYTHONPATH: [repoRoot, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
        PYINSTALLER_CONFIG_DIR: path.join(scratch, 'config'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = collectStderr(build);
    build.stdout.resume();
    const [code] = await once(build, 'exit');
    assert.equal(code, 0, `freeze.py failed:\n${log()}`);
    executable = path.join(dist, NAME, NAME + (process.platform === 'win32' ? '.exe' : ''));
    assert.ok(existsSync(executable), `no executable at ${executable}:\n${log()}`);
    console.log(`froze the demo backend in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  },
  { timeout: 300_000 },
);

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('launch() runs the frozen backend, which answers calls, serves the demo page and exits when stdin closes', { skip, timeout: 60_000 }, async (t) => {
  let stderr = '';
  // A packaged app's main.js: the executable itself, its folder as cwd.
  const server = await launch(executable, ['--port', '0'], {
    cwd: path.dirname(executable),
    env: appEnv,
    // No SIGTERM before the deadline: only the closed stdin can stop it in time.
    gracePeriod: 15_000,
    termDelay: 15_000,
    stderr: (text) => {
      stderr += text;
    },
  });
  t.after(() => server.close());
  assert.equal(typeof server.token, 'string', 'the demo backend uses a token');

  assert.equal(await server.client.call('hello', { name: 'frozen' }), 'Hello frozen');
  const steps = [];
  for await (const value of server.client.stream('jobs.run', { steps: 3, delay: 0 })) steps.push(value.step);
  assert.deepEqual(steps, [1, 2, 3]);

  // The page and the built client, bundled as data, are found inside the frozen folder.
  const page = await fetch(`http://127.0.0.1:${server.port}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);
  const lib = await fetch(`http://127.0.0.1:${server.port}/lib/index.js`);
  assert.equal(lib.status, 200, 'examples/demo/lib/ (npm run build) is bundled');

  const started = Date.now();
  const status = await server.close();
  const elapsed = Date.now() - started;
  assert.deepEqual(status, { code: 0, signal: null }, `graceful exit expected; stderr:\n${stderr}`);
  assert.ok(elapsed < 10_000, `exited ${elapsed} ms after its stdin closed`);
  assert.equal(await isAlive(server.process.pid), false);
});

test('the frozen backend dies when its Node parent is SIGKILLed', { skip, timeout: 60_000 }, async (t) => {
  // parent.mjs stands in for Electron's main process: it launches and connects, then waits.
  const parent = spawn(process.execPath, [path.join(here, 'fixtures', 'parent.mjs'), 'wait', 'connect', executable, '--port', '0'], {
    cwd: path.dirname(executable),
    env: appEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => parent.kill('SIGKILL'));
  const parentLog = collectStderr(parent);
  const report = JSON.parse(await firstLine(parent, 30_000));
  assert.equal(report.error, undefined, report.error);
  assert.equal(await isAlive(report.pid), true, 'the frozen backend runs while its parent does');

  // No exit hook runs on SIGKILL: only the stdin pipe the OS closes can stop it.
  parent.kill('SIGKILL');
  await once(parent, 'exit');
  const gone = await waitGone(report.pid, 5000);
  if (!gone) process.kill(report.pid, 'SIGKILL'); // do not leak it into other tests
  assert.ok(gone, `the frozen backend ${report.pid} outlived its SIGKILLed parent by 5 s; its log:\n${parentLog()}`);
});

/** Resolves once nothing accepts TCP connections on `port` any more; false after `ms`. */
async function portReleased(port, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const refused = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => resolve(true));
    });
    if (refused) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("examples/electron/main.js, packaged, launches the frozen backend from process.resourcesPath and stops it on quit", { skip, timeout: 60_000 }, async (t) => {
  // The packaged app's layout: main.js and its node_modules (igor-client, and
  // a stand-in for electron), the frozen folder in resources/igor-backend/.
  const app = path.join(scratch, 'app');
  await cp(ELECTRON_EXAMPLE, app, { recursive: true, filter: (from) => !/node_modules|backend|\.py$/.test(path.relative(ELECTRON_EXAMPLE, from)) });
  await mkdir(path.join(app, 'node_modules', 'electron'), { recursive: true });
  await symlink(path.resolve(here, '..'), path.join(app, 'node_modules', 'igor-client'), 'junction');
  await copyFile(path.join(here, 'fixtures', 'fake-electron.cjs'), path.join(app, 'node_modules', 'electron', 'index.js'));

  const electron = spawn(process.execPath, [path.join(app, 'main.js')], {
    cwd: app,
    env: { ...appEnv, FAKE_RESOURCES_PATH: path.dirname(path.dirname(executable)) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(() => electron.kill('SIGKILL'));
  const log = collectStderr(electron);
  const lines = createInterface({ input: electron.stdout })[Symbol.asyncIterator]();
  const nextReport = async () => {
    const { value, done } = await within(30_000, lines.next(), 'a report from main.js');
    assert.ok(!done, `main.js ended its output; its log:\n${log()}`);
    return JSON.parse(value);
  };

  const { config, error } = await nextReport();
  assert.equal(error, undefined, `main.js failed: ${error}\n${log()}`);
  const port = Number(new URL(config.url).port);
  const client = new IgorClient(config.url, { token: config.token });
  t.after(() => client.close());
  assert.equal(await client.call('hello', { name: 'packaged' }), 'Hello packaged');

  // The user closes the last window: main.js stops the backend, then quits.
  electron.stdin.end();
  assert.deepEqual(await nextReport(), { quit: true });
  const [code] = await once(electron, 'exit');
  assert.equal(code, 0);
  assert.ok(await portReleased(port, 5000), `the frozen backend still listens on ${port} after the app quit`);
});
