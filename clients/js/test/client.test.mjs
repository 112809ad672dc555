// The core client against a real Igor server: calls, streams, errors, cancel,
// timeouts, pushes, big payloads, concurrency.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { IgorClient, IgorError, IgorStream } from '../dist/index.js';
import { fakeWebSocket, nextPush, startServer, trackingWebSocket, within } from './helpers.mjs';

let server;
let igor;

before(async () => {
  server = await startServer();
  igor = new IgorClient(server.url, { WebSocket });
  await within(5000, igor.ready, 'connect');
});

after(async () => {
  igor?.close();
  await server?.stop();
});

describe('call', () => {
  it('returns the last data value', async () => {
    assert.equal(await igor.call('hello', { name: 'Ada' }), 'Hello Ada');
  });

  it('returns undefined when the action sends nothing', async () => {
    assert.equal(await igor.call('nothing'), undefined);
  });

  it('returns the last value of a streaming action', async () => {
    assert.equal(await igor.call('jobs.count', { n: 5 }), 4);
  });

  it('passes any JSON value through', async () => {
    const value = { a: [1, 2.5, 'x', null, true], nested: { 'ü': 'ñ ✓' } };
    assert.deepEqual(await igor.call('echo', value), value);
  });

  it('in Node, uses the ws package by itself, even when there is a global WebSocket', async () => {
    // Whatever the Node version: put a global WebSocket that must not be used.
    const original = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
    let nativeUsed = 0;
    class NotThisOne {
      constructor() {
        nativeUsed++;
        throw new Error('the global WebSocket was used instead of ws');
      }
    }
    Object.defineProperty(globalThis, 'WebSocket', { value: NotThisOne, configurable: true, writable: true });
    let client;
    try {
      client = new IgorClient(server.url);
      assert.equal(await within(5000, client.call('hello', { name: 'ws' }), 'call'), 'Hello ws');
      assert.equal(nativeUsed, 0);
    } finally {
      client?.close();
      if (original) Object.defineProperty(globalThis, 'WebSocket', original);
      else delete globalThis.WebSocket;
    }
  });

  it('in Node, uses ws when there is no global WebSocket at all', async () => {
    const original = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
    delete globalThis.WebSocket;
    let client;
    try {
      client = new IgorClient(server.url);
      assert.equal(await within(5000, client.call('hello', { name: 'no global' }), 'call'), 'Hello no global');
    } finally {
      client?.close();
      if (original) Object.defineProperty(globalThis, 'WebSocket', original);
    }
  });
});

