// Protocol 3's binary messages, byte by byte: the codec against the layout of
// the spec (docs/protocol.md), and the client's side of the wire with a fake
// WebSocket (order of messages with a Blob inside, protocol 2 refusals).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { decode, encode, isBinary } from '../dist/binary.js';
import { IgorClient } from '../dist/index.js';
import { within } from './helpers.mjs';

const utf8 = (text) => new TextEncoder().encode(text);

/** The binary message of the spec: [uint32 BE head length][head][bytes...]. */
function layout(head, ...parts) {
  const headBytes = utf8(head);
  const size = 4 + headBytes.length + parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, headBytes.length, false);
  out.set(headBytes, 4);
  let offset = 4 + headBytes.length;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47]);

describe('encode', () => {
  it("is the spec's example byte for byte: out.send({image, w}) on stream 7", () => {
    const { payload, size, binary } = encode({ streamId: 7, data: { image: PNG, w: 2 } }, 'test');
    const expected = layout('{"streamId":7,"data":{"image":null,"w":2},"binary":[{"at":["data","image"],"size":4}]}', PNG);
    assert.equal(binary, true);
    assert.equal(size, expected.length);
    assert.deepEqual(payload, expected);
    assert.deepEqual([...payload.subarray(0, 4)], [0, 0, 0, expected.length - 8]);
  });

  it('a bare value: the path is ["data"]', () => {
    const { payload } = encode({ streamId: 7, data: PNG }, 'test');
    assert.deepEqual(payload, layout('{"streamId":7,"data":null,"binary":[{"at":["data"],"size":4}]}', PNG));
  });

  it('a message without binary stays the same JSON text', () => {
    const message = { streamId: 3, action: 'echo', data: { a: [1, 'x', null], b: { c: true } } };
    const { payload, binary } = encode(message, 'test');
    assert.equal(binary, false);
    assert.equal(payload, JSON.stringify(message));
  });

  it('nested values in order, array indexes as numbers; a view sends its own bytes only', () => {
    const buffer = new Uint8Array([9, 9, 1, 2, 3, 9]).buffer;
    const view = new Uint8Array(buffer, 2, 3); // [1, 2, 3]
    const floats = new Float32Array([1.5]);
    const dataView = new DataView(new Uint8Array([7, 8, 9, 10]).buffer, 1, 2); // [8, 9]
    const ab = new Uint8Array([4, 5]).buffer;
    const message = { callId: 1, data: { list: [view, { f: floats }], dv: dataView, ab, n: 1 } };
    const { payload } = encode(message, 'test');
    const head =
      '{"callId":1,"data":{"list":[null,{"f":null}],"dv":null,"ab":null,"n":1},"binary":[' +
      '{"at":["data","list",0],"size":3},{"at":["data","list",1,"f"],"size":4},{"at":["data","dv"],"size":2},{"at":["data","ab"],"size":2}]}';
    assert.deepEqual(payload, layout(head, new Uint8Array([1, 2, 3]), new Uint8Array(floats.buffer), new Uint8Array([8, 9]), new Uint8Array([4, 5])));
    // The caller's data is left as it was.
    assert.equal(message.data.list[0], view);
  });

  it('a Blob is read before the message is made; its size is known at once', async () => {
    const blob = new Blob([new Uint8Array([1, 2]), 'hi']);
    const { payload, size } = encode({ process: 'p', data: { blob, x: 1 } }, 'test');
    assert.ok(payload instanceof Promise);
    const bytes = await payload;
    const expected = layout('{"process":"p","data":{"blob":null,"x":1},"binary":[{"at":["data","blob"],"size":4}]}', new Uint8Array([1, 2, 104, 105]));
    assert.deepEqual(bytes, expected);
    assert.equal(size, expected.length);
  });

  it('refuses what JSON cannot carry, with a TypeError', () => {
    const cyclic = { bytes: PNG };
    cyclic.self = cyclic;
    assert.throws(() => encode({ streamId: 1, data: cyclic }, 'echo'), TypeError);
    assert.throws(() => encode({ streamId: 1, data: { n: 1n, b: PNG } }, 'echo'), TypeError);
  });

  it('isBinary: views, buffers and Blobs; not arrays or strings', () => {
    for (const v of [new Uint8Array(1), new Int16Array(1), new DataView(new ArrayBuffer(1)), new ArrayBuffer(1), new Blob([]), Buffer.from('x')]) {
      assert.equal(isBinary(v), true, String(v));
    }
    for (const v of [[1, 2], 'bytes', null, { length: 1 }, 1]) assert.equal(isBinary(v), false);
  });
});

