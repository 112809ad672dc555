// Protocol 3 against the real Python server (fixture_server.py): binary values
// in each direction and on each path, uploads and downloads with progress
// and cancel, a protocol 2 client's refusals, and a large upload in bounded
// server memory.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { lastValueFrom } from 'rxjs';
import { toArray } from 'rxjs/operators';

import { IgorClient } from '../dist/index.js';
import { download$, upload$ } from '../dist/rxjs.js';
import { nextPush, startServer, trackingWebSocket, within } from './helpers.mjs';

let server;
let igor;

before(async () => {
  server = await startServer();
  igor = new IgorClient(server.url, { WebSocket, clientId: 'binary-main' });
  await within(5000, igor.ready, 'connect');
});

after(async () => {
  igor?.close();
  await server?.stop();
});

const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const isPlainBytes = (v) => v instanceof Uint8Array && !Buffer.isBuffer(v);

describe('negotiation', () => {
  it('the server picks igor.v3 and its hello gives the limits', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked });
    try {
      await within(5000, client.ready, 'connect');
      assert.equal(sockets[0].protocol, 'igor.v3');
      assert.deepEqual(client._connection.limits, { maxMessageSize: 16 * 1024 * 1024, inboxSize: 100, inputWindow: 4 * 1024 * 1024 });
    } finally {
      client.close();
    }
  });
});

describe('binary values, client to server', () => {
  it('call data: every kind of binary, nested, arrives as bytes at its place', async () => {
    const backing = new Uint8Array([0xee, 0xee, 1, 2, 3, 0xee]);
    const data = {
      u8: new Uint8Array([0, 255]),
      view: new Uint8Array(backing.buffer, 2, 3),
      dataView: new DataView(backing.buffer, 1, 2),
      i16: new Int16Array([1]), // little-endian in memory: 01 00
      ab: new Uint8Array([9]).buffer,
      blob: new Blob([new Uint8Array([4, 5]), 'A']),
      buffer: Buffer.from('hi'),
      list: [new Uint8Array([7]), 'text', 3, [new Uint8Array(0)]],
      plain: { n: 1, s: 'x', none: null },
    };
    assert.deepEqual(await within(5000, igor.call('bin.shape', data), 'call'), {
      u8: { bytes: '00ff' },
      view: { bytes: '010203' },
      dataView: { bytes: 'ee01' },
      i16: { bytes: '0100' },
      ab: { bytes: '09' },
      blob: { bytes: '040541' },
      buffer: { bytes: '6869' },
      list: [{ bytes: '07' }, 'text', 3, [{ bytes: '' }]],
      plain: { n: 1, s: 'x', none: null },
    });
  });

  it('a bare binary value as the call data', async () => {
    assert.deepEqual(await igor.call('bin.shape', new Uint8Array([1, 2])), { bytes: '0102' });
  });

  it('input (stream.send): bytes, a view with an offset, a Blob, in order, between text values', async () => {
    const stream = igor.stream('bin.inputs');
    const backing = new Uint8Array([0, 0, 0, 5, 6, 0]);
    stream.send(new Uint8Array([1]));
    stream.send({ blob: new Blob([new Uint8Array(70000).fill(3)]) });
    stream.send('between');
    stream.send(new Uint8Array(backing.buffer, 3, 2));
    stream.send([new Uint8Array([8]).buffer]);
    stream.end();
    const values = [];
    for await (const value of stream) values.push(value);
    assert.deepEqual(values, [
      { bytes: '01' },
      { blob: { bytes: '03'.repeat(70000) } },
      'between',
      { bytes: '0506' },
      [{ bytes: '08' }],
      { inputs: 5 },
    ]);
  });

  it('process input: sendToProcess with bytes reaches the inbox, and the push back carries them', async () => {
    const push = nextPush(igor, 'inbox_echo', (data) => data?.data?.tag === 'bin');
    igor.sendToProcess('inbox', { tag: 'bin', image: new Uint8Array([1, 2, 3]), more: new Blob(['ok']) });
    const { data } = await within(5000, push, 'push');
    assert.equal(data.from, 'binary-main');
    assert.ok(isPlainBytes(data.data.image));
    assert.deepEqual(data.data.image, new Uint8Array([1, 2, 3]));
    assert.deepEqual(data.data.more, new TextEncoder().encode('ok'));
  });
});