describe('stream', () => {
  it('yields every value with for await', async () => {
    const values = [];
    for await (const value of igor.stream('jobs.count', { n: 10 })) values.push(value);
    assert.deepEqual(values, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('delivers to subscribe(), then complete', async () => {
    const values = [];
    await within(
      5000,
      new Promise((resolve, reject) => {
        const stream = igor.stream('jobs.count', { n: 3 });
        assert.ok(stream instanceof IgorStream);
        stream.subscribe({ next: (v) => values.push(v), error: reject, complete: resolve });
      }),
      'stream',
    );
    assert.deepEqual(values, [0, 1, 2]);
  });

  it('keeps values that arrive before anyone consumes the stream', async () => {
    const stream = igor.stream('jobs.count', { n: 4 });
    // Let the whole stream arrive before consuming it.
    assert.equal(await igor.call('hello', { name: 'sync' }), 'Hello sync');
    assert.equal(stream.closed, true);
    const values = [];
    for await (const value of stream) values.push(value);
    assert.deepEqual(values, [0, 1, 2, 3]);
  });

  it('a process error and end (string process id) leave open streams alone and reach on(processId)', async () => {
    const client = new IgorClient(server.url, { WebSocket, clientId: 'routing-window' });
    try {
      await within(5000, client.ready, 'ready');
      // Open streams of every small id, so that any routing by id would hit one.
      const streams = Array.from({ length: 3 }, (_, i) => client.stream('jobs.slow', { tag: `route${i}`, delay: 0.05 }));
      const seen = [];
      for (const s of streams) s.subscribe({ next: () => {}, error: (e) => seen.push(['stream error', s.id, e.message]), complete: () => seen.push(['stream end', s.id]) });
      const stray = [];
      client.onError((e) => stray.push(e.message));
      const failed = new Promise((resolve) => client.on('notifier', { error: resolve }));
      const finished = new Promise((resolve) => client.on('notifier', { complete: resolve }));
      await client.call('notify', { client_id: 'routing-window', kind: 'error', data: 'process broke' });
      const error = await within(5000, failed, 'process error');
      assert.equal(error.message, 'process broke');
      await client.call('notify', { client_id: 'routing-window', kind: 'finish' });
      await within(5000, finished, 'process end');
      // The streams were neither failed nor ended by the process's messages.
      assert.deepEqual(seen, []);
      assert.deepEqual(stray, []);
      for (const s of streams) assert.equal(s.closed, false, `stream ${s.id} still open`);
      for (const s of streams) s.cancel();
    } finally {
      client.close();
    }
  });
});

describe('errors', () => {
  it('rejects a call with an IgorError carrying code, type and message', async () => {
    const error = await igor.call('boom', 42).then(
      () => assert.fail('should have failed'),
      (e) => e,
    );
    assert.ok(error instanceof IgorError);
    assert.ok(error instanceof Error);
    assert.equal(error.code, 500);
    assert.equal(error.type, 'ValueError');
    assert.equal(error.message, 'nope: 42');
    assert.equal(error.action, 'boom');
    assert.equal(error.traceback, undefined);
  });

  it('reports an unknown action as 404 UnknownAction', async () => {
    await assert.rejects(igor.call('no.such.action'), (e) => e instanceof IgorError && e.code === 404 && e.type === 'UnknownAction');
  });

  it('throws the error from a for await loop after the values sent before it', async () => {
    const values = [];
    await assert.rejects(
      (async () => {
        for await (const value of igor.stream('teapot')) values.push(value);
      })(),
      (e) => e instanceof IgorError && e.code === 418 && e.message === "I'm a teapot",
    );
    assert.deepEqual(values, ['first']);
  });

  it('carries the traceback when the server runs with debug', async () => {
    const debugServer = await startServer({ debug: true });
    const client = new IgorClient(debugServer.url, { WebSocket });
    try {
      const error = await client.call('boom', 1).catch((e) => e);
      assert.equal(error.type, 'ValueError');
      assert.match(error.traceback, /Traceback[\s\S]*ValueError: nope: 1/);
    } finally {
      client.close();
      await debugServer.stop();
    }
  });

  it('fails a call whose data cannot be serialised, without sending it', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked });
    try {
      await within(5000, client.ready, 'ready');
      const sent = [];
      const send = sockets[0].send.bind(sockets[0]);
      sockets[0].send = (text, ...rest) => {
        sent.push(JSON.parse(text));
        return send(text, ...rest);
      };
      const cyclic = {};
      cyclic.self = cyclic;
      await assert.rejects(client.call('echo', cyclic), (e) => e instanceof TypeError && /echo: data is not JSON-serialisable/.test(e.message));
      assert.throws(() => client.stream('echo', cyclic), (e) => e instanceof TypeError);
      assert.equal(await client.call('echo', 'still fine'), 'still fine');
      assert.deepEqual(sent.map((m) => m.data), ['still fine'], 'only the second call went out');
    } finally {
      client.close();
    }
  });
});

