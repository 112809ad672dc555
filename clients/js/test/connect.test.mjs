// Connection failures and ordering, mostly without a server (fake WebSocket
// classes): bad URLs, sockets that only fire 'error', unhandled stream errors,
// the order of queued calls, and a 409 on the first introduction.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { IgorClient, IgorError } from '../dist/index.js';
import { fakeWebSocket, startServer, within } from './helpers.mjs';

const settle = (ms = 50) => new Promise((resolve) => setTimeout(resolve, ms));

function statuses(client) {
  const seen = [];
  client.onStatus((e) => seen.push(e.status));
  return seen;
}

describe('a URL that cannot be used', () => {
  it('a relative URL with the token in the query rejects ready (no unhandled rejection), even with reconnect', async () => {
    const unhandled = [];
    const onUnhandled = (e) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const { WebSocket: Fake, sockets } = fakeWebSocket();
      const client = new IgorClient('/socket', { WebSocket: Fake, token: 'a b', reconnect: { initialDelay: 10 } });
      const seen = statuses(client);
      const error = await within(1000, client.ready.then(() => null, (e) => e), 'ready');
      assert.ok(error instanceof IgorError);
      assert.equal(error.type, 'ConnectionFailed');
      assert.match(error.message, /\/socket/);
      await assert.rejects(client.call('x'), (e) => e.type === 'ConnectionFailed');
      await settle();
      assert.equal(client.status, 'closed');
      assert.deepEqual(seen, ['closed'], 'not retried');
      assert.equal(sockets.length, 0);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a relative URL is resolved against location.href when there is one (a page)', async () => {
    const had = 'location' in globalThis;
    globalThis.location = { href: 'http://127.0.0.1:5678/app/index.html' };
    try {
      const { WebSocket: Fake, sockets } = fakeWebSocket();
      const client = new IgorClient('/socket', { WebSocket: Fake, token: 'a b' });
      await within(1000, client.ready, 'ready');
      client.close();
      assert.equal(sockets[0].url, 'http://127.0.0.1:5678/socket?token=a+b');
    } finally {
      if (!had) delete globalThis.location;
    }
  });

  it('a URL the WebSocket constructor refuses is not retried, even with reconnect', async () => {
    const client = new IgorClient('localhost:5678', { WebSocket, reconnect: { initialDelay: 10, maxDelay: 20 } });
    const seen = statuses(client);
    const error = await within(1000, client.ready.then(() => null, (e) => e), 'ready');
    assert.equal(error.type, 'ConnectionFailed');
    await settle(200);
    assert.deepEqual(seen, ['closed']);
    assert.equal(client.status, 'closed');
  });
});

describe("a WebSocket that fires 'error' but never 'close'", () => {
  it('rejects ready without reconnect', async () => {
    const { WebSocket: Fake } = fakeWebSocket('error-only');
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    const error = await within(1000, client.ready.then(() => null, (e) => e), 'ready');
    assert.ok(error instanceof IgorError);
    assert.equal(error.type, 'ConnectionFailed');
    assert.match(error.message, /ECONNREFUSED/);
    assert.equal(client.status, 'closed');
  });

  it('retries with reconnect, then gives up after maxAttempts', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket('error-only');
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake, reconnect: { initialDelay: 5, maxAttempts: 2 } });
    const error = await within(2000, client.ready.then(() => null, (e) => e), 'ready');
    assert.equal(error.type, 'ConnectionFailed');
    assert.equal(sockets.length, 3);
  });

  it("an 'error' followed by 'close' counts as one failure", async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket('error-then-close');
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake, reconnect: { initialDelay: 30, maxAttempts: 1 } });
    const seen = statuses(client);
    await within(2000, client.ready.catch(() => {}), 'ready');
    await settle(100);
    assert.deepEqual(seen, ['reconnecting', 'connecting', 'closed']);
    assert.equal(sockets.length, 2);
  });
});

/** The server side goes away: an abnormal close, as a browser reports it. */
function drop(socket) {
  socket.readyState = 3;
  socket.onclose?.({ code: 1006, reason: '' });
}

describe('a stream error nobody handles', () => {
  it('goes to onError instead of being thrown (a subscriber without an error callback, then a drop)', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    await within(1000, client.ready, 'ready');
    const reported = [];
    client.onError((e) => reported.push(e));
    const values = [];
    client.stream('progress').subscribe((v) => values.push(v));
    drop(sockets[0]);
    await settle();
    assert.equal(reported.length, 1);
    assert.equal(reported[0].type, 'ConnectionClosed');
    assert.equal(reported[0].action, 'progress');
  });

  it('goes to console.warn when there is no onError listener', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    await within(1000, client.ready, 'ready');
    const warned = [];
    const warn = console.warn;
    console.warn = (...args) => warned.push(args.join(' '));
    try {
      client.stream('progress').subscribe(() => {});
      drop(sockets[0]);
      await settle();
    } finally {
      console.warn = warn;
    }
    assert.equal(warned.length, 1);
    assert.match(warned[0], /progress/);
  });

  it("is not reported when the client's own close() ended the stream", async () => {
    const { WebSocket: Fake } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    await within(1000, client.ready, 'ready');
    const reported = [];
    client.onError((e) => reported.push(e));
    client.stream('progress').subscribe(() => {});
    client.close();
    await settle();
    assert.deepEqual(reported, []);
  });
});

describe('order of calls', () => {
  it("calls queued before the connection go out before a call made in an 'open' listener", async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    client.call('first-queued').catch(() => {});
    client.call('second-queued').catch(() => {});
    client.onStatus((e) => {
      if (e.status === 'open') client.call('made-in-open-listener').catch(() => {});
    });
    client.ready.then(() => client.call('made-after-ready').catch(() => {}));
    await within(1000, client.ready, 'ready');
    await settle(10);
    client.close();
    assert.deepEqual(
      sockets[0].sent.map((m) => m.action),
      ['first-queued', 'second-queued', 'made-in-open-listener', 'made-after-ready'],
    );
  });
});

describe('clientId taken on the first introduction (409)', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  it('rejects ready with the 409 even with reconnect on, instead of retrying forever', async () => {
    const holder = new IgorClient(server.url, { WebSocket, clientId: 'taken-window' });
    try {
      await within(5000, holder.ready, 'holder ready');
      const second = new IgorClient(server.url, { WebSocket, clientId: 'taken-window', reconnect: { initialDelay: 10 } });
      const error = await within(5000, second.ready.then(() => null, (e) => e), 'second ready');
      assert.ok(error instanceof IgorError);
      assert.equal(error.code, 409);
      assert.equal(second.status, 'closed');
      // The holder is untouched.
      assert.equal(await holder.call('whoami'), 'taken-window');
    } finally {
      holder.close();
    }
  });
});
