// Options from partysocket and socket.io-client: connectTimeout, autoConnect:
// false with connect(), reopening after close(); and misuse thrown as TypeError.
import assert from 'node:assert/strict';
import { connect as tcpConnect, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { IgorClient, IgorError } from '../dist/index.js';
import { nextPush, startServer, statusReached, trackingWebSocket, within } from './helpers.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

/**
 * A TCP proxy to the fixture server on an ephemeral port. `modes` says what
 * the n-th connection gets ('pass' for the ones past the list):
 * - 'blackhole': accepted, never answered (a wedged server or proxy);
 * - 'upgrade-only': the client's first chunk (its HTTP upgrade) goes through,
 *   then nothing more from the client does, so the handshake completes but
 *   the introduction is never answered;
 * - 'pass': both ways.
 */
async function proxy(modes) {
  const sockets = new Set();
  let n = 0;
  const seen = [];
  const listener = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const mode = modes[n++] ?? 'pass';
    seen.push(mode);
    if (mode === 'blackhole') return;
    const upstream = tcpConnect(server.port, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    let first = true;
    client.on('data', (chunk) => {
      if (mode === 'upgrade-only' && !first) return;
      first = false;
      upstream.write(chunk);
    });
  });
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${listener.address().port}/`,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        listener.close(resolve);
      }),
  };
}

describe('connectTimeout', () => {
  it('abandons an opening handshake that gets no answer, and with reconnect retries it', async () => {
    const hop = await proxy(['blackhole']);
    const client = new IgorClient(hop.url, { WebSocket, connectTimeout: 300, reconnect: { initialDelay: 10, maxDelay: 10 } });
    try {
      const event = await within(5000, statusReached(client, 'reconnecting'), 'the first attempt given up');
      assert.equal(event.attempt, 1);
      assert.ok(event.error instanceof IgorError);
      assert.equal(event.error.type, 'ConnectionFailed');
      assert.match(event.error.message, /no answer to the opening handshake within 300 ms \(connectTimeout\)/);
      await within(5000, client.ready, 'ready on the retry');
      assert.equal(await client.call('hello', { name: 'retry' }), 'Hello retry');
      assert.deepEqual(hop.seen, ['blackhole', 'pass']);
    } finally {
      client.close();
      await hop.close();
    }
  });

  it('without reconnect, fails ready and the calls that waited', async () => {
    const hop = await proxy(['blackhole']);
    const client = new IgorClient(hop.url, { WebSocket, connectTimeout: 200 });
    try {
      const waiting = client.call('hello', { name: 'x' });
      const error = await within(5000, client.ready.then(() => null, (e) => e), 'ready');
      assert.equal(error.type, 'ConnectionFailed');
      assert.match(error.message, /connectTimeout/);
      await assert.rejects(waiting, (e) => e instanceof IgorError && e.type === 'ConnectionFailed');
      assert.equal(client.status, 'closed');
    } finally {
      client.close();
      await hop.close();
    }
  });

  it('counts the introduction too: an unanswered introduce_self is abandoned and retried', async () => {
    const hop = await proxy(['upgrade-only']);
    const client = new IgorClient(hop.url, { WebSocket, clientId: 'slow-intro', connectTimeout: 300, reconnect: { initialDelay: 10 } });
    try {
      const event = await within(5000, statusReached(client, 'reconnecting'), 'the first attempt given up');
      assert.match(event.error.message, /no answer to its introduction within 300 ms/);
      await within(5000, client.ready, 'ready on the retry');
      assert.equal(await client.call('whoami'), 'slow-intro');
    } finally {
      client.close();
      await hop.close();
    }
  });

  it('does not cut a connection that opened in time', async () => {
    const client = new IgorClient(server.url, { WebSocket, connectTimeout: 5000 });
    try {
      await within(5000, client.ready, 'ready');
      // Streams outlive the limit: it bounds the opening only.
      assert.equal(await client.call('jobs.count', { n: 3 }), 2);
    } finally {
      client.close();
    }
  });
});

describe('autoConnect: false', () => {
  it('opens nothing until connect(); calls made before then wait and go out', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked, autoConnect: false, clientId: 'lazy-window' });
    const other = new IgorClient(server.url, { WebSocket });
    try {
      assert.equal(client.status, 'closed');
      const early = client.call('whoami');
      let settled = false;
      early.then(() => (settled = true), () => (settled = true));
      // A round trip on another client lets any connection the first one opened get under way.
      assert.equal(await within(5000, other.call('hello', { name: 'meanwhile' }), 'other'), 'Hello meanwhile');
      assert.equal(sockets.length, 0, 'no socket before connect()');
      assert.equal(settled, false, 'the early call waits');
      assert.equal(client.status, 'closed');

      const opening = client.connect();
      assert.equal(client.status, 'connecting');
      assert.equal(client.connect(), opening, 'a second connect() while connecting does nothing more');
      await within(5000, opening, 'connect()');
      assert.equal(client.status, 'open');
      assert.equal(await within(5000, early, 'the early call'), 'lazy-window');
      await client.connect(); // open already: nothing happens
      assert.equal(sockets.length, 1);
    } finally {
      client.close();
      other.close();
    }
  });
});

describe('reopening after close()', () => {
  it('connect() after close() gives a working client with its listeners and exposed functions', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked });
    const statuses = [];
    client.onStatus((event) => statuses.push(event.status));
    client.expose('still_here', () => 'yes');
    try {
      await within(5000, client.ready, 'ready');
      client.close();
      assert.equal(client.status, 'closed');
      await assert.rejects(client.call('hello', { name: 'x' }), (e) => e instanceof IgorError && e.type === 'ConnectionClosed');
      await assert.rejects(client.ready, (e) => e.type === 'ConnectionClosed');

      await within(5000, client.connect(), 'reopened');
      assert.equal(client.status, 'open');
      assert.equal(sockets.length, 2, 'a new socket');
      await client.ready; // a new promise, resolved
      assert.equal(await client.call('hello', { name: 'again' }), 'Hello again');
      assert.deepEqual(await within(5000, client.call('ask_client', { name: 'still_here' }), 'exposed'), { result: 'yes' });
      await within(5000, nextPush(client, 'tick'), 'pushes reach listeners again');
      assert.deepEqual(statuses.slice(0, 4), ['open', 'closed', 'connecting', 'open']);
    } finally {
      client.close();
    }
  });

  it('connect() after the connection was lost for good (no reconnect) opens it again', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked });
    try {
      await within(5000, client.ready, 'ready');
      const closed = statusReached(client, 'closed');
      sockets.at(-1).terminate();
      const event = await within(5000, closed, 'closed');
      assert.equal(event.error.type, 'ConnectionClosed');
      await within(5000, client.connect(), 'reopened');
      assert.deepEqual(await client.call('echo', [1, 2]), [1, 2]);
      assert.equal(client.status, 'open');
    } finally {
      client.close();
    }
  });
});

describe('misuse throws a native TypeError that names what is wrong', () => {
  const isTypeError = (pattern) => (e) => e instanceof TypeError && !(e instanceof IgorError) && pattern.test(e.message);

  it('in the constructor: the url, and each option of the wrong type', () => {
    assert.throws(() => new IgorClient(5678), isTypeError(/IgorClient: url must be a non-empty string.*got 5678/));
    assert.throws(() => new IgorClient(server.url, 'token'), isTypeError(/options must be an object/));
    const bad = {
      token: 42,
      tokenIn: 'header',
      clientId: { id: 1 },
      reconnect: 'yes',
      timeout: '5000',
      maxQueuedBytes: -1,
      maxStreamBuffer: 0,
      connectTimeout: 0,
      autoConnect: 'false',
      WebSocket: 'ws',
    };
    for (const [name, value] of Object.entries(bad)) {
      assert.throws(() => new IgorClient(server.url, { autoConnect: false, [name]: value }), isTypeError(new RegExp(`options\\.${name} must be`)), name);
    }
    assert.throws(() => new IgorClient(server.url, { reconnect: { initialDelay: '10' } }), isTypeError(/options\.reconnect\.initialDelay must be/));
    assert.throws(() => new IgorClient(server.url, { reconnect: { jitter: 2 } }), isTypeError(/options\.reconnect\.jitter must be a number from 0 to 1, got 2/));
  });

  it('in calls, listeners, expose and sendToProcess; a bad call makes no stream and leaves the client usable', async () => {
    const client = new IgorClient(server.url, { WebSocket });
    try {
      await within(5000, client.ready, 'ready');
      assert.throws(() => client.stream(42), isTypeError(/stream: the action must be a non-empty string.*got 42/));
      await assert.rejects(client.call(''), isTypeError(/call: the action must be a non-empty string/));
      await assert.rejects(client.call('hello', { name: 'x' }, { timeout: '10' }), isTypeError(/options\.timeout must be a non-negative number, got "10"/));
      await assert.rejects(client.call('hello', { name: 'x' }, { signal: {} }), isTypeError(/options\.signal must be an AbortSignal/));
      await assert.rejects(client.call('hello', { name: 'x' }, 'fast'), isTypeError(/options must be an object/));
      assert.throws(() => client.on(null, () => {}), isTypeError(/on: the name must be/));
      assert.throws(() => client.on('tick', 'listener'), isTypeError(/listener must be a function or an observer/));
      assert.throws(() => client.onStatus(null), isTypeError(/onStatus: the listener must be a function/));
      assert.throws(() => client.onError(1), isTypeError(/onError: the listener must be a function/));
      assert.throws(() => client.expose('f', {}), isTypeError(/fn must be a function, got an object/));
      assert.throws(() => client.sendToProcess(null), isTypeError(/process id must be a non-empty string/));
      assert.equal(await client.call('hello', { name: 'after' }), 'Hello after');
    } finally {
      client.close();
    }
  });
});