describe('cancel', () => {
  it('cancel() completes the stream here and stops the handler on the server', async () => {
    const stream = igor.stream('jobs.slow', { tag: 'c1', delay: 0.05 });
    const values = [];
    let completed = false;
    await within(
      5000,
      new Promise((resolve) => {
        stream.subscribe({
          next: (v) => {
            values.push(v);
            if (v === 2) {
              stream.cancel();
              resolve();
            }
          },
          complete: () => {
            completed = true;
          },
        });
      }),
      'three values',
    );
    assert.equal(completed, true);
    assert.equal(stream.closed, true);
    assert.deepEqual(values, [0, 1, 2]);
    assert.equal(await igor.call('was_cancelled', { tag: 'c1' }), true);
  });

  it('leaving a for await loop cancels the stream', async () => {
    for await (const value of igor.stream('jobs.slow', { tag: 'c2', delay: 0.02 })) {
      if (value === 1) break;
    }
    assert.equal(await igor.call('was_cancelled', { tag: 'c2' }), true);
  });

  it('unsubscribing the last subscriber cancels the stream', async () => {
    const stream = igor.stream('jobs.slow', { tag: 'c3', delay: 0.02 });
    let running;
    const started = new Promise((resolve) => (running = resolve));
    const first = stream.subscribe(() => {});
    const second = stream.subscribe(() => running());
    // A first value: the handler runs. A cancel that arrives while the call still waits for a
    // worker ends it before its handler starts, and the handler then never sees a cancel to note.
    await within(5000, started, 'first value');
    first.unsubscribe();
    assert.equal(stream.closed, false, 'one subscriber left: still open');
    second.unsubscribe();
    assert.equal(stream.closed, true);
    assert.equal(await igor.call('was_cancelled', { tag: 'c3' }), true);
  });

  it('an AbortSignal aborts the call with type Aborted and cancels it on the server', async () => {
    const controller = new AbortController();
    const stream = igor.stream('jobs.slow', { tag: 'c4', delay: 0.02 }, { signal: controller.signal });
    // Abort once the handler is surely running (it sent its first value).
    const pending = new Promise((resolve, reject) => stream.subscribe({ next: () => controller.abort(), error: reject, complete: resolve }));
    await assert.rejects(within(5000, pending, 'abort'), (e) => e instanceof IgorError && e.type === 'Aborted');
    assert.equal(await igor.call('was_cancelled', { tag: 'c4' }), true);
  });
});

describe('protocol 2 and 3', () => {
  it('igor.v3 is what the server picks, and a call is answered in one message, as under protocol 2', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked });
    try {
      await within(5000, client.ready, 'ready');
      assert.equal(sockets[0].protocol, 'igor.v3');
      const messages = [];
      sockets[0].on('message', (data) => messages.push(JSON.parse(data.toString())));
      assert.deepEqual(await within(5000, client.call('answer', { k: [1] }), 'call'), { k: [1] });
      // The ticker process pushes to every client meanwhile: only the call's own messages count.
      const own = messages.filter((m) => m.action === undefined);
      assert.deepEqual(own, [{ streamId: own[0]?.streamId, data: { k: [1] }, close: true }]);
    } finally {
      client.close();
    }
  });

  it('a last value with the close, and a value and a close apart, both end a stream with that value', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    try {
      await within(1000, client.ready, 'ready');
      const joined = client.call('a');
      const apart = client.call('b');
      const seen = [];
      const streamed = client.stream('c');
      const ended = new Promise((resolve) => streamed.subscribe({ next: (v) => seen.push(v), complete: resolve }));
      const [a, b, c] = sockets[0].sent.map((m) => m.streamId);
      const deliver = (message) => sockets[0].onmessage({ data: JSON.stringify(message) });
      deliver({ streamId: a, data: 1, close: true });
      deliver({ streamId: b, data: 2 });
      deliver({ streamId: b, close: true });
      deliver({ streamId: c, data: 'x' });
      deliver({ streamId: c, data: 'y', close: true });
      assert.equal(await within(1000, joined, 'joined'), 1);
      assert.equal(await within(1000, apart, 'apart'), 2);
      await within(1000, ended, 'stream complete');
      assert.deepEqual(seen, ['x', 'y']);
    } finally {
      client.close();
    }
  });
});

