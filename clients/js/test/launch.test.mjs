// Tests of igor-client/node's launch() against the real Python server.
//
// Run from clients/js after a build: node --test test/launch.test.mjs
// (npm test builds first). Python: $PYTHON or python3; the repository root is
// put on PYTHONPATH, so `pip install -e .` is not required.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import { IgorError } from '../dist/index.js';
import { launch, LaunchError } from '../dist/node.js';
import { within } from './helpers.mjs';
import { collectStderr, firstLine, isAlive, waitGone } from './processes.mjs';

/** The error `launch(...args)` rejects with; fails the test if it resolves. */
async function launchFailure(...args) {
  return launch(...args).then(
    () => assert.fail('launch should reject'),
    (e) => e,
  );
}

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..', '..');
const python = process.env.PYTHON || 'python3';
const env = {
  ...process.env,
  PYTHONPATH: [repoRoot, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
};

const API_MODULE = `
def hello(out, data, **kwargs):
    out.send('Hello ' + data['name'])

def count(out, data, **kwargs):
    for i in range(data['n']):
        yield i

API = {'hello': hello, 'count': count}
`;

// A ready line for a server that is not there: for tests that never connect.
const READY_9 = 'print("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/", "port": 9, "token": None}), flush=True)';

/** A fresh temporary folder with the given files, removed after the test. */
async function scratch(t, files) {
  const dir = await mkdtemp(path.join(tmpdir(), 'igor-launch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
}

test('launch starts python -m igor, connects, calls, streams and closes', { timeout: 60_000 }, async (t) => {
  const dir = await scratch(t, { 'launch_api.py': API_MODULE });
  let stderr = '';
  const server = await launch(python, ['-m', 'igor', 'launch_api:API', '--port', '0'], {
    cwd: dir,
    env,
    stderr: (text) => {
      stderr += text;
    },
  });
  t.after(() => server.close());

  assert.match(server.url, /^ws:\/\/127\.0\.0\.1:\d+\/$/);
  assert.ok(server.port > 0, 'a real port is reported');
  assert.equal(server.url, `ws://127.0.0.1:${server.port}/`);
  assert.equal(typeof server.token, 'string', 'the CLI generates a token');
  assert.ok(server.token.length >= 16);
  assert.equal(typeof server.process.pid, 'number');

  assert.equal(await server.client.call('hello', { name: 'Ada' }), 'Hello Ada');
  const seen = [];
  for await (const value of server.client.stream('count', { n: 4 })) seen.push(value);
  assert.deepEqual(seen, [0, 1, 2, 3]);

  const status = await server.close();
  assert.equal(await isAlive(server.process.pid), false);
  // Closing stdin is enough for an exit_with_parent server: it exits by itself.
  assert.deepEqual(status, { code: 0, signal: null }, `graceful exit expected; stderr:\n${stderr}`);
  assert.deepEqual(await server.close(), status, 'close() is idempotent');
});

test('launch with connect:false returns no client; the token is usable by hand', { timeout: 60_000 }, async (t) => {
  const dir = await scratch(t, { 'launch_api.py': API_MODULE });
  const server = await launch(python, ['-m', 'igor', 'launch_api:API', '--port', '0', '--token', 'fixed-token-123'], {
    cwd: dir,
    env,
    connect: false,
    stderr: 'ignore',
  });
  t.after(() => server.close());
  assert.equal(server.client, null);
  assert.equal(server.token, 'fixed-token-123');
  assert.equal(server.ready.port, server.port);
  await server.close();
  assert.equal(await isAlive(server.process.pid), false);
});

test('a script that fails to import rejects with the Python traceback', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'broken.py': 'import sys\nprint("starting the broken app")\nimport igor_no_such_module_for_tests\n',
  });
  let forwarded = '';
  const error = await launchFailure(python, ['broken.py'], {
    cwd: dir,
    env,
    stdout: 'ignore',
    stderr: (text) => {
      forwarded += text;
    },
  });
  assert.ok(error instanceof LaunchError, `a LaunchError, got ${error}`);
  assert.equal(error.reason, 'exit');
  assert.equal(error.exitCode, 1);
  assert.match(error.message, /Traceback \(most recent call last\)/);
  assert.match(error.message, /ModuleNotFoundError: No module named 'igor_no_such_module_for_tests'/);
  assert.match(error.output, /starting the broken app/, 'stdout is part of the output too');
  assert.match(forwarded, /ModuleNotFoundError/, 'stderr was forwarded as well');
});

