// Introduction, connection drops, reconnection with session hand-back.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
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

/** A port nothing listens on. */
function deadPort() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

describe('introduce', () => {
  it('introduces the connection under clientId before ready', async () => {
    const client = new IgorClient(server.url, { WebSocket, clientId: 'intro-window' });
    try {
      await within(5000, client.ready, 'ready');
      assert.equal(await client.call('whoami'), 'intro-window');
      assert.equal(client.clientId, 'intro-window');
    } finally {
      client.close();
    }
  });

  it('calls made before ready wait for the introduction', async () => {
    const client = new IgorClient(server.url, { WebSocket, clientId: 'eager-window' });
    try {
      // Sent before the socket is even open: must run as eager-window.
      assert.equal(await within(5000, client.call('whoami'), 'whoami'), 'eager-window');
    } finally {
      client.close();
    }
  });

  it('rejects ready with 409 ClientIdTaken when the id is in use (no reconnect)', async () => {
    const first = new IgorClient(server.url, { WebSocket, clientId: 'taken' });
    try {
      await within(5000, first.ready, 'first ready');
      const second = new IgorClient(server.url, { WebSocket, clientId: 'taken' });
      const pending = second.call('whoami');
      const error = await within(5000, second.ready.then(() => null, (e) => e), 'second ready');
      assert.ok(error instanceof IgorError);
      assert.equal(error.code, 409);
      assert.equal(error.type, 'ClientIdTaken');
      assert.match(error.message, /taken/);
      assert.equal(second.status, 'closed');
      await assert.rejects(pending, (e) => e instanceof IgorError);
    } finally {
      first.close();
    }
  });
});

describe('connection drop', () => {
  it('without reconnect: in-flight calls fail clearly and the client closes', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked });
    await within(5000, client.ready, 'ready');
    const inFlight = client.call('jobs.slow', { delay: 0.05 });
    const closed = statusReached(client, 'closed');
    sockets.at(-1).terminate();
    const error = await within(5000, inFlight.then(() => null, (e) => e), 'in-flight call');
    assert.ok(error instanceof IgorError);
    assert.equal(error.type, 'ConnectionClosed');
    assert.equal(error.code, 0);
    assert.match(error.message, /jobs\.slow.*closed.*not sent again/);
    const event = await within(5000, closed, 'closed status');
    assert.equal(event.error.type, 'ConnectionClosed');
    await assert.rejects(client.call('hello', { name: 'x' }), (e) => e.type === 'ConnectionClosed');
    await assert.rejects(client.ready, (e) => e.type === 'ConnectionClosed');
  });

  it('with reconnect: session handed back, listeners kept, in-flight call failed, new calls work', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, {
      WebSocket: Tracked,
      clientId: 'main-window',
      reconnect: { initialDelay: 50, maxDelay: 500 },
    });
    const statuses = [];
    client.onStatus((event) => statuses.push(event.status));
    try {
      await within(5000, client.ready, 'ready');
      assert.equal(await client.call('session.set', { key: 'answer', value: 42 }), true);

      let ticks = 0;
      client.on('tick', () => ticks++);
      const targeted = [];
      client.on('for-main', (data) => targeted.push(data));
      await within(5000, nextPush(client, 'tick'), 'tick before the drop');

      const inFlight = client.call('jobs.slow', { delay: 0.05 });
      const reconnecting = statusReached(client, 'reconnecting');
      sockets.at(-1).terminate();

      const error = await within(5000, inFlight.then(() => null, (e) => e), 'in-flight call');
      assert.ok(error instanceof IgorError);
      assert.equal(error.type, 'ConnectionClosed');
      const event = await within(5000, reconnecting, 'reconnecting');
      assert.equal(event.attempt, 1);
      assert.ok(event.delay >= 0 && event.delay <= 50);
      assert.equal(event.error.type, 'ConnectionClosed');

      // Made while reconnecting: waits for the new connection, then runs once.
      const during = client.call('hello', { name: 'during' });
      await within(10000, client.ready, 'ready again');
      assert.equal(await within(5000, during, 'call made while reconnecting'), 'Hello during');
      assert.ok(sockets.length >= 2, 'a new socket was opened');

      assert.equal(await client.call('whoami'), 'main-window');
      assert.equal(await client.call('session.get', { key: 'answer' }), 42, 'the session came back');

      const before = ticks;
      await within(5000, nextPush(client, 'tick'), 'tick after the reconnect');
      assert.ok(ticks > before, 'the listener registered before the drop still runs');

      const pushed = nextPush(client, 'for-main');
      await client.call('notify', { action: 'for-main', data: 'hi again' });
      await within(5000, pushed, 'targeted push after reconnect');
      assert.deepEqual(targeted, ['hi again']);

      assert.deepEqual(statuses.slice(0, 3), ['open', 'reconnecting', 'connecting']);
      assert.equal(statuses.at(-1), 'open');
    } finally {
      client.close();
    }
  });

  it('survives several drops in a row', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked, clientId: 'flaky', reconnect: { initialDelay: 10 } });
    try {
      await within(5000, client.ready, 'ready');
      await client.call('session.set', { key: 'n', value: 0 });
      for (let i = 1; i <= 3; i++) {
        const reconnecting = statusReached(client, 'reconnecting');
        sockets.at(-1).terminate();
        await within(5000, reconnecting, 'reconnecting');
        await within(10000, client.ready, `ready after drop ${i}`);
        const n = await client.call('session.get', { key: 'n' });
        await client.call('session.set', { key: 'n', value: n + 1 });
      }
      assert.equal(await client.call('session.get', { key: 'n' }), 3);
    } finally {
      client.close();
    }
  });
});