describe('binary values, server to client', () => {
  it('a return value: Uint8Arrays at each place (bytes, bytearray, memoryview, empty)', async () => {
    const result = await within(5000, igor.call('bin.make', { n: 5 }), 'call');
    assert.ok(isPlainBytes(result.image));
    assert.deepEqual(result, {
      image: new Uint8Array([0, 1, 2, 3, 4]),
      w: 5,
      rows: [new TextEncoder().encode('ab'), { cell: new TextEncoder().encode('xyz') }],
      empty: new Uint8Array(0),
    });
  });

  it('yielded values, bare and nested', async () => {
    const values = [];
    for await (const value of igor.stream('bin.yield')) values.push(value);
    assert.deepEqual(values, [new Uint8Array([0, 1]), { part: new Uint8Array([255, 255, 255]), i: 1 }, 'done']);
  });

  it('an echo: what goes out as binary comes back as Uint8Array where it was', async () => {
    const data = { a: [new Uint8Array([1, 2]), { b: new Uint8Array([3]) }], c: 'text' };
    const back = await igor.call('echo', data);
    assert.deepEqual(back, data);
    assert.ok(isPlainBytes(back.a[0]) && isPlainBytes(back.a[1].b));
  });
});

describe('call_client with binary, both ways', () => {
  it('the server calls an exposed function with bytes; its binary result reaches Python as bytes', async () => {
    let received;
    const unexpose = igor.expose('mirror', (data) => {
      received = data;
      return { got: data?.payload ?? null, made: new Uint8Array([10, 11]), blob: new Blob([new Uint8Array([12])]), view: new DataView(new Uint8Array([0, 13, 0]).buffer, 1, 1) };
    });
    try {
      const answer = await within(5000, igor.call('ask_client', { name: 'mirror', data: null, shape: true }), 'call');
      assert.ok(answer.result, JSON.stringify(answer));
      // The Python side's bytes came here through the same path (ask_client passes data['data']).
      const withBytes = await within(5000, igor.call('ask_client', { name: 'mirror', data: { payload: new Uint8Array([1, 2, 3]) }, shape: true }), 'call');
      assert.ok(isPlainBytes(received.payload), 'the exposed function got a Uint8Array');
      assert.deepEqual(received.payload, new Uint8Array([1, 2, 3]));
      assert.deepEqual(withBytes.shape, { got: { bytes: '010203' }, made: { bytes: '0a0b' }, blob: { bytes: '0c' }, view: { bytes: '0d' } });
      assert.equal(answer.shape.got, null);
      assert.deepEqual(withBytes.result.made, new Uint8Array([10, 11]));
    } finally {
      unexpose();
    }
  });
});