test('python -m igor with a missing module rejects with its message', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {});
  const error = await launchFailure(python, ['-m', 'igor', 'igor_no_such_api_module:API', '--port', '0'], {
    cwd: dir,
    env,
    stderr: 'ignore',
  });
  assert.equal(error.reason, 'exit');
  assert.notEqual(error.exitCode, 0);
  assert.match(error.message, /igor_no_such_api_module/);
});

test('a server that prints nothing is killed after the timeout', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'silent.py': 'import sys, time\nprint("loading something slow", file=sys.stderr, flush=True)\ntime.sleep(60)\n',
  });
  const started = Date.now();
  const error = await launchFailure(python, ['silent.py'], {
    cwd: dir,
    env,
    timeout: 1500,
    stderr: 'ignore',
  });
  const elapsed = Date.now() - started;
  assert.equal(error.reason, 'timeout');
  assert.match(error.message, /no IGOR_READY line within 1500 ms/);
  assert.match(error.message, /loading something slow/);
  assert.ok(elapsed >= 1400 && elapsed < 10_000, `rejected after ${elapsed} ms`);
  assert.equal(error.signal, 'SIGKILL', 'the silent child was killed');
});

test('a program that does not exist rejects with reason "spawn"', { timeout: 10_000 }, async () => {
  const error = await launchFailure('igor-no-such-program-for-tests', [], { stderr: 'ignore' });
  assert.ok(error instanceof LaunchError);
  assert.equal(error.reason, 'spawn');
  assert.match(error.message, /ENOENT/);
  assert.equal(error.cause?.code, 'ENOENT', "spawn's error is the cause");
});

test('a malformed IGOR_READY line rejects with reason "ready-line"', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'bad_ready.py': 'import time\nprint("IGOR_READY {not json", flush=True)\ntime.sleep(60)\n',
  });
  const error = await launchFailure(python, ['bad_ready.py'], { cwd: dir, env, stderr: 'ignore' });
  assert.equal(error.reason, 'ready-line');
  assert.match(error.message, /not valid JSON/);
});

test('a ready line whose server cannot be connected to rejects with reason "connect"', { timeout: 30_000 }, async (t) => {
  // A free port, then closed: nothing listens there when the client tries.
  const { createServer } = await import('node:net');
  const probe = createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise((r) => probe.close(r));
  const dir = await scratch(t, {
    'liar.py': [
      'import json, sys, time',
      `print("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:${port}/", "port": ${port}, "token": "t"}), flush=True)`,
      'sys.stdin.read()',
      '',
    ].join('\n'),
  });
  const error = await launchFailure(python, ['liar.py'], { cwd: dir, env, stderr: 'ignore', timeout: 10_000 });
  assert.equal(error.reason, 'connect');
  assert.match(error.message, new RegExp(`could not connect to ws://127\\.0\\.0\\.1:${port}/`));
  assert.equal(error.signal, 'SIGKILL', 'the child was ended');
});

test('close() escalates to SIGKILL when the child ignores stdin and SIGTERM', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'stubborn.py': [
      'import json, signal, time',
      'signal.signal(signal.SIGTERM, signal.SIG_IGN)',
      'print("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/", "port": 9, "token": None}), flush=True)',
      'time.sleep(60)',
      '',
    ].join('\n'),
  });
  const server = await launch(python, ['stubborn.py'], {
    cwd: dir,
    env,
    connect: false,
    gracePeriod: 1200,
    termDelay: 300,
  });
  assert.equal(server.token, null);
  const started = Date.now();
  const status = await server.close();
  const elapsed = Date.now() - started;
  assert.deepEqual(status, { code: null, signal: 'SIGKILL' });
  assert.ok(elapsed >= 1100 && elapsed < 8000, `killed after ${elapsed} ms`);
  assert.equal(await isAlive(server.process.pid), false);
});