/**
 * A `ws` WebSocket class that keeps, per socket, what the client sent and
 * what the server answered (parsed), and lets a test cut it with terminate().
 */
function recordingWebSocket() {
  const sockets = [];
  class Recording extends WebSocket {
    constructor(...args) {
      super(...args);
      this.sentMessages = [];
      this.received = [];
      this.on('message', (data) => this.received.push(JSON.parse(data.toString())));
      sockets.push(this);
    }
    send(text, ...rest) {
      this.sentMessages.push(JSON.parse(text));
      return super.send(text, ...rest);
    }
  }
  return { WebSocket: Recording, sockets };
}

/** The introduce_self a socket sent, and the secret the server answered it with. */
function introduction(socket) {
  const sent = socket.sentMessages.find((m) => m.action === 'introduce_self');
  const answer = socket.received.find((m) => m.streamId === sent?.streamId && m.data);
  return { sent, secret: answer?.data?.resume };
}

describe('session resume secret', () => {
  it('is kept from each introduction and presented on the automatic reconnect, which keeps the session', async () => {
    const { WebSocket: Recording, sockets } = recordingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Recording, clientId: 'resume-window', reconnect: { initialDelay: 10 } });
    try {
      await within(5000, client.ready, 'ready');
      await client.call('session.set', { key: 'k', value: 'v' });
      const first = introduction(sockets[0]);
      assert.deepEqual(first.sent.data, { client_id: 'resume-window' }, 'a first introduction has no secret to show');
      assert.equal(typeof first.secret, 'string');
      for (let i = 1; i <= 2; i++) {
        const reconnecting = statusReached(client, 'reconnecting');
        sockets.at(-1).terminate();
        await within(5000, reconnecting, 'reconnecting');
        await within(10000, client.ready, `ready after drop ${i}`);
        assert.equal(await client.call('session.get', { key: 'k' }), 'v', 'the session came back');
      }
      // Retries refused with 409 (the server had not seen the drop yet) may sit between: take the ones that got in.
      const accepted = sockets.map(introduction).filter((x) => x.secret !== undefined);
      assert.equal(accepted.length, 3);
      assert.equal(accepted[1].sent.data.resume, accepted[0].secret, 'the second introduction presents the first secret');
      assert.equal(accepted[2].sent.data.resume, accepted[1].secret, 'the third presents the rotated one, not the first');
      assert.notEqual(accepted[1].secret, accepted[0].secret);
    } finally {
      client.close();
    }
  });

  it('a second client claiming the id while the session is parked gets 409; the first, reopened, gets its session', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const first = new IgorClient(server.url, { WebSocket: Tracked, clientId: 'parked-window' });
    const observer = new IgorClient(server.url, { WebSocket });
    try {
      await within(5000, first.ready, 'first ready');
      await first.call('session.set', { key: 'mine', value: 'first' });
      const closed = statusReached(first, 'closed');
      sockets.at(-1).terminate();
      await within(5000, closed, 'first closed');
      assert.equal(await within(10000, observer.call('clients.wait_gone', { client_id: 'parked-window' }), 'parked'), true);

      const thief = new IgorClient(server.url, { WebSocket, clientId: 'parked-window' });
      const refused = await within(5000, thief.ready.then(() => null, (e) => e), 'thief ready');
      assert.ok(refused instanceof IgorError);
      assert.equal(refused.code, 409);
      assert.equal(refused.type, 'ClientIdTaken');
      assert.equal(thief.status, 'closed');

      // The refusal handed nothing over: the first client, reopened with its secret, still finds its session.
      await within(5000, first.connect(), 'first reopened');
      assert.equal(await first.call('whoami'), 'parked-window');
      assert.equal(await first.call('session.get', { key: 'mine' }), 'first');
    } finally {
      first.close();
      observer.close();
    }
  });
});

