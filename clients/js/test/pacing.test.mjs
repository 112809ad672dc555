// The JS client's downloads in bounded memory, paced by a slow consumer (issue #19),
// against the real Python server (fixture_server.py). A stream's values that wait for
// its `for await` loop (or its first consumer) hold at most `maxBuffer` bytes: past that
// the client pauses `ws`'s reading until the loop takes one, so the server's sending
// waits too. What resumes it: a value taken, a cancel, an abort, the stream's end, close().
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { IgorClient } from '../dist/index.js';
import { weightOf } from '../dist/pacing.js';
import { startServer, trackingWebSocket, until, within } from './helpers.mjs';

const MiB = 1024 * 1024;

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

/** A connected client, closed after the test. */
async function connect(t, options = {}, url = server.url) {
  const client = new IgorClient(url, { WebSocket, ...options });
  t.after(() => client.close());
  await within(5000, client.ready, 'connect');
  return client;
}

/** The streams `client` starts from now on, as download() makes them out of sight. */
function streamsOf(client) {
  const streams = [];
  const start = client._calls.start.bind(client._calls);
  client._calls.start = (...args) => {
    const stream = start(...args);
    streams.push(stream);
    return stream;
  };
  return streams;
}

const pauses = (client) => client._calls.pauses;

// The slowness under test: a consumer slower than the loopback, not a wait for anything.
const slowly = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('weightOf: what a waiting value counts for', () => {
  it('bytes exactly, strings by their length, and 16 for every value, key and item', () => {
    assert.equal(weightOf(new Uint8Array(100)), 116);
    assert.equal(weightOf('abc'), 19);
    assert.equal(weightOf(null), 16);
    // The object, its key 'a', the array, 1, 'xy', the bytes.
    assert.equal(weightOf({ a: [1, 'xy', new Uint8Array(4)] }), 16 + 17 + 16 + 16 + 18 + 20);
  });

  it('an array of two million numbers, without overflowing the stack', () => {
    assert.equal(weightOf(Array.from({ length: 2e6 }, (_, i) => i)), 16 * (2e6 + 1));
  });
});

