// Errors that carry a value (IgorError.data) against the real Python server (fixture_server.py):
// binary inside arrives as Uint8Array at its place, through the client, RxJS and the Angular service.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { firstValueFrom } from 'rxjs';

import { IgorService } from '../dist/angular.js';
import { IgorClient, IgorError } from '../dist/index.js';
import { call$ } from '../dist/rxjs.js';
import { startServer, within } from './helpers.mjs';

let server;
let igor;

before(async () => {
  server = await startServer();
  igor = new IgorClient(server.url, { WebSocket, clientId: 'error-data' });
  await within(5000, igor.ready, 'connect');
});

after(async () => {
  igor?.close();
  await server?.stop();
});

const isPlainBytes = (v) => v instanceof Uint8Array && !Buffer.isBuffer(v);

/** The error `promise` rejects with; fails if it resolves. */
async function rejection(promise) {
  try {
    await within(5000, promise, 'the call');
  } catch (error) {
    return error;
  }
  assert.fail('the call succeeded');
}

function assertBadFrame(error) {
  assert.ok(error instanceof IgorError);
  assert.equal(error.message, 'bad frame');
  assert.equal(error.code, 500);
  assert.equal(error.type, 'IgorError');
  assert.ok(isPlainBytes(error.data.frame) && isPlainBytes(error.data.n[1]));
  assert.deepEqual(error.data, { frame: new Uint8Array([7, 0, 255]), n: [1, new Uint8Array([255])], note: 'x' });
}

describe('IgorError.data', () => {
  it('a raised error brings its nested bytes as Uint8Array at their place', async () => {
    assertBadFrame(await rejection(igor.call('bin.error', { bytes: [7, 0, 255] })));
    assert.equal(await igor.call('echo', 'next'), 'next');
  });

  it('is undefined for an error that carries none', async () => {
    const error = await rejection(igor.call('boom'));
    assert.ok(error instanceof IgorError);
    assert.equal('data' in error, false);
    assert.equal(error.data, undefined);
  });

  it("a process's error: data with bytes the client sent, back as Uint8Array", async () => {
    const failed = new Promise((resolve) => igor.on('notifier', { error: resolve }));
    await igor.call('notify', { kind: 'error', data: 'disk full', errorData: { dump: new Uint8Array([1, 2]), free: 0 } });
    const error = await within(5000, failed, 'process error');
    assert.equal(error.message, 'disk full');
    assert.equal(error.type, 'RuntimeError');
    assert.ok(isPlainBytes(error.data.dump));
    assert.deepEqual(error.data, { dump: new Uint8Array([1, 2]), free: 0 });
  });

  it("an exposed function's IgorError takes its data, bytes in place, to Python's RemoteError", async () => {
    const offs = [
      igor.expose('refuse', () => {
        throw new IgorError('closed', 409, 'DialogClosed', { data: { frame: new Uint8Array([0, 255]), n: [1, new Blob(['z'])] } });
      }),
      igor.expose('odd', () => Promise.reject(new IgorError('odd', 500, 'Odd', { data: { n: 10n } }))),
    ];
    const warned = [];
    const warn = console.warn;
    console.warn = (...args) => warned.push(args.join(' '));
    try {
      assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'refuse' }), 'refuse'), {
        raised: 'RemoteError', message: 'closed', type: 'DialogClosed', code: 409, data: { frame: { bytes: '00ff' }, n: [1, { bytes: '7a' }] },
      });
      // Data the wire cannot carry (a BigInt) is left out with a warning; the error itself still gets through.
      assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'odd' }), 'odd'), {
        raised: 'RemoteError', message: 'odd', type: 'Odd', code: 500,
      });
      assert.ok(warned.some((line) => line.includes('the data of the error thrown by "odd" cannot be sent')), warned.join('\n'));
    } finally {
      console.warn = warn;
      for (const off of offs) off();
    }
  });

  it('RxJS call$ and the Angular service pass the IgorError on with its data', async () => {
    assertBadFrame(await rejection(firstValueFrom(call$(igor, 'bin.error', { bytes: [7, 0, 255] }))));
    const service = new IgorService(igor);
    assertBadFrame(await rejection(firstValueFrom(service.call('bin.error', { bytes: [7, 0, 255] }))));
  });
});