describe('reconnect while the server still holds the old connection', () => {
  it('retries the introduction on 409 until the server lets the old connection go', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, {
      WebSocket: Tracked,
      clientId: 'half-dead',
      reconnect: { initialDelay: 20, maxDelay: 40 },
    });
    try {
      await within(5000, client.ready, 'ready');
      await client.call('session.set', { key: 'kept', value: 'yes' });
      const old = sockets.at(-1);
      // The client believes the connection dropped (as after a sleep or a
      // network change) while the server still has it open: the new
      // introduction is refused with 409 until the old connection is gone.
      const refusals = [];
      client.onStatus((event) => {
        if (event.status === 'reconnecting' && event.error?.code === 409) refusals.push(event);
      });
      const sawRefusal = new Promise((resolve) => {
        const off = client.onStatus((event) => {
          if (event.status === 'reconnecting' && event.error?.code === 409) {
            off();
            resolve(event);
          }
        });
      });
      old.onclose({ code: 1006, reason: '' });
      const refusal = await within(5000, sawRefusal, '409 on re-introduction');
      assert.equal(refusal.error.type, 'ClientIdTaken');
      old.terminate(); // now the server sees the old connection go
      await within(10000, client.ready, 'ready after the old connection went');
      assert.equal(await client.call('session.get', { key: 'kept' }), 'yes');
      assert.ok(refusals.length >= 1);
    } finally {
      client.close();
    }
  });
});

describe('reconnect backoff', () => {
  it('retries with growing, capped, jittered delays, then gives up clearly', async () => {
    const port = await deadPort();
    const client = new IgorClient(`ws://127.0.0.1:${port}/`, {
      WebSocket,
      reconnect: { initialDelay: 20, factor: 2, maxDelay: 50, jitter: 0.5, maxAttempts: 3 },
    });
    const events = [];
    client.onStatus((event) => events.push(event));
    const error = await within(5000, client.ready.then(() => null, (e) => e), 'give up');
    assert.ok(error instanceof IgorError);
    assert.equal(error.type, 'ConnectionFailed');
    assert.match(error.message, /ECONNREFUSED/);
    const waits = events.filter((e) => e.status === 'reconnecting');
    assert.deepEqual(waits.map((e) => e.attempt), [1, 2, 3]);
    const caps = [20, 40, 50];
    waits.forEach((e, i) => assert.ok(e.delay >= caps[i] / 2 && e.delay <= caps[i], `delay ${e.delay} within [${caps[i] / 2}, ${caps[i]}]`));
    assert.deepEqual(events.map((e) => e.status), ['reconnecting', 'connecting', 'reconnecting', 'connecting', 'reconnecting', 'connecting', 'closed']);
    await assert.rejects(client.call('hello'), (e) => e.type === 'ConnectionFailed');
  });

  it('waits for a server that is not up yet', async () => {
    const port = await deadPort();
    const client = new IgorClient(`ws://127.0.0.1:${port}/`, { WebSocket, reconnect: { initialDelay: 20, maxDelay: 20 } });
    try {
      await within(5000, statusReached(client, 'reconnecting'), 'first failure');
      assert.equal(client.status === 'reconnecting' || client.status === 'connecting', true);
      // Calls made meanwhile wait; a timeout bounds the wait.
      await assert.rejects(client.call('hello', { name: 'x' }, { timeout: 100 }), (e) => e.type === 'Timeout');
    } finally {
      client.close();
    }
  });
});