describe('a slow consumer paces the server', () => {
  it('256 MiB into a slow onChunk: at most maxBuffer waits, and the process grows by little', { timeout: 60000 }, async (t) => {
    const client = await connect(t);
    const streams = streamsOf(client);
    await client.download('bin.send', { chunk: MiB, chunks: 8 }, { onChunk: () => {} }); // warm up the allocator
    const before = process.memoryUsage();
    const peak = { rss: before.rss, arrayBuffers: before.arrayBuffers };
    let last = -1;
    let bad = 0;
    const result = await within(20000, client.download('bin.send', { chunk: MiB, chunks: 256 }, {
      onChunk: async (chunk) => {
        const now = process.memoryUsage();
        peak.rss = Math.max(peak.rss, now.rss);
        peak.arrayBuffers = Math.max(peak.arrayBuffers, now.arrayBuffers);
        // Byte i of the whole is i % 251: no chunk lost or repeated.
        if (last >= 0 && chunk[0] !== (last + 1) % 251) bad++;
        last = chunk[chunk.length - 1];
        await slowly(3); // 256 chunks at ~300 MiB/s: slower than the server sends them
      },
    }), 'download');
    const stream = streams[1];
    assert.equal(result.received, 256 * MiB);
    assert.equal(bad, 0);
    assert.equal(stream.maxBuffer, 8 * MiB);
    assert.ok(stream.maxBuffered <= stream.maxBuffer, `${stream.maxBuffered} bytes waited, past the bound`);
    // The bound was reached, again and again: the consumer was the slower one, and the socket followed it.
    assert.ok(stream.maxBuffered > stream.maxBuffer / 2, `only ${stream.maxBuffered} bytes ever waited`);
    assert.ok(pauses(client).count > 10, `paused ${pauses(client).count} times`);
    assert.ok(!pauses(client).paused);
    const grown = { rss: (peak.rss - before.rss) / MiB, arrayBuffers: (peak.arrayBuffers - before.arrayBuffers) / MiB };
    t.diagnostic(`growth: rss ${grown.rss.toFixed(1)} MiB, arrayBuffers ${grown.arrayBuffers.toFixed(1)} MiB`);
    assert.ok(grown.arrayBuffers < 64, `arrayBuffers grew by ${grown.arrayBuffers.toFixed(1)} MiB`);
    assert.ok(grown.rss < 96, `RSS grew by ${grown.rss.toFixed(1)} MiB`);
  });

  it('values waiting for their first consumer count too; the loop that comes later gets every byte', async (t) => {
    const client = await connect(t, { maxStreamBuffer: 4 * MiB });
    const stream = client.stream('bin.send', { chunk: MiB, chunks: 64 });
    assert.equal(stream.maxBuffer, 4 * MiB);
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    assert.ok(!stream.closed && stream.buffered <= 4 * MiB, `${stream.buffered} bytes wait`);
    let received = 0;
    for await (const value of stream) if (value instanceof Uint8Array) received += value.length;
    assert.equal(received, 64 * MiB);
    assert.ok(stream.maxBuffered <= 4 * MiB);
    assert.equal(stream.buffered, 0);
  });

  it("JSON values weigh about their strings, against a stream's own maxBuffer", async (t) => {
    const client = await connect(t);
    const stream = client.stream('bin.texts', { n: 200, size: 8192 }); // 1.6 MiB of strings
    stream.maxBuffer = 256 * 1024; // before any value: they arrive on later turns of the event loop
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    let count = 0;
    for await (const value of stream) {
      assert.deepEqual(value, { text: 'x'.repeat(8192) });
      count++;
    }
    assert.equal(count, 200);
    // ws delivers the rest of its last read after the pause: up to 64 KiB of messages more.
    assert.ok(stream.maxBuffered <= 256 * 1024 + 64 * 1024, `${stream.maxBuffered} bytes waited`);
    assert.ok(stream.maxBuffered > 128 * 1024);
  });

  it('a socket without pause() (ws < 8.3, as a browser) reads on: what waits is not bounded', async (t) => {
    class NoPause extends WebSocket {
      constructor(...args) {
        super(...args);
        this.pause = undefined;
      }
    }
    const client = await connect(t, { WebSocket: NoPause, maxStreamBuffer: 2 * MiB });
    const stream = client.stream('bin.send', { chunk: MiB, chunks: 16 });
    await until(() => stream.closed, 10000, 'the whole download to arrive');
    assert.equal(pauses(client).count, 0);
    assert.ok(stream.buffered >= 16 * MiB, `${stream.buffered} bytes wait`);
    let received = 0;
    for await (const value of stream) if (value instanceof Uint8Array) received += value.length;
    assert.equal(received, 16 * MiB);
  });
});