describe('decode', () => {
  it('puts each value back at its place as a Uint8Array over the received buffer', () => {
    const head =
      '{"streamId":5,"data":{"image":null,"rows":[null,{"x":null}],"w":2},"binary":[' +
      '{"at":["data","image"],"size":4},{"at":["data","rows",0],"size":1},{"at":["data","rows",1,"x"],"size":0}]}';
    const raw = layout(head, PNG, new Uint8Array([42]));
    const m = decode(raw.buffer);
    assert.deepEqual(Object.keys(m), ['streamId', 'data']);
    assert.equal(m.streamId, 5);
    assert.ok(m.data.image instanceof Uint8Array);
    assert.deepEqual(m.data.image, PNG);
    assert.equal(m.data.image.buffer, raw.buffer, 'a view, not a copy');
    assert.deepEqual(m.data.rows[0], new Uint8Array([42]));
    assert.deepEqual(m.data.rows[1].x, new Uint8Array(0));
    assert.equal(m.data.w, 2);
  });

  it('reads a Buffer (a view with an offset) as well as an ArrayBuffer', () => {
    const raw = layout('{"streamId":1,"data":null,"binary":[{"at":["data"],"size":4}]}', PNG);
    const padded = Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.from(raw)]).subarray(2);
    assert.deepEqual(decode(padded).data, PNG);
  });

  it('round-trips what encode makes', () => {
    const data = { a: new Uint8Array([1, 2, 3]), b: [new Uint8Array([4]), 'five', { six: new Uint8Array(0) }], c: null };
    const m = decode(encode({ streamId: 9, data }, 't').payload);
    assert.deepEqual(m, { streamId: 9, data });
  });

  const bad = [
    ['shorter than 4 bytes', new Uint8Array([0, 0])],
    ['a head length past the end', layout('{}').map((b, i) => (i === 3 ? 200 : b))],
    ['a head that is not JSON', layout('{"streamId":1,')],
    ['a head that is not an object', layout('[1]')],
    ['no "binary"', layout('{"streamId":1,"data":null}')],
    ['a path not from "data"', layout('{"streamId":1,"data":null,"x":null,"binary":[{"at":["x"],"size":1}]}', PNG.subarray(0, 1))],
    ['a path not leading to null', layout('{"streamId":1,"data":{"a":1},"binary":[{"at":["data","a"],"size":1}]}', PNG.subarray(0, 1))],
    ['a path through a missing key', layout('{"streamId":1,"data":{},"binary":[{"at":["data","a","b"],"size":1}]}', PNG.subarray(0, 1))],
    ['a repeated path', layout('{"streamId":1,"data":null,"binary":[{"at":["data"],"size":1},{"at":["data"],"size":1}]}', PNG.subarray(0, 2))],
    ['a path under another one', layout('{"streamId":1,"data":[null],"binary":[{"at":["data",0],"size":1},{"at":["data",0,0],"size":1}]}', PNG.subarray(0, 2))],
    ['sizes past the end', layout('{"streamId":1,"data":null,"binary":[{"at":["data"],"size":9}]}', PNG)],
    ['bytes left over', layout('{"streamId":1,"data":null,"binary":[{"at":["data"],"size":3}]}', PNG)],
    ['a negative size', layout('{"streamId":1,"data":null,"binary":[{"at":["data"],"size":-1}]}')],
  ];
  for (const [what, raw] of bad) {
    it(`refuses ${what}, saying why`, () => {
      assert.throws(() => decode(raw), (error) => error.name === 'MalformedBinary' && error.message.length > 10);
    });
  }

  it('a refusal carries the stream id the head gave', () => {
    assert.throws(() => decode(layout('{"streamId":4,"data":null,"binary":[{"at":["data"],"size":3}]}', PNG)), (e) => e.streamId === 4);
  });
});