describe('upload', () => {
  it('a Uint8Array: paced chunks, progress up to the total, the handler gets every byte', async () => {
    const bytes = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i % 253);
    const progress = [];
    const result = await within(20000, igor.upload('bin.save', bytes, { chunkSize: 256 * 1024, onProgress: (done, total) => progress.push([done, total]) }), 'upload');
    assert.deepEqual(result, { bytes: bytes.length, chunks: 13, sha256: createHash('sha256').update(bytes).digest('hex') });
    assert.deepEqual(progress.at(-1), [bytes.length, bytes.length]);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] >= progress[i - 1][0], 'progress never goes back');
    assert.equal(progress.length, 13, 'one progress report per chunk read');
  });

  it('a Blob (a File in a page) with an offset view inside, and data for the handler', async () => {
    const backing = new Uint8Array(1000).map((_, i) => i & 0xff);
    const blob = new Blob([new Uint8Array(backing.buffer, 100, 500), 'tail']);
    const whole = Buffer.concat([Buffer.from(backing.buffer, 100, 500), Buffer.from('tail')]);
    const result = await igor.upload('bin.save', blob, { chunkSize: 128, data: { hash: true } });
    assert.deepEqual(result, { bytes: 504, chunks: 4, sha256: createHash('sha256').update(whole).digest('hex') });
  });

  it('an async iterable of small chunks is joined into full ones; a DataView source sends its own bytes', async () => {
    async function* pieces() {
      for (let i = 0; i < 10; i++) yield new Uint8Array(1000).fill(i);
      yield 'end';
    }
    const result = await igor.upload('bin.save', pieces(), { chunkSize: 4096, size: 10003 });
    assert.equal(result.bytes, 10003);
    assert.equal(result.chunks, 3);
    const view = new DataView(new Uint8Array([1, 2, 3, 4, 5]).buffer, 1, 3);
    assert.equal((await igor.upload('bin.save', view)).sha256, createHash('sha256').update(Buffer.from([2, 3, 4])).digest('hex'));
  });

  it('into a slow handler with a small inbox: never InboxFull, unread chunks stay within half the inbox', async () => {
    // 60 chunks into a handler that takes 10 ms for each: unpaced, they would all be in its inbox at once.
    const sent = [];
    const client = new IgorClient(server.url, { WebSocket });
    try {
      await within(5000, client.ready, 'connect');
      let maxUnread = 0;
      const progress = [];
      const stream = client.upload('bin.save', new Uint8Array(60 * 1024), {
        chunkSize: 1024,
        data: { delay: 0.01 },
        onProgress: (done) => progress.push(done),
      });
      // Watch what is in flight: chunks sent minus chunks read, as the client counts them.
      const watch = setInterval(() => {
        const sentChunks = sent.length;
        maxUnread = Math.max(maxUnread, sentChunks - progress.length);
      }, 1);
      const orig = client._calls.sendInput.bind(client._calls);
      client._calls.sendInput = (s, input) => {
        if ('data' in input) sent.push(input.data.length);
        return orig(s, input);
      };
      const result = await within(20000, stream, 'upload');
      clearInterval(watch);
      assert.equal(result.bytes, 60 * 1024);
      assert.ok(maxUnread <= 50, `at most inbox_size/2 = 50 chunks unread, saw ${maxUnread}`);
    } finally {
      client.close();
    }
  });

  it('cancel with an AbortSignal: rejects Aborted, the handler is cancelled, the client goes on', async () => {
    const controller = new AbortController();
    let reports = 0;
    const upload = igor.upload('bin.save', new Uint8Array(200 * 1024), {
      chunkSize: 1024,
      data: { delay: 0.02 },
      signal: controller.signal,
      onProgress: () => {
        if (++reports === 3) controller.abort();
      },
    });
    await assert.rejects(within(10000, upload, 'upload'), (e) => e.type === 'Aborted');
    assert.equal(reports, 3);
    assert.equal(await igor.call('hello', { name: 'after' }), 'Hello after');
  });

  it("into the server's out.receive_file: its count and content match", async () => {
    const bytes = new Uint8Array(2 * 1024 * 1024 + 3).map((_, i) => (i * 31) & 0xff);
    const result = await igor.upload('bin.receive', new Blob([bytes]));
    assert.deepEqual(result, { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  });

  it('refuses a source that is not bytes', async () => {
    await assert.rejects(igor.upload('bin.save', { not: 'bytes' }), TypeError);
    await assert.rejects(igor.upload('bin.save', [1, 2]), TypeError);
  });
});