describe('what frees a paused socket', () => {
  it('a break out of the loop: the stream is cancelled, what waited is let go, the next call is answered', async (t) => {
    const client = await connect(t);
    const stream = client.stream('bin.send', { chunk: MiB, chunks: 100000, tag: 'pace-break' });
    for await (const value of stream) {
      if (!(value instanceof Uint8Array)) continue;
      await until(() => pauses(client).paused, 5000, 'the socket paused');
      break;
    }
    assert.ok(stream.closed && !pauses(client).paused);
    assert.equal(stream.buffered, 0);
    assert.equal(await within(5000, client.call('echo', 'after'), 'a call after the break'), 'after');
    assert.equal(await within(5000, client.call('was_cancelled', { tag: 'pace-break' }), 'was_cancelled'), true);
  });

  it('an abort while onChunk is stuck: the other calls go through at once, the download rejects Aborted', async (t) => {
    const client = await connect(t);
    const controller = new AbortController();
    let release;
    const stuck = new Promise((resolve) => {
      release = resolve;
    });
    const download = client.download('bin.send', { chunk: MiB, chunks: 100000, tag: 'pace-abort' }, {
      signal: controller.signal,
      onChunk: () => stuck,
    });
    download.catch(() => {});
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    controller.abort();
    assert.ok(!pauses(client).paused);
    assert.equal(await within(5000, client.call('echo', 'through'), 'a call after the abort'), 'through');
    release();
    await assert.rejects(within(5000, download, 'download'), (e) => e.type === 'Aborted');
    assert.equal(await within(5000, client.call('was_cancelled', { tag: 'pace-abort' }), 'was_cancelled'), true);
  });

  it('several streams: paused while any one is over its bound; the calls behind wait until none is', async (t) => {
    const client = await connect(t);
    const slow = client.stream('jobs.slow', { n: 1000, delay: 0.01 }); // small values, waiting for a first consumer
    await until(() => slow.buffered > 0, 5000, 'a value of the slow stream');
    const big = client.stream('bin.send', { chunk: MiB, chunks: 100000 });
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    slow.maxBuffer = 1; // the slow stream is over its bound now too
    let answered = false;
    const answer = client.call('echo', 'behind').then((value) => {
      answered = true;
      return value;
    });
    big.cancel();
    assert.ok(pauses(client).paused, 'the slow stream still holds the socket');
    await slowly(300);
    assert.equal(answered, false, 'nothing is read while a stream is over its bound (head-of-line blocking)');
    slow.cancel();
    assert.ok(!pauses(client).paused);
    assert.equal(await within(5000, answer, 'the call behind'), 'behind');
  });

  it("close(): the loop fails with ConnectionClosed and the socket closes promptly, not after ws's 30 s", async (t) => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = await connect(t, { WebSocket: Tracked });
    const stream = client.stream('bin.send', { chunk: MiB, chunks: 100000 });
    const values = stream[Symbol.asyncIterator]();
    await values.next(); // the transfer header
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    const closed = new Promise((resolve) => sockets[0].once('close', resolve));
    client.close();
    assert.ok(!pauses(client).paused);
    // What had arrived is still handed over, then the failure.
    await assert.rejects(async () => {
      while (!(await values.next()).done);
    }, (e) => e.type === 'ConnectionClosed');
    await within(2000, closed, "the socket's close");
  });

  it('a dropped connection: the paused stream fails, and the new connection is read from the start', async (t) => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = await connect(t, { WebSocket: Tracked, reconnect: { initialDelay: 10 } });
    const stream = client.stream('bin.send', { chunk: MiB, chunks: 100000 });
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    sockets[0].terminate();
    await assert.rejects(async () => {
      for await (const value of stream) void value;
    }, (e) => e.type === 'ConnectionClosed');
    assert.ok(!pauses(client).paused);
    assert.equal(await within(5000, client.call('echo', 'again'), 'a call on the new connection'), 'again');
    assert.equal(sockets.length, 2);
    // The new socket is paced in its turn.
    const next = client.stream('bin.send', { chunk: MiB, chunks: 100000 });
    await until(() => pauses(client).paused, 5000, 'the new socket paused');
    assert.equal(pauses(client).count, 2);
    assert.equal(sockets[1].isPaused, true);
    next.cancel();
    assert.equal(sockets[1].isPaused, false);
  });

  it("the server's heartbeat does not drop a paused connection: the keepalive pongs answer for it", { timeout: 30000 }, async (t) => {
    const beating = await startServer({ pingInterval: 0.2, pingTimeout: 0.5 });
    t.after(() => beating.stop());
    const client = await connect(t, {}, beating.url);
    // 10 MiB/s: the server's ping would reach the client a second or more after it was sent.
    const result = await within(20000, client.download('bin.send', { chunk: MiB, chunks: 24 }, { onChunk: () => slowly(100) }), 'download');
    assert.equal(result.received, 24 * MiB);
    assert.ok(pauses(client).count > 0);
    assert.equal(client.status, 'open');
    assert.equal(await within(5000, client.call('echo', 1), 'a call after'), 1);
  });

  it('a stream never taken, without a timeout: the server drops the connection after its send_timeout, and the client learns it', { timeout: 30000 }, async (t) => {
    const strict = await startServer({ sendTimeout: 0.5 });
    t.after(() => strict.stop());
    const client = await connect(t, {}, strict.url);
    const stream = client.stream('bin.send', { chunk: MiB, chunks: 100000 });
    await until(() => pauses(client).paused, 5000, 'the socket paused');
    // The server's close frame waits behind what the client has not read; the keepalive's failure, or the TCP close, tells it.
    await until(() => client.status === 'closed', 15000, 'the client to see the connection end');
    assert.ok(stream.closed && !pauses(client).paused);
    await assert.rejects(client.call('echo', 1), (e) => e.type === 'ConnectionClosed');
  });
});