test('the Python child dies when its Node parent is SIGKILLed', { timeout: 60_000 }, async (t) => {
  const dir = await scratch(t, { 'launch_api.py': API_MODULE });
  const parent = spawn(
    process.execPath,
    [path.join(here, 'fixtures', 'parent.mjs'), 'wait', 'connect', python, '-m', 'igor', 'launch_api:API', '--port', '0'],
    { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => parent.kill('SIGKILL'));
  const parentLog = collectStderr(parent);
  const report = JSON.parse(await firstLine(parent, 30_000));
  assert.equal(report.error, undefined, report.error);
  const pid = report.pid;
  assert.equal(await isAlive(pid), true, 'the Python child runs while its parent does');

  // SIGKILL: no 'exit' hook runs in the parent. Only the closed stdin pipe
  // (exit_with_parent in the server) can stop the child now.
  parent.kill('SIGKILL');
  await once(parent, 'exit');
  const gone = await waitGone(pid, 5000);
  if (!gone) process.kill(pid, 'SIGKILL'); // do not leak it into other tests
  assert.ok(gone, `the Python child ${pid} outlived its SIGKILLed parent by 5 s; its log:\n${parentLog()}`);
});

test("a parent's normal exit kills a child that does not watch stdin (exit hook)", { timeout: 60_000 }, async (t) => {
  const dir = await scratch(t, {
    // Deaf to stdin: only the parent's process.on('exit') hook can stop it.
    'deaf.py': [
      'import json, time',
      'print("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/", "port": 9, "token": None}), flush=True)',
      'time.sleep(60)',
      '',
    ].join('\n'),
  });
  const parent = spawn(process.execPath, [path.join(here, 'fixtures', 'parent.mjs'), 'exit', 'noconnect', python, 'deaf.py'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => parent.kill('SIGKILL'));
  const parentLog = collectStderr(parent);
  const report = JSON.parse(await firstLine(parent, 30_000));
  assert.equal(report.error, undefined, report.error);
  await once(parent, 'exit');
  const gone = await waitGone(report.pid, 5000);
  if (!gone) process.kill(report.pid, 'SIGKILL');
  assert.ok(gone, `the Python child ${report.pid} outlived its parent's normal exit by 5 s; its log:\n${parentLog()}`);
});

test('killOnExit: false leaves the child running when the parent exits normally', { timeout: 60_000 }, async (t) => {
  const dir = await scratch(t, { 'deaf.py': ['import json, time', READY_9, 'time.sleep(60)', ''].join('\n') });
  const parent = spawn(process.execPath, [path.join(here, 'fixtures', 'parent.mjs'), 'exit', 'noconnect', python, 'deaf.py'], {
    cwd: dir,
    env: { ...env, IGOR_TEST_KILL_ON_EXIT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => parent.kill('SIGKILL'));
  const report = JSON.parse(await firstLine(parent, 30_000));
  assert.equal(report.error, undefined, report.error);
  t.after(() => {
    try {
      process.kill(-report.pid, 'SIGKILL');
    } catch {
      // gone
    }
  });
  await once(parent, 'exit');
  // No event says "no signal came": the hook, had it run, signalled the child
  // before the parent's exit seen here, and SIGTERM's default action takes
  // far less than the half second the child is watched for.
  assert.equal(await waitGone(report.pid, 500), false, 'the child outlives its parent, as asked');
});

// A wrapper (a shell script, `uv run`, `poetry run`) between launch() and
// Python: the Python grandchild must not outlive close() or a failed launch.
const posixOnly = process.platform === 'win32' ? 'POSIX shell wrapper' : false;

test('a failed launch through a wrapper script leaves no Python grandchild running', { timeout: 30_000, skip: posixOnly }, async (t) => {
  const dir = await scratch(t, {
    'sleepy.py': 'import os, sys, time\nprint("GRANDCHILD", os.getpid(), file=sys.stderr, flush=True)\ntime.sleep(60)\n',
  });
  const error = await launchFailure('sh', ['-c', `"${python}" sleepy.py; echo wrapper-done`], {
    cwd: dir,
    env,
    timeout: 1500,
    stderr: 'ignore',
  });
  assert.equal(error.reason, 'timeout');
  const pid = Number(/GRANDCHILD (\d+)/.exec(error.output)?.[1]);
  assert.ok(pid > 0, `the grandchild told its pid: ${error.output}`);
  const gone = await waitGone(pid, 3000);
  if (!gone) process.kill(pid, 'SIGKILL');
  assert.ok(gone, `the Python grandchild ${pid} survived the failed launch of its wrapper`);
});

test('close() ends the Python grandchild of a wrapper script, even one that ignores stdin and SIGTERM', { timeout: 30_000, skip: posixOnly }, async (t) => {
  const dir = await scratch(t, {
    'stubborn.py': [
      'import json, os, signal, time',
      'signal.signal(signal.SIGTERM, signal.SIG_IGN)',
      'print("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/", "port": 9, "token": None, "pid": os.getpid()}), flush=True)',
      'time.sleep(60)',
      '',
    ].join('\n'),
  });
  // The shell dies of the SIGTERM; its Python child ignores it and stays.
  const server = await launch('sh', ['-c', `"${python}" stubborn.py; echo wrapper-done`], {
    cwd: dir,
    env,
    connect: false,
    gracePeriod: 1200,
    termDelay: 300,
  });
  const pid = server.ready.pid;
  assert.notEqual(pid, server.process.pid, 'python runs as a grandchild');
  t.after(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as expected
    }
  });
  assert.equal(await isAlive(pid), true);
  await server.close();
  assert.equal(await isAlive(server.process.pid), false, 'the wrapper is gone');
  assert.equal(await isAlive(pid), false, 'the Python grandchild is gone once close() resolves');
});

test('stdout reaches its target without the ready line, before and after it; a throwing stderr logger changes nothing', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'chatty.py': [
      'import json, sys',
      'print("to stderr", file=sys.stderr, flush=True)',
      'sys.stdout.write("before 1\\nbefore 2\\n")',
      'sys.stdout.write("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/", "port": 9, "extra": [1, 2]}) + "\\nafter, same write\\n")',
      'sys.stdout.flush()',
      'print("later", flush=True)',
      'sys.stdin.read()',
      '',
    ].join('\n'),
  });
  let stdout = '';
  let sawLater;
  const later = new Promise((resolve) => {
    sawLater = resolve;
  });
  const server = await launch(python, ['chatty.py'], {
    cwd: dir,
    env,
    connect: false,
    stdout: (text) => {
      stdout += text;
      if (stdout.includes('later\n')) sawLater();
    },
    stderr: () => {
      throw new Error('a broken logger');
    },
  });
  t.after(() => server.close());
  assert.deepEqual(server.ready.extra, [1, 2], 'fields this module does not know are kept');
  await within(10_000, later, 'the line printed after the ready line');
  assert.equal(stdout, 'before 1\nbefore 2\nafter, same write\nlater\n');
  assert.deepEqual(await server.close(), { code: 0, signal: null }, 'it ended on the closed stdin');
});