describe('download', () => {
  const pattern = (n) => new Uint8Array(n).map((_, i) => i % 251);

  it('joins the chunks after the transfer header; progress of the size', async () => {
    const progress = [];
    const bytes = await within(10000, igor.download('bin.send', { chunk: 1000, chunks: 5 }, { onProgress: (done, total, info) => progress.push([done, total, info.name]) }), 'download');
    assert.ok(isPlainBytes(bytes));
    assert.deepEqual(bytes, pattern(5000));
    assert.deepEqual(progress.map((p) => p[0]), [1000, 2000, 3000, 4000, 5000]);
    assert.ok(progress.every((p) => p[1] === 5000 && p[2] === 'pattern.bin'));
  });

  it('an unknown size; chunk by chunk with onChunk (bounded memory)', async () => {
    assert.deepEqual(await igor.download('bin.send', { chunk: 300, chunks: 4, sized: false }), pattern(1200));
    const seen = [];
    const result = await igor.download('bin.send', { chunk: 100, chunks: 3 }, {
      onChunk: async (chunk) => {
        await new Promise((r) => setTimeout(r, 5));
        seen.push(chunk.length);
      },
    });
    assert.deepEqual(result, { size: 300, name: 'pattern.bin', type: 'application/octet-stream', received: 300 });
    assert.deepEqual(seen, [100, 100, 100]);
  });

  it("the server's out.send_file: name, type and size from the header, every byte", async () => {
    const progress = [];
    const bytes = await within(10000, igor.download('bin.file', { size: 250000, chunk: 65536 }, { onProgress: (done, total, info) => progress.push([done, total, info]) }), 'download');
    assert.deepEqual(bytes, pattern(250000));
    assert.deepEqual(progress.map((p) => p[0]), [65536, 131072, 196608, 250000]);
    assert.equal(progress[0][1], 250000);
    assert.equal(progress[0][2].type, 'application/x-test');
    assert.match(progress[0][2].name, /\.bin$/);
  });

  it('cancel with an AbortSignal: rejects Aborted', async () => {
    const controller = new AbortController();
    let chunks = 0;
    const download = igor.download('bin.send', { chunk: 10, chunks: 1000, delay: 0.01 }, {
      signal: controller.signal,
      onProgress: () => {
        if (++chunks === 2) controller.abort();
      },
    });
    await assert.rejects(within(5000, download, 'download'), (e) => e.type === 'Aborted');
    assert.equal(chunks, 2);
  });
});

describe('RxJS: upload$ and download$', () => {
  it('emit progress, then the result; unsubscribing cancels', async () => {
    const events = await lastValueFrom(upload$(igor, 'bin.save', new Uint8Array(3000), { chunkSize: 1000 }).pipe(toArray()));
    assert.deepEqual(events.map((e) => e.type), ['progress', 'progress', 'progress', 'result']);
    assert.deepEqual(events[2], { type: 'progress', done: 3000, total: 3000 });
    assert.equal(events[3].value.bytes, 3000);
    const down = await lastValueFrom(download$(igor, 'bin.send', { chunk: 10, chunks: 2 }).pipe(toArray()));
    assert.deepEqual(down.map((e) => e.type), ['progress', 'progress', 'result']);
    assert.equal(down[2].value.length, 20);
    // Unsubscribed mid-way: the handler is cancelled (the next call on the same client still works).
    await new Promise((resolve) => {
      const subscription = download$(igor, 'bin.send', { chunk: 10, chunks: 1000, delay: 0.01 }).subscribe((e) => {
        if (e.type === 'progress' && e.done >= 20) {
          subscription.unsubscribe();
          resolve();
        }
      });
    });
    assert.equal(await igor.call('hello', { name: 'rx' }), 'Hello rx');
  });
});

describe('limits', () => {
  it('a message past max_message_size fails its call at once (MessageTooBig); the connection stays up', async () => {
    const big = new Uint8Array(16 * 1024 * 1024 + 1);
    await assert.rejects(igor.call('echo', big), (e) => e.type === 'MessageTooBig' && /max_message_size/.test(e.message));
    const stream = igor.stream('bin.inputs');
    assert.throws(() => stream.send({ big }), (e) => e.type === 'MessageTooBig');
    stream.end();
    for await (const value of stream) assert.deepEqual(value, { inputs: 0 });
    assert.throws(() => igor.sendToProcess('inbox', big), (e) => e.type === 'MessageTooBig');
    // An exposed function's answer past the limit reaches Python as an error, not as a closed connection.
    const unexpose = igor.expose('huge', () => big);
    try {
      const answer = await igor.call('ask_client', { name: 'huge' });
      assert.equal(answer.raised, 'RemoteError');
      assert.match(answer.message, /max_message_size/);
    } finally {
      unexpose();
    }
    assert.equal(await igor.call('hello', { name: 'still' }), 'Hello still');
  });
});

