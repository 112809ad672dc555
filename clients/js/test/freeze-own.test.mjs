// A backend of one's own frozen with `python -m igor freeze`, run by launch()
// the way a packaged app runs it: the bare executable, no Python involved.
//
// The sample app (test/freeze_app/: an api.py, a module beside it, a ui/
// folder, a process class, a json default) is copied to a temporary folder
// outside the checkout and frozen from there, with igor importable only as
// `pip install -e .` makes it (test/editable_site.py), the install that hides
// igor from PyInstaller; its sources are deleted before it runs. One build,
// into that temporary folder. Skipped only when PyInstaller is not installed:
// pip install -e '.[freeze]' (test/run_all.sh does).
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { launch } from '../dist/node.js';
import { nextPush, within } from './helpers.mjs';
import { collectStderr, freezeSkip, isAlive, packagedAppEnv } from './processes.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');
const python = process.env.PYTHON || 'python3';
const SAMPLE = path.join(repoRoot, 'test', 'freeze_app');

const skip = freezeSkip(python);

const appEnv = packagedAppEnv();

let scratch;
let executable;

before(
  async () => {
    if (skip) return;
    scratch = await mkdtemp(path.join(tmpdir(), 'igor-freeze-own-'));
    const app = path.join(scratch, 'app');
    const site = path.join(scratch, 'site');
    await cp(SAMPLE, app, { recursive: true, filter: (from) => !from.includes('__pycache__') });
    const editable = spawnSync(python, [path.join(repoRoot, 'test', 'editable_site.py'), site], { encoding: 'utf8' });
    assert.equal(editable.status, 0, editable.stderr);

    const started = Date.now();
    const build = spawn(
      python,
      ['-m', 'igor', 'freeze', 'api.py:API', '--static', 'ui', '--process', 'echo=api:Echo', '--json-default', 'api:encode',
        '--dist', path.join(scratch, 'dist')],
      {
        cwd: app,
        // igor through its editable finder alone; PyInstaller's cache kept out of ~/.cache.
        env: { ...appEnv, PYTHONPATH: site, PYINSTALLER_CONFIG_DIR: path.join(scratch, 'config') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const log = collectStderr(build);
    let stdout = '';
    build.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk;
    });
    const [code] = await once(build, 'exit');
    assert.equal(code, 0, `igor freeze failed:\n${log()}`);
    executable = stdout.trim().split('\n').at(-1); // the last line is the executable's path
    assert.equal(executable, path.join(scratch, 'dist', 'igor-backend', 'igor-backend' + (process.platform === 'win32' ? '.exe' : '')));
    console.log(`froze the sample app in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await rm(app, { recursive: true });
    await rm(site, { recursive: true });
  },
  { timeout: 300_000 },
);

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('launch() runs a backend frozen with igor freeze: calls, a process push, the page, the json default', { skip, timeout: 60_000 }, async (t) => {
  let stderr = '';
  const server = await launch(executable, ['--port', '0'], {
    cwd: path.dirname(executable),
    env: appEnv,
    stderr: (text) => {
      stderr += text;
    },
  });
  t.after(() => server.close());
  assert.equal(typeof server.token, 'string', 'a token is generated, as by python -m igor');

  assert.equal(await server.client.call('hello', { name: 'Ada' }), 'Hello Ada, from a frozen app');
  const where = await server.client.call('app.where');
  assert.equal(where.frozen, true);
  assert.equal(where.file, path.join(where.bundle, 'api.py'), 'the API module runs from inside the bundle');
  assert.deepEqual(await server.client.call('app.today'), { day: '2026-12-03' });

  const echoed = nextPush(server.client, 'echoed');
  server.client.sendToProcess('echo', 'ping');
  assert.deepEqual((await within(10_000, echoed, 'the echo process')).data, { data: 'ping', day: '2026-12-03' });

  const page = await fetch(`http://127.0.0.1:${server.port}/`);
  assert.equal(page.status, 200);
  assert.equal(await page.text(), await readFile(path.join(SAMPLE, 'ui', 'index.html'), 'utf8'));

  const status = await server.close();
  assert.deepEqual(status, { code: 0, signal: null }, `graceful exit expected; stderr:\n${stderr}`);
  assert.equal(await isAlive(server.process.pid), false);
});