test('PYTHONUNBUFFERED=1 is added to the environment unless it is there', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'env_ready.py': [
      'import json, os, sys',
      'print("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/", "port": 9, "unbuffered": os.environ.get("PYTHONUNBUFFERED")}), flush=True)',
      'sys.stdin.read()',
      '',
    ].join('\n'),
  });
  const { PYTHONUNBUFFERED: _ignored, ...without } = env;
  for (const [given, expected] of [[without, '1'], [{ ...without, PYTHONUNBUFFERED: 'kept' }, 'kept']]) {
    const server = await launch(python, ['env_ready.py'], { cwd: dir, env: given, connect: false, stderr: 'ignore' });
    await server.close();
    assert.equal(server.ready.unbuffered, expected);
  }
});

test('a ready line without "url" or "port" rejects with reason "ready-line"', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'no_port.py': 'import json, time\nprint("IGOR_READY " + json.dumps({"url": "ws://127.0.0.1:9/"}), flush=True)\ntime.sleep(60)\n',
  });
  const error = await launchFailure(python, ['no_port.py'], { cwd: dir, env, stderr: 'ignore' });
  assert.equal(error.reason, 'ready-line');
  assert.match(error.message, /lacks "url" or "port"/);
  assert.equal(error.signal, 'SIGKILL', 'the child was ended');
});

test('a token in the client options is used instead of the ready line\'s', { timeout: 60_000 }, async (t) => {
  const dir = await scratch(t, { 'launch_api.py': API_MODULE });
  const error = await launchFailure(python, ['-m', 'igor', 'launch_api:API', '--port', '0', '--token', 'the-right-token'], {
    cwd: dir,
    env,
    stderr: 'ignore',
    client: { token: 'a-wrong-token', WebSocket },
  });
  assert.equal(error.reason, 'connect');
  assert.ok(error.cause instanceof IgorError, `the client's error is the cause: ${error.cause}`);
  assert.equal(error.cause.code, 401, 'the server refused the wrong token');
});