/** A fake socket that opens under `protocol`, sends a hello under igor.v3, and records what the client sends. */
function fakeServer(protocol = 'igor.v3', hello = { protocol: 3, max_message_size: 1 << 20, inbox_size: 10, input_window: 1 << 16 }) {
  const sockets = [];
  class Fake {
    constructor(url, protocols) {
      this.protocols = protocols;
      this.protocol = protocol;
      this.sent = [];
      this.readyState = 0;
      sockets.push(this);
      queueMicrotask(() => {
        this.readyState = 1;
        this.onopen?.({});
        if (hello) this.onmessage?.({ data: JSON.stringify({ hello }) });
      });
    }
    send(data) {
      this.sent.push(typeof data === 'string' ? JSON.parse(data) : decode(data));
    }
    close() {
      this.readyState = 3;
    }
  }
  return { WebSocket: Fake, sockets };
}

describe('the client on the wire (fake socket)', () => {
  it('offers igor.v3, reads binary messages, keeps the order of messages around a Blob', async () => {
    const { WebSocket, sockets } = fakeServer();
    const igor = new IgorClient('ws://127.0.0.1:1', { WebSocket });
    try {
      await within(2000, igor.ready, 'ready');
      const socket = sockets[0];
      assert.deepEqual(socket.protocols, ['igor.v3', 'igor.v2']);
      assert.equal(socket.binaryType, 'arraybuffer');
      const big = new Blob([new Uint8Array(100000).fill(7)]);
      const a = igor.stream('up', { file: big });
      const b = igor.stream('plain', 1);
      a.send(new Uint8Array([1]));
      await within(2000, (async () => { while (socket.sent.length < 3) await new Promise((r) => setTimeout(r, 5)); })(), 'sent');
      assert.deepEqual(socket.sent.map((m) => m.action ?? 'input'), ['up', 'plain', 'input']);
      assert.equal(socket.sent[0].data.file.length, 100000);
      assert.deepEqual(socket.sent[2], { streamId: a.id, data: new Uint8Array([1]) });
      // A binary answer from the server arrives as a Uint8Array at its place.
      socket.onmessage({ data: encode({ streamId: b.id, data: { got: new Uint8Array([5, 6]) }, close: true }, 't').payload.buffer });
      const values = [];
      for await (const v of b) values.push(v);
      assert.deepEqual(values, [{ got: new Uint8Array([5, 6]) }]);
      assert.deepEqual(igor._connection.limits, { maxMessageSize: 1 << 20, inboxSize: 10, inputWindow: 1 << 16 });
    } finally {
      igor.close();
    }
  });

  it('under protocol 2, binary fails the call (BinaryUnsupported) and nothing is sent', async () => {
    const { WebSocket, sockets } = fakeServer('igor.v2', null);
    const igor = new IgorClient('ws://127.0.0.1:1', { WebSocket });
    try {
      await within(2000, igor.ready, 'ready');
      await assert.rejects(igor.call('echo', { b: new Uint8Array(1) }), (e) => e.type === 'BinaryUnsupported');
      assert.throws(() => igor.sendToProcess('inbox', new ArrayBuffer(2)), (e) => e.type === 'BinaryUnsupported');
      const s = igor.stream('chat');
      assert.throws(() => s.send(new Uint8Array(1)), (e) => e.type === 'BinaryUnsupported');
      s.send('text goes');
      assert.deepEqual(sockets[0].sent.map((m) => m.data), [undefined, 'text goes']);
    } finally {
      igor.close();
    }
  });
});
