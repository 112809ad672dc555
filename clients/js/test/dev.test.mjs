// `python -m igor dev`, launched as an app launches its backend: the module is
// edited while the client is connected; the client must see its call in flight
// fail with BackendReloaded, reconnect by itself to the same port, and find its
// session again.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { IgorError } from '../dist/index.js';
import { launch } from '../dist/node.js';
import { PYTHON, statusReached, within } from './helpers.mjs';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const APP = `
def hello(out, data):
    return "one"

def remember(out, data, session):
    session["kept"] = data
    return True

def kept(out, data, session):
    return session.get("kept")

def slow(out, data):
    out.send("started")
    out.wait(30)

API = {"hello": hello, "remember": remember, "kept": kept, "slow": slow}
`;

describe('igor dev', { skip: process.platform === 'win32' && 'igor dev runs on POSIX only' }, () => {
  let folder;
  let server;
  let output = '';
  const waiting = [];

  // The supervisor logs the reload once the new backend serves, which can be just after the
  // client's first call to it answers, so the log line is waited for, not looked up once.
  function logged(pattern) {
    if (pattern.test(output)) return Promise.resolve();
    return new Promise((resolve) => waiting.push({ pattern, resolve }));
  }

  before(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'igor-dev-'));
    await writeFile(path.join(folder, 'app.py'), APP);
    server = await launch(PYTHON, ['-m', 'igor', 'dev', 'app:API', '--port', '0'], {
      cwd: folder,
      env: { ...process.env, PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) },
      stderr: (text) => {
        output += text;
        for (const wait of waiting.filter((w) => w.pattern.test(output))) {
          waiting.splice(waiting.indexOf(wait), 1);
          wait.resolve();
        }
      },
      client: { WebSocket, clientId: 'dev-window', reconnect: true },
      timeout: 20000,
    });
  });

  after(async () => {
    const status = await server?.close();
    if (folder) await rm(folder, { recursive: true, force: true });
    assert.equal(status?.code, 0, `igor dev ended with ${JSON.stringify(status)}:\n${output}`);
  });

  it('fails the call in flight with BackendReloaded, reconnects by itself and keeps its session', async () => {
    const client = server.client;
    assert.equal(await client.call('hello'), 'one');
    assert.equal(await client.call('remember', { n: 1 }), true);
    const stream = client.stream('slow');
    let started;
    const first = new Promise((resolve) => {
      started = resolve;
    });
    const ended = new Promise((resolve) => stream.subscribe({ next: started, error: resolve, complete: () => resolve(null) }));
    assert.equal(await within(5000, first, 'the slow call starting'), 'started');
    const reconnecting = statusReached(client, 'reconnecting');

    await writeFile(path.join(folder, 'app.py'), APP.replace('"one"', '"two"'));
    const error = await within(5000, ended, 'the call in flight ending');
    assert.ok(error instanceof IgorError, `not an IgorError: ${error}`);
    assert.equal(error.type, 'BackendReloaded');
    assert.match(error.message, /slow: the backend reloaded/);
    assert.match(error.message, /1012: backend reloaded/);
    const event = await within(5000, reconnecting, 'reconnecting');
    assert.equal(event.delay, 0, 'a reload reconnects at once');

    await within(5000, statusReached(client, 'open'), 'open again');
    assert.equal(await client.call('hello'), 'two');
    assert.deepEqual(await client.call('kept'), { n: 1 });
    assert.equal(client.url, server.url, 'the same port');
    await within(5000, logged(/backend reloaded in [0-9.]+ s/), `the reload logged:\n${output}`);
  });
});