describe('while connecting', () => {
  it('holds at most maxQueuedBytes of calls, input and process messages; then QueueFull, and the rest goes out in order', async () => {
    const bytes = (message) => Buffer.byteLength(JSON.stringify(message));
    const call = { streamId: 1, action: 'a', data: 'é😀' }; // two- and four-byte characters
    const input = { streamId: 1, data: 'x' };
    const toProcess = { process: 'p', data: 1 };
    const total = bytes(call) + bytes(input) + bytes(toProcess);
    const queueAll = (client) => {
      const stream = client.stream('a', 'é😀');
      stream.send('x');
      client.sendToProcess('p', 1);
      return stream;
    };

    const short = new IgorClient('ws://127.0.0.1:1/', { WebSocket: fakeWebSocket('hang').WebSocket, maxQueuedBytes: total - 1 });
    try {
      assert.throws(() => queueAll(short), (e) => e instanceof IgorError && e.type === 'QueueFull' && e.code === 0,
        'one byte short: the last message is refused');
    } finally {
      short.close();
    }

    const { WebSocket: Fake, sockets } = fakeWebSocket('hang');
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake, maxQueuedBytes: total });
    try {
      const stream = queueAll(client); // exactly fits
      await assert.rejects(within(1000, client.call('b', 'y'), 'refused call'), (e) => e.type === 'QueueFull');
      assert.throws(() => stream.send('more'), (e) => e.type === 'QueueFull');
      assert.throws(() => client.sendToProcess('p', 2), (e) => e.type === 'QueueFull');
      assert.deepEqual(sockets[0].sent, [], 'nothing is sent before the socket opens');
      sockets[0].open();
      await within(1000, client.ready, 'ready');
      assert.deepEqual(sockets[0].sent, [call, input, toProcess], 'what was queued goes out in order; the refused never');
      // Open, nothing is held, so the bound does not apply.
      const big = 'z'.repeat(10 * total);
      client.sendToProcess('p', big);
      assert.deepEqual(sockets[0].sent.at(-1), { process: 'p', data: big });
    } finally {
      client.close();
    }
  });

  it('a queued call that times out or is aborted gives its room back', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket('hang');
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake, maxQueuedBytes: 60 });
    try {
      const controller = new AbortController();
      const waiting = client.call('a', 'x'.repeat(20), { signal: controller.signal }); // 57 bytes
      await assert.rejects(within(1000, client.call('b', 1), 'full'), (e) => e.type === 'QueueFull');
      controller.abort();
      await assert.rejects(within(1000, waiting, 'aborted'), (e) => e.type === 'Aborted');
      const next = client.call('b', 1); // fits again
      sockets[0].open();
      await within(1000, client.ready, 'ready');
      assert.deepEqual(sockets[0].sent.map((m) => m.action), ['b']);
      sockets[0].onmessage({ data: JSON.stringify({ streamId: sockets[0].sent[0].streamId, data: 'done', close: true }) });
      assert.equal(await within(1000, next, 'next'), 'done');
    } finally {
      client.close();
    }
  });

  it('refuses a maxQueuedBytes that is not a positive number', () => {
    for (const bad of [0, -1, '1', Number.NaN]) {
      assert.throws(() => new IgorClient('ws://127.0.0.1:1/', { maxQueuedBytes: bad }), (e) => e instanceof TypeError && /options\.maxQueuedBytes must be a positive number/.test(e.message), String(bad));
    }
  });
});

describe('already aborted', () => {
  it('a call with an already aborted signal fails at once without being sent', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    try {
      await within(1000, client.ready, 'ready');
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(within(1000, client.call('hello', { name: 'x' }, { signal: controller.signal }), 'call'), (e) => e.type === 'Aborted');
      client.call('after', 1).catch(() => {});
      assert.deepEqual(sockets[0].sent.map((m) => m.action), ['after'], 'the aborted call never went out');
    } finally {
      client.close();
    }
  });
});

describe('timeout', () => {
  it('rejects with type Timeout and cancels the stream on the server', async () => {
    const started = Date.now();
    const error = await igor.call('jobs.slow', { tag: 't1', delay: 0.05 }, { timeout: 300 }).catch((e) => e);
    assert.ok(error instanceof IgorError);
    assert.equal(error.type, 'Timeout');
    assert.equal(error.code, 0);
    assert.ok(Date.now() - started >= 290, 'not before the timeout');
    assert.equal(await igor.call('was_cancelled', { tag: 't1' }), true);
  });

  it('does not fire for a call that ends in time', async () => {
    assert.equal(await igor.call('hello', { name: 'quick' }, { timeout: 5000 }), 'Hello quick');
  });
});

