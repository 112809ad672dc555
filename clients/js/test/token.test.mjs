// Token handling: refusal (401) and acceptance, as subprotocol and as query parameter.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { IgorClient, IgorError } from '../dist/index.js';
import { startServer, trackingWebSocket, within } from './helpers.mjs';

const TOKEN = 'Tok-3n_with.safe~chars';
let server;

before(async () => {
  server = await startServer({ token: TOKEN });
  assert.equal(server.token, TOKEN);
});

after(async () => {
  await server?.stop();
});

async function refusal(options) {
  const client = new IgorClient(server.url, { WebSocket, ...options });
  const error = await within(5000, client.ready.then(() => null, (e) => e), 'refusal');
  return { client, error };
}

describe('token refused', () => {
  it('no token: ready rejects with ConnectionFailed, code 401, and says why', async () => {
    const { client, error } = await refusal({});
    assert.ok(error instanceof IgorError);
    assert.equal(error.type, 'ConnectionFailed');
    assert.equal(error.code, 401);
    assert.match(error.message, /401/);
    assert.match(error.message, /token/);
    assert.equal(client.status, 'closed');
    await assert.rejects(client.call('hello', { name: 'x' }), (e) => e.type === 'ConnectionFailed' && e.code === 401);
  });

  it('wrong token: the same', async () => {
    const { error } = await refusal({ token: 'wrong' });
    assert.equal(error.code, 401);
    assert.equal(error.type, 'ConnectionFailed');
  });

  it('wrong token with reconnect on: not retried (a 401 will not change by itself)', async () => {
    const { client, error } = await refusal({ token: 'wrong', reconnect: { initialDelay: 10 } });
    assert.equal(error.code, 401);
    assert.equal(client.status, 'closed');
  });

  it('a call made before the refusal fails with it, instead of hanging', async () => {
    const client = new IgorClient(server.url, { WebSocket, token: 'wrong' });
    await assert.rejects(within(5000, client.call('hello', { name: 'x' }), 'call'), (e) => e instanceof IgorError && e.code === 401);
  });
});

describe('token from the address (#token=)', () => {
  it('is not read in Node, even with a location global: only a page has an address', async () => {
    globalThis.location = { hash: `#token=${TOKEN}`, href: 'http://127.0.0.1/#token=' + TOKEN };
    try {
      const { error } = await refusal({});
      assert.equal(error.code, 401);
    } finally {
      delete globalThis.location;
    }
  });
});

describe('token accepted', () => {
  it('as subprotocols igor.v3, igor.v2 + igor.token.T (the default); the server answers igor.v3', async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked, token: TOKEN });
    try {
      assert.equal(await within(5000, client.call('hello', { name: 'Ada' }), 'call'), 'Hello Ada');
      assert.equal(sockets[0].protocol, 'igor.v3');
      assert.ok(!sockets[0].url.includes('token'), 'token kept out of the URL');
    } finally {
      client.close();
    }
  });

  it("as the query parameter with tokenIn: 'query'", async () => {
    const { WebSocket: Tracked, sockets } = trackingWebSocket();
    const client = new IgorClient(server.url, { WebSocket: Tracked, token: TOKEN, tokenIn: 'query' });
    try {
      assert.equal(await within(5000, client.call('hello', { name: 'Bo' }), 'call'), 'Hello Bo');
      assert.equal(new URL(sockets[0].url).searchParams.get('token'), TOKEN);
      assert.equal(sockets[0].protocol, 'igor.v3');
    } finally {
      client.close();
    }
  });
});

describe('token placement (no server)', () => {
  function recorder() {
    const made = [];
    class Fake {
      constructor(url, protocols) {
        made.push({ url, protocols });
        this.readyState = 0;
        this.onopen = this.onmessage = this.onerror = this.onclose = null;
      }
      send() {}
      close() {}
    }
    return { Fake, made };
  }

  it('puts a token a subprotocol cannot hold into the query, encoded', async () => {
    const { Fake, made } = recorder();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake, token: 'a b/c=d' });
    // Wait until the socket has been made (the WebSocket class is resolved asynchronously).
    await within(
      1000,
      (async () => {
        while (made.length === 0) await new Promise((resolve) => setImmediate(resolve));
      })(),
      'socket made',
    );
    client.close();
    assert.equal(made.length, 1);
    assert.deepEqual(made[0].protocols, ['igor.v3', 'igor.v2']);
    assert.equal(new URL(made[0].url).searchParams.get('token'), 'a b/c=d');
  });

  it('offers only igor.v3 and igor.v2 without a token', async () => {
    const { Fake, made } = recorder();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    await new Promise((resolve) => setImmediate(resolve));
    client.close();
    assert.deepEqual(made, [{ url: 'ws://127.0.0.1:1/', protocols: ['igor.v3', 'igor.v2'] }]);
  });
});
