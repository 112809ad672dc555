import { existsSync } from 'node:fs';
// Shared by the *.test.mjs files: start the real Python fixture server, and
// bounded waits. Not a test file itself (npm test runs test/*.test.mjs).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const FIXTURE = fileURLToPath(new URL('./fixture_server.py', import.meta.url));
export const PYTHON = process.env.PYTHON || 'python3';
// The repository root on PYTHONPATH: the tests run without `pip install -e .` (websocket-server is still needed).
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PYTHONPATH = [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(delimiter);

/**
 * Start fixture_server.py and resolve with { url, port, token, child, stop }
 * once it prints its IGOR_READY line (at most `timeout` ms). `pingInterval`,
 * `pingTimeout`: the server's heartbeat, in seconds (20 and 20 by default);
 * `sendTimeout`: how long its backlog for a client may stand still (10).
 */
export function startServer({ token, staticDir, debug = false, timeout = 20000, pingInterval, pingTimeout, sendTimeout } = {}) {
  const args = [FIXTURE];
  if (token) args.push('--token', token);
  if (staticDir) args.push('--static', staticDir);
  if (debug) args.push('--debug');
  if (pingInterval !== undefined) args.push('--ping-interval', String(pingInterval));
  if (pingTimeout !== undefined) args.push('--ping-timeout', String(pingTimeout));
  if (sendTimeout !== undefined) args.push('--send-timeout', String(sendTimeout));
  const child = spawn(PYTHON, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PYTHONPATH, PYTHONUNBUFFERED: '1' } });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(killer);
        resolve();
      });
      child.stdin.end(); // exit_with_parent: EOF on stdin shuts the server down
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fixture server printed no IGOR_READY line within ${timeout} ms; stderr:\n${stderr}`));
    }, timeout);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fixture server exited with ${code} before IGOR_READY; stderr:\n${stderr}`));
    });
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (!line.startsWith('IGOR_READY ')) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      const info = JSON.parse(line.slice('IGOR_READY '.length));
      resolve({ ...info, child, stop, stderr: () => stderr });
    });
  });
}

/** Reject with a clear message if `promise` has not settled within `ms`. */
export function within(ms, promise, what = 'operation') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Resolve once `condition()` is true, looking every few ms; reject after `ms`.
 * For states that fire no event (a stream's buffered bytes, a paused socket).
 */
export async function until(condition, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Resolve with the first status event of `client` whose status is `status`. */
export function statusReached(client, status) {
  return new Promise((resolve) => {
    if (client.status === status) return resolve({ status, attempt: 0 });
    const off = client.onStatus((event) => {
      if (event.status === status) {
        off();
        resolve(event);
      }
    });
  });
}

/** Resolve with the next push `name` (by push name or process id) that `client` receives. */
export function nextPush(client, name, predicate = () => true) {
  return new Promise((resolve) => {
    const off = client.on(name, (data, push) => {
      if (!predicate(data, push)) return;
      off();
      resolve({ data, push });
    });
  });
}

/**
 * A `ws` WebSocket class that remembers its instances, so a test can cut the
 * current connection abruptly with `sockets.at(-1).terminate()`.
 */
export function trackingWebSocket() {
  const sockets = [];
  class Tracked extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  return { WebSocket: Tracked, sockets };
}

/**
 * A fake WebSocket class for tests without a server. `behaviour`:
 * - 'open' (default): opens on the next microtask and records what is sent;
 * - 'error-only': fires 'error' and never 'close' (Node's built-in WebSocket on a refused handshake);
 * - 'error-then-close': fires 'error', then 'close' (code 1006) on the next tick.
 * `sockets` holds the instances, each with `url`, `protocols` and `sent` (parsed messages).
 */
export function fakeWebSocket(behaviour = 'open') {
  const sockets = [];
  class Fake {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.readyState = 0;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      sockets.push(this);
      queueMicrotask(() => {
        if (this.readyState === 3 || behaviour === 'hang') return; // 'hang': connecting until open() is called
        if (behaviour === 'open') {
          this.open();
          return;
        }
        this.readyState = 3;
        this.onerror?.({ message: 'connect ECONNREFUSED (fake)' });
        if (behaviour === 'error-then-close') setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 0);
      });
    }
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close() {
      this.readyState = 3;
    }
  }
  return { WebSocket: Fake, sockets };
}

/** Debian's Chromium, or the one in $CHROMIUM_PATH. */
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/**
 * Launch headless Chromium with playwright-core. Fails (never skips) when the
 * binary is missing: CI installs it. The flags keep Chromium off the network,
 * which this machine refuses anyway.
 */
export async function launchChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