describe('pushes from processes', () => {
  it('receives broadcasts by push name', async () => {
    const { data, push } = await within(5000, nextPush(igor, 'tick'), 'tick');
    assert.equal(typeof data.n, 'number');
    assert.deepEqual(push, { action: 'tick', processId: 'ticker', data });
  });

  it('receives broadcasts by process id', async () => {
    const { push } = await within(5000, nextPush(igor, 'ticker'), 'ticker');
    assert.equal(push.action, 'tick');
  });

  it('on() returns a function that stops the listener', async () => {
    let count = 0;
    const off = igor.on('tick', () => count++);
    await within(5000, nextPush(igor, 'tick'), 'tick');
    off();
    const frozen = count;
    await within(5000, nextPush(igor, 'tick'), 'tick');
    await within(5000, nextPush(igor, 'tick'), 'tick');
    assert.equal(count, frozen);
  });

  it('receives a push sent to its client id only', async () => {
    const other = new IgorClient(server.url, { WebSocket, clientId: 'other-window' });
    try {
      await within(5000, other.ready, 'other ready');
      let leaked = false;
      const offLeak = igor.on('secret', () => {
        leaked = true;
      });
      const got = nextPush(other, 'secret');
      assert.equal(await igor.call('notify', { client_id: 'other-window', action: 'secret', data: { x: 1 } }), true);
      const { data, push } = await within(5000, got, 'targeted push');
      assert.deepEqual(data, { x: 1 });
      assert.equal(push.processId, 'notifier');
      // A push to ourselves after it proves ordering: had `secret` leaked to us, it would have arrived first.
      const mine = nextPush(igor, 'mine');
      await igor.call('notify', { action: 'mine' });
      await within(5000, mine, 'own push');
      offLeak();
      assert.equal(leaked, false);
    } finally {
      other.close();
    }
  });

  it('tells a process failure and end to an observer listening by process id', async () => {
    const client = new IgorClient(server.url, { WebSocket, clientId: 'observer-window' });
    try {
      await within(5000, client.ready, 'ready');
      const failed = new Promise((resolve) => client.on('notifier', { error: resolve }));
      const finished = new Promise((resolve) => client.on('notifier', { complete: resolve }));
      await client.call('notify', { kind: 'error', data: 'disk full' });
      const error = await within(5000, failed, 'process error');
      assert.ok(error instanceof IgorError);
      assert.equal(error.code, 500);
      assert.equal(error.type, 'RuntimeError');
      assert.equal(error.message, 'disk full');
      await client.call('notify', { kind: 'finish' });
      await within(5000, finished, 'process end');
    } finally {
      client.close();
    }
  });
});

describe('payloads and concurrency', () => {
  const MB = 1024 * 1024;

  it('sends 1 MB to the server', async () => {
    assert.equal(await within(20000, igor.call('length', 'y'.repeat(MB)), 'upload'), MB);
  });

  it('receives 1 MB from the server', async () => {
    const text = await within(20000, igor.call('blob', { size: MB }), 'download');
    assert.equal(text.length, MB);
    assert.ok(/^x+$/.test(text));
  });

  it('echoes 1 MB both ways', async () => {
    const payload = { text: 'z'.repeat(MB) };
    assert.deepEqual(await within(20000, igor.call('echo', payload), 'echo'), payload);
  });

  it('runs 50 concurrent streams on one connection, each getting its own values', async () => {
    const streams = Array.from({ length: 50 }, (_, i) => igor.stream('jobs.count', { n: 20 + i }));
    const results = await within(
      20000,
      Promise.all(
        streams.map(async (stream) => {
          const values = [];
          for await (const value of stream) values.push(value);
          return values;
        }),
      ),
      '50 streams',
    );
    results.forEach((values, i) => assert.deepEqual(values, Array.from({ length: 20 + i }, (_, k) => k)));
    assert.equal(new Set(streams.map((s) => s.id)).size, 50);
  });
});

describe('after close', () => {
  it('fails in-flight and new calls with ConnectionClosed, and rejects ready', async () => {
    const client = new IgorClient(server.url, { WebSocket });
    await within(5000, client.ready, 'ready');
    const inFlight = client.call('jobs.slow', { delay: 0.05 });
    const statuses = [];
    client.onStatus((e) => statuses.push(e.status));
    client.close();
    await assert.rejects(inFlight, (e) => e instanceof IgorError && e.type === 'ConnectionClosed' && e.code === 0);
    await assert.rejects(client.call('hello', { name: 'late' }), (e) => e instanceof IgorError && e.type === 'ConnectionClosed');
    await assert.rejects(client.ready, (e) => e instanceof IgorError && e.type === 'ConnectionClosed');
    assert.deepEqual(statuses, ['closed']);
    assert.equal(client.status, 'closed');
  });
});