test('a server that exits after its ready line, while the client connects, rejects with reason "exit"', { timeout: 30_000 }, async (t) => {
  // The "server" is a TCP socket here that accepts and never answers the
  // handshake; when the client reaches it, the child is told to exit.
  const { createServer } = await import('node:net');
  const sockets = [];
  const control = createServer((socket) => sockets.push(socket));
  const told = once(control, 'connection');
  const silent = createServer((socket) => {
    sockets.push(socket);
    void told.then(([child]) => child.write('x'));
  });
  for (const server of [control, silent]) await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    control.close();
    silent.close();
  });
  const dir = await scratch(t, {
    'quitter.py': [
      'import json, socket, sys',
      'port, control = int(sys.argv[1]), int(sys.argv[2])',
      'told = socket.create_connection(("127.0.0.1", control))',
      'print("IGOR_READY " + json.dumps({"url": f"ws://127.0.0.1:{port}/", "port": port}), flush=True)',
      'told.recv(1)',
      'sys.exit(3)',
      '',
    ].join('\n'),
  });
  const error = await launchFailure(python, ['quitter.py', String(silent.address().port), String(control.address().port)], {
    cwd: dir,
    env,
    stderr: 'ignore',
    client: { WebSocket },
  });
  assert.equal(error.reason, 'exit');
  assert.match(error.message, /exited with code 3 before it could be connected to/);
  assert.equal(error.exitCode, 3);
});

test('termDelay 0 sends SIGTERM as soon as stdin is closed', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, { 'deaf.py': ['import json, time', READY_9, 'time.sleep(60)', ''].join('\n') });
  const server = await launch(python, ['deaf.py'], { cwd: dir, env, connect: false, termDelay: 0, gracePeriod: 10_000 });
  t.after(() => server.close());
  const started = Date.now();
  const status = await server.close();
  const elapsed = Date.now() - started;
  assert.deepEqual(status, { code: null, signal: 'SIGTERM' });
  // The default termDelay (1000 ms) would be the other way to get a SIGTERM.
  assert.ok(elapsed < 900, `SIGTERM came after ${elapsed} ms`);
});

test('exited resolves when the server dies by itself, and close() then reports that end', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, { 'deaf.py': ['import json, time', READY_9, 'time.sleep(60)', ''].join('\n') });
  const server = await launch(python, ['deaf.py'], { cwd: dir, env, connect: false });
  t.after(() => server.close());
  process.kill(server.process.pid, 'SIGTERM');
  const status = await within(10_000, server.exited, 'exited');
  assert.deepEqual(status, { code: null, signal: 'SIGTERM' });
  assert.deepEqual(await server.close(), status);
});

test('LaunchError.output keeps the last 64 KiB of a chatty failure', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, {
    'chatty_failure.py': 'import sys\nsys.stderr.write("x" * 100_000)\nsys.stderr.write("THE END\\n")\nsys.exit(1)\n',
  });
  const error = await launchFailure(python, ['chatty_failure.py'], { cwd: dir, env, stderr: 'ignore' });
  assert.equal(error.reason, 'exit');
  assert.equal(error.output.length, 64 * 1024);
  assert.ok(error.output.endsWith('xxxTHE END\n'), 'the end is what is kept');
  assert.match(error.message, /THE END$/);
});

test('LaunchError is an IgorError (code 0, type "LaunchFailed") that keeps its own fields', { timeout: 30_000 }, async (t) => {
  const dir = await scratch(t, { 'fails.py': 'import sys\nprint("no luck", file=sys.stderr)\nsys.exit(2)\n' });
  const error = await launchFailure(python, ['fails.py'], { cwd: dir, env, stderr: 'ignore' });
  assert.ok(error instanceof IgorError, 'one instanceof IgorError check covers launches too');
  assert.ok(error instanceof LaunchError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'LaunchError');
  assert.equal(error.code, 0);
  assert.equal(error.type, 'LaunchFailed');
  assert.equal(error.reason, 'exit');
  assert.equal(error.exitCode, 2);
  assert.equal(error.signal, null);
  assert.equal(error.output, 'no luck\n');
  assert.match(error.message, /exited with code 2 before printing its IGOR_READY line\n--- server output ---\nno luck$/);
  assert.match(error.stack, /^LaunchError: /);
});