describe('a protocol 2 client', () => {
  class V2Only extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols.filter((p) => p !== 'igor.v3'));
    }
  }

  it('cannot send binary (BinaryUnsupported, nothing sent) and gets 415 for the binary a handler sends', async () => {
    const client = new IgorClient(server.url, { WebSocket: V2Only });
    try {
      await within(5000, client.ready, 'connect');
      await assert.rejects(client.call('echo', { b: new Uint8Array(1) }), (e) => e.type === 'BinaryUnsupported');
      await assert.rejects(client.upload('bin.save', new Uint8Array(10)), (e) => e.type === 'BinaryUnsupported');
      await assert.rejects(client.call('bin.make'), (e) => e.type === 'BinaryUnsupported' && e.code === 415);
      assert.equal(await client.call('hello', { name: 'v2' }), 'Hello v2', 'the connection stays usable');
    } finally {
      client.close();
    }
  });
});

/**
 * Run `work` while sampling the server's RSS every 100 ms; report the throughput and the growth
 * (peak less the RSS before, in MiB) as a test diagnostic and on stdout, where CI's log keeps it.
 */
async function measured(t, client, what, mib, work) {
  const before = await client.call('rss');
  let peak = before;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      peak = Math.max(peak, await client.call('rss'));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const started = process.hrtime.bigint();
  let result;
  let seconds;
  try {
    result = await work();
  } finally {
    seconds = Number(process.hrtime.bigint() - started) / 1e9;
    polling = false;
    await poll;
  }
  const growth = (peak - before) / 1024 / 1024;
  const line = `${what}: ${(mib / seconds).toFixed(1)} MiB/s (${seconds.toFixed(2)} s), server RSS growth ${growth.toFixed(1)} MiB`;
  t.diagnostic(line);
  console.log(line);
  return { result, growth };
}

describe('a large download in bounded memory', () => {
  const mib = Number(process.env.IGOR_BIG_UPLOAD_MIB || 256);

  it(`${mib} MiB chunk by chunk (onChunk): server RSS grows < 64 MiB, every byte counted`, { timeout: 600000 }, async (t) => {
    const client = new IgorClient(server.url, { WebSocket });
    try {
      await within(5000, client.ready, 'connect');
      let last = -1;
      let bad = 0;
      const { result, growth } = await measured(t, client, `download ${mib} MiB`, mib, () =>
        client.download('bin.send', { chunk: 1024 * 1024, chunks: mib }, {
          onChunk: (chunk) => {
            // Byte i of the whole is i % 251: check where each chunk starts, to see none is lost or repeated.
            if (last >= 0 && chunk[0] !== (last + 1) % 251) bad++;
            last = chunk[chunk.length - 1];
          },
        }),
      );
      assert.equal(result.received, mib * 1024 * 1024);
      assert.equal(bad, 0);
      assert.ok(growth < 64, `server RSS grew ${growth.toFixed(1)} MiB`);
    } finally {
      client.close();
    }
  });
});

describe('a large upload in bounded server memory', () => {
  const mib = Number(process.env.IGOR_BIG_UPLOAD_MIB || 256);

  it(`${mib} MiB from Node into a handler writing it to disk: server RSS grows < 64 MiB`, { timeout: 600000 }, async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'igor-upload-'));
    const file = path.join(dir, 'upload.bin');
    const client = new IgorClient(server.url, { WebSocket });
    try {
      await within(5000, client.ready, 'connect');
      const chunk = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) & 0xff);
      async function* source() {
        for (let i = 0; i < mib; i++) yield chunk;
      }
      const { result, growth } = await measured(t, client, `upload ${mib} MiB`, mib, () =>
        client.upload('bin.save', source(), { size: mib * 1024 * 1024, data: { path: file, hash: false } }),
      );
      assert.equal(result.bytes, mib * 1024 * 1024);
      assert.equal(statSync(file).size, mib * 1024 * 1024);
      assert.ok(growth < 64, `server RSS grew ${growth.toFixed(1)} MiB`);
    } finally {
      client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
