// Both directions on one connection, against the real Igor server: input into
// open calls (stream.send / end, channel$), functions the server calls
// (igor.expose), input to a background process (igor.sendToProcess). The
// wire-order details that need no server use a fake WebSocket.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, of, Subject, throwError } from 'rxjs';
import { toArray } from 'rxjs/operators';
import WebSocket from 'ws';

import { IgorClient, IgorError } from '../dist/index.js';
import { channel$ } from '../dist/rxjs.js';
import { fakeWebSocket, nextPush, startServer, within } from './helpers.mjs';

let server;
let igor;

before(async () => {
  server = await startServer();
  igor = new IgorClient(server.url, { WebSocket, clientId: 'bidi-main' });
  await within(5000, igor.ready, 'connect');
});

after(async () => {
  igor?.close();
  await server?.stop();
});

/**
 * A fresh connected client whose onError reports are collected in `errors`;
 * `errorCount(n)` resolves once there are at least `n`.
 */
async function clientWithErrors(options = {}) {
  const client = new IgorClient(server.url, { WebSocket, ...options });
  const errors = [];
  const waiters = [];
  client.onError((error) => {
    errors.push(error);
    for (const w of waiters.splice(0)) if (errors.length >= w.n) w.resolve();
    else waiters.push(w);
  });
  const errorCount = (n) => new Promise((resolve) => (errors.length >= n ? resolve() : waiters.push({ n, resolve })));
  await within(5000, client.ready, 'connect');
  return { client, errors, errorCount };
}

/** A promise and the function that resolves it. */
function signal() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * A `ws` WebSocket class whose incoming messages can be held back: while
 * `gate.held`, they wait in `gate.buffer`; `gate.until(predicate)` resolves
 * once a held message matches; `gate.release()` delivers them in order. It
 * lets a test act while the client has not yet seen what the server sent.
 */
function gatedWebSocket() {
  const gate = { held: false, buffer: [], waiters: [] };
  gate.until = (predicate) =>
    new Promise((resolve) => {
      if (gate.buffer.some(({ message }) => predicate(message))) resolve();
      else gate.waiters.push({ predicate, resolve });
    });
  gate.release = () => {
    gate.held = false;
    for (const { event, deliver } of gate.buffer.splice(0)) deliver(event);
  };
  class Gated extends WebSocket {
    get onmessage() {
      return super.onmessage;
    }
    set onmessage(deliver) {
      super.onmessage = (event) => {
        if (!gate.held) return deliver(event);
        const message = JSON.parse(String(event.data));
        gate.buffer.push({ event, deliver, message });
        gate.waiters = gate.waiters.filter((w) => !(w.predicate(message) && (w.resolve(), true)));
      };
    }
  }
  return { WebSocket: Gated, gate };
}

describe('input into an open call', () => {
  it('a chat: each line sent gets its answer while the call stays open, then the end', async () => {
    const chat = igor.stream('chat');
    const answers = chat[Symbol.asyncIterator]();
    for (const [i, line] of ['hello', 'how are you', 'bye now'].entries()) {
      chat.send(line);
      // The answer to this line arrives before the next line is even sent.
      assert.deepEqual(await within(5000, answers.next(), `answer ${i + 1}`), { value: { n: i + 1, upper: line.toUpperCase() }, done: false });
    }
    assert.equal(chat.inputClosed, false);
    chat.end();
    assert.equal(chat.inputClosed, true);
    assert.deepEqual(await within(5000, answers.next(), 'bye'), { value: { bye: 3 }, done: false });
    assert.deepEqual(await within(5000, answers.next(), 'end'), { value: undefined, done: true });
  });

  it('input sent before the connection is ready waits with the call and follows it, in order', async () => {
    const client = new IgorClient(server.url, { WebSocket });
    try {
      assert.equal(client.status, 'connecting');
      const chat = client.stream('chat');
      chat.send('one');
      chat.send({ two: 2 });
      chat.end();
      const values = [];
      for await (const value of chat) values.push(value);
      assert.deepEqual(values, [{ n: 1, upper: 'ONE' }, { n: 2, upper: "{'TWO': 2}" }, { bye: 2 }]);
    } finally {
      client.close();
    }
  });

  it('the wire order is: the call, its inputs, the end (fake socket)', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    try {
      const s = client.stream('chat', { topic: 't' });
      s.send('a');
      client.sendToProcess('inbox', 'p1');
      s.send(undefined);
      s.end();
      s.end(); // a second end sends nothing
      const other = client.stream('echo', 1);
      await within(1000, client.ready, 'ready');
      const live = client.stream('chat');
      live.send('at once');
      // Exact order: the stream's inputs travel with its call; the process message and the
      // second call follow in the order they were made.
      assert.deepEqual(sockets[0].sent, [
        { streamId: s.id, action: 'chat', data: { topic: 't' } },
        { streamId: s.id, data: 'a' },
        { streamId: s.id, data: null },
        { streamId: s.id, end: true },
        { process: 'inbox', data: 'p1' },
        { streamId: other.id, action: 'echo', data: 1 },
        { streamId: live.id, action: 'chat' },
        { streamId: live.id, data: 'at once' },
      ]);
    } finally {
      client.close();
    }
  });

  it('send on an ended stream throws StreamClosed; after end() it throws InputEnded', async () => {
    const done = igor.stream('echo', 'x');
    assert.deepEqual(await within(5000, collect(done), 'echo'), ['x']);
    assert.throws(() => done.send('late'), (e) => e instanceof IgorError && e.type === 'StreamClosed' && e.streamId === done.id);
    done.end(); // nothing to end: no throw

    const chat = igor.stream('chat');
    chat.end();
    assert.throws(() => chat.send('late'), (e) => e instanceof IgorError && e.type === 'InputEnded');
    assert.deepEqual(await within(5000, collect(chat), 'chat'), [{ bye: 0 }]);

    const cancelled = igor.stream('jobs.slow', { delay: 0.05 });
    cancelled.cancel();
    assert.throws(() => cancelled.send(1), (e) => e.type === 'StreamClosed');
  });

  it('data that is not JSON-serialisable is refused at once, and the stream stays usable', async () => {
    const chat = igor.stream('chat');
    const cyclic = {};
    cyclic.self = cyclic;
    assert.throws(() => chat.send(cyclic), (e) => e instanceof TypeError && /chat: data is not JSON-serialisable/.test(e.message));
    assert.throws(() => chat.send(() => 1), (e) => e instanceof TypeError && /a function/.test(e.message));
    chat.send('fine');
    chat.end();
    assert.deepEqual(await within(5000, collect(chat), 'chat'), [{ n: 1, upper: 'FINE' }, { bye: 1 }]);
  });

  it('input the server gets for a stream it has closed is answered 404 UnknownStream, to onError', async () => {
    const { WebSocket: Gated, gate } = gatedWebSocket();
    const { client, errors } = await clientWithErrors({ WebSocket: Gated });
    try {
      const s = client.stream('read_one');
      const values = collect(s);
      values.catch(() => {}); // awaited below; the server in use may fail it first
      gate.held = true;
      s.send('first');
      // The server has answered and closed the stream; this client has not seen it yet.
      await within(5000, gate.until((m) => m.streamId === s.id && m.close === true), 'close held back');
      assert.equal(s.closed, false);
      s.send('late');
      await within(5000, gate.until((m) => m.code === 404), '404 held back');
      gate.release();
      assert.deepEqual(await within(5000, values, 'values'), ['first']);
      assert.equal(errors.length, 1, `errors: ${errors.map((e) => e.message)}`);
      assert.equal(errors[0].code, 404);
      assert.equal(errors[0].type, 'UnknownStream');
      assert.equal(errors[0].streamId, undefined, 'the 404 names no stream: a reused id is left alone');
    } finally {
      client.close();
    }
  });

  it('a flood into a handler that never reads fails that stream with 429 InboxFull; the connection stays', async () => {
    const { client, errors } = await clientWithErrors();
    try {
      const hoard = client.stream('hoard');
      const ended = collect(hoard);
      const flood = 500;
      for (let i = 0; i < flood; i++) hoard.send({ i, pad: 'x'.repeat(100) });
      await assert.rejects(within(10000, ended, 'hoard'), (e) => e instanceof IgorError && e.code === 429 && e.type === 'InboxFull' && e.streamId === hoard.id);
      assert.throws(() => hoard.send('more'), (e) => e.type === 'StreamClosed');
      // The connection is fine: a call and a chat still work.
      assert.equal(client.status, 'open');
      assert.equal(await within(5000, client.call('hello', { name: 'after the flood' }), 'hello'), 'Hello after the flood');
      const chat = client.stream('chat');
      chat.send('still here');
      chat.end();
      assert.deepEqual(await within(5000, collect(chat), 'chat'), [{ n: 1, upper: 'STILL HERE' }, { bye: 1 }]);
      // What the server got after it failed the stream was answered 404, never more than was sent.
      assert.ok(errors.every((e) => e.code === 404 && e.type === 'UnknownStream'), errors.map((e) => e.message).join('\n'));
      assert.ok(errors.length < flood);
    } finally {
      client.close();
    }
  });
});

describe('channel$', () => {
  it('sends every value of input$, ends input when it completes, emits the answers', async () => {
    const answers = await within(5000, lastValueFrom(channel$(igor, 'chat', of('a', 'b')).pipe(toArray())), 'channel$');
    assert.deepEqual(answers, [{ n: 1, upper: 'A' }, { n: 2, upper: 'B' }, { bye: 2 }]);
  });

  it('input and output interleave: each answer comes before the next input', async () => {
    const lines = new Subject();
    const seen = [];
    const done = signal();
    channel$(igor, 'chat', lines).subscribe({
      next: (answer) => {
        seen.push(answer);
        if (answer.n === 1) lines.next('second');
        if (answer.n === 2) lines.complete();
      },
      complete: () => done.resolve(),
      error: (e) => done.resolve(e),
    });
    lines.next('first');
    assert.equal(await within(5000, done.promise, 'channel'), undefined);
    assert.deepEqual(seen, [{ n: 1, upper: 'FIRST' }, { n: 2, upper: 'SECOND' }, { bye: 2 }]);
  });

  it('an error of input$ cancels the call and errors the Observable', async () => {
    const failure = new Error('input broke');
    await assert.rejects(within(5000, lastValueFrom(channel$(igor, 'chat', throwError(() => failure))), 'channel$'), (e) => e === failure);
  });

  it('when the call ends first, input$ is unsubscribed', async () => {
    const lines = new Subject();
    const answers = lastValueFrom(channel$(igor, 'read_one', lines).pipe(toArray())); // subscribes now
    assert.equal(lines.observed, true);
    lines.next('only');
    assert.deepEqual(await within(5000, answers, 'read_one'), ['only']);
    assert.equal(lines.observed, false, 'nobody listens to input$ any more');
  });
});

describe('expose: the server calls the client', () => {
  it('a slow answer holds up neither other streams nor pushes', async () => {
    const called = signal();
    const release = signal();
    const off = igor.expose('confirm', async (data) => {
      called.resolve(data);
      await release.promise;
      return { ok: true, asked: data };
    });
    try {
      let answered = false;
      const asked = igor.call('ask_client', { name: 'confirm', data: { question: 'Go on?' } }).finally(() => {
        answered = true;
      });
      assert.deepEqual(await within(5000, called.promise, 'confirm called'), { question: 'Go on?' });
      // While confirm waits: a stream runs to its end and pushes arrive.
      const values = await within(5000, collect(igor.stream('jobs.slow', { n: 5, delay: 0.02 })), 'stream');
      assert.deepEqual(values, [0, 1, 2, 3, 4]);
      const first = await within(5000, nextPush(igor, 'tick'), 'tick');
      await within(5000, nextPush(igor, 'tick', (d) => d.n > first.data.n), 'a later tick');
      assert.equal(answered, false, 'the Python side is still waiting');
      release.resolve();
      assert.deepEqual(await within(5000, asked, 'ask_client'), { result: { ok: true, asked: { question: 'Go on?' } } });
    } finally {
      off();
    }
  });

  it('a throw or a rejection reaches Python as RemoteError with its message and type', async () => {
    class DialogClosed extends Error {
      constructor(message) {
        super(message);
        this.name = 'DialogClosed';
      }
    }
    const offs = [
      igor.expose('refuse', () => {
        throw new DialogClosed('the user closed the dialog');
      }),
      igor.expose('reject', async () => {
        throw new Error('the user said no');
      }),
      igor.expose('reject_igor', () => Promise.reject(new IgorError('gone', 410, 'Gone'))),
    ];
    try {
      assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'refuse' }), 'refuse'), {
        raised: 'RemoteError', message: 'the user closed the dialog', type: 'DialogClosed', code: 500,
      });
      assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'reject' }), 'reject'), {
        raised: 'RemoteError', message: 'the user said no', type: 'Error', code: 500,
      });
      assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'reject_igor' }), 'reject_igor'), {
        raised: 'RemoteError', message: 'gone', type: 'Gone', code: 410,
      });
    } finally {
      for (const off of offs) off();
    }
  });

  it('past its timeout Python gets CallTimeout, the function its abort, and no answer is sent', async () => {
    const { client, errors } = await clientWithErrors();
    const aborted = signal();
    client.expose('wait_forever', (data, abortSignal) =>
      new Promise((resolve) => {
        abortSignal.addEventListener('abort', () => {
          aborted.resolve(abortSignal.reason);
          resolve('too late'); // must not be sent: the server stopped waiting
        });
      }));
    try {
      const report = await within(5000, client.call('ask_client', { name: 'wait_forever', timeout: 0.3 }), 'ask_client');
      assert.equal(report.raised, 'CallTimeout');
      const reason = await within(5000, aborted.promise, 'abort');
      assert.ok(reason instanceof IgorError && reason.type === 'Cancelled', String(reason));
      // Anything the server had to refuse would arrive before this call's answer.
      assert.equal(await within(5000, client.call('hello', { name: 'x' }), 'hello'), 'Hello x');
      assert.deepEqual(errors.map((e) => e.message), []);
    } finally {
      client.close();
    }
  });

  it('a name not exposed (or unexposed again) reaches Python as UnknownAction', async () => {
    const report = await within(5000, igor.call('ask_client', { name: 'not_exposed' }), 'ask_client');
    assert.equal(report.raised, 'UnknownAction');
    const off = igor.expose('brief', () => 'here');
    assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'brief' }), 'exposed'), { result: 'here' });
    off();
    assert.equal((await within(5000, igor.call('ask_client', { name: 'brief' }), 'unexposed')).raised, 'UnknownAction');
  });

  it('refuses a bad name or a non-function with a TypeError', () => {
    assert.throws(() => igor.expose('', () => 1), (e) => e instanceof TypeError && /non-empty string, got ""/.test(e.message));
    assert.throws(() => igor.expose(7, () => 1), (e) => e instanceof TypeError && /got 7/.test(e.message));
    assert.throws(() => igor.expose('x', 'not a function'), (e) => e instanceof TypeError && /fn must be a function, got "not a function"/.test(e.message));
  });

  it('exposing a name again replaces its function, as the Python client does', async () => {
    const offFirst = igor.expose('twice', () => 'first');
    const offSecond = igor.expose('twice', () => 'second');
    assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'twice' }), 'replaced'), { result: 'second' });
    offFirst(); // the first function is gone already: its unexpose must not remove the second
    assert.deepEqual(await within(5000, igor.call('ask_client', { name: 'twice' }), 'still there'), { result: 'second' });
    offSecond();
    assert.equal((await within(5000, igor.call('ask_client', { name: 'twice' }), 'removed')).raised, 'UnknownAction');
  });

  it('answers on the wire: data, null for undefined, TypeError for an unserialisable result, nothing after cancel (fake socket)', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    try {
      await within(1000, client.ready, 'ready');
      const socket = sockets[0];
      const receive = (message) => socket.onmessage({ data: JSON.stringify(message) });
      const pending = signal();
      let abortReason;
      client.expose('double', (n) => n * 2);
      client.expose('nothing', () => undefined);
      client.expose('cyclic', () => {
        const o = {};
        o.o = o;
        return o;
      });
      client.expose('pending', (data, s) => {
        s.addEventListener('abort', () => {
          abortReason = s.reason;
        });
        return pending.promise;
      });
      receive({ callId: 1, action: 'double', data: 21 });
      receive({ callId: 2, action: 'nothing' });
      receive({ callId: 3, action: 'cyclic' });
      receive({ callId: 4, action: 'pending' });
      receive({ callId: 5, action: 'nope' });
      receive({ callId: 4, cancel: true });
      pending.resolve('late');
      const answers = () => socket.sent.filter((m) => 'callId' in m).sort((a, b) => a.callId - b.callId);
      // Every answer is written from promise callbacks: all have run before the next macrotask.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(answers(), [
        { callId: 1, data: 42 },
        { callId: 2, data: null },
        { callId: 3, error: answers()[2].error, type: 'TypeError' },
        { callId: 5, error: 'this client exposes no function named "nope"', code: 404, type: 'UnknownAction' },
      ]);
      assert.match(answers()[2].error, /not JSON-serialisable/);
      assert.equal(abortReason?.type, 'Cancelled');
    } finally {
      client.close();
    }
  });

  it('a dropped connection aborts the calls being answered (fake socket)', async () => {
    const { WebSocket: Fake, sockets } = fakeWebSocket();
    const client = new IgorClient('ws://127.0.0.1:1/', { WebSocket: Fake });
    const aborted = signal();
    client.expose('dialog', (data, s) => {
      s.addEventListener('abort', () => aborted.resolve(s.reason));
      return new Promise(() => {});
    });
    try {
      await within(1000, client.ready, 'ready');
      sockets[0].onmessage({ data: JSON.stringify({ callId: 1, action: 'dialog', data: {} }) });
      await new Promise((r) => setImmediate(r));
      sockets[0].onclose({ code: 1006, reason: '' });
      const reason = await within(1000, aborted.promise, 'abort');
      assert.equal(reason.type, 'ConnectionClosed');
    } finally {
      client.close();
    }
  });
});

describe('sendToProcess', () => {
  it('delivers data to the process with the sender\'s client id', async () => {
    const echo = nextPush(igor, 'inbox_echo', (d) => d.data?.text === 'hi');
    igor.sendToProcess('inbox', { text: 'hi' });
    assert.deepEqual((await within(5000, echo, 'inbox_echo')).data, { from: 'bidi-main', data: { text: 'hi' } });
  });

  it('sent before the connection is ready, it waits and goes out', async () => {
    const client = new IgorClient(server.url, { WebSocket, clientId: 'bidi-early' });
    try {
      const echo = nextPush(client, 'inbox_echo');
      client.sendToProcess('inbox', 'early');
      assert.deepEqual((await within(5000, echo, 'inbox_echo')).data, { from: 'bidi-early', data: 'early' });
    } finally {
      client.close();
    }
  });

  it('an unknown process is answered 404 UnknownProcess: to on(id) error observers, else to onError', async () => {
    const { client, errors, errorCount } = await clientWithErrors();
    try {
      client.sendToProcess('no_such_process', 1);
      await within(5000, errorCount(1), 'onError');
      assert.equal(errors[0].code, 404);
      assert.equal(errors[0].type, 'UnknownProcess');

      const observed = signal();
      const off = client.on('no_such_process', { error: (e) => observed.resolve(e) });
      client.sendToProcess('no_such_process', 2);
      const error = await within(5000, observed.promise, 'observer');
      off();
      assert.equal(error.type, 'UnknownProcess');
      assert.equal(errors.length, 1, 'with an error observer, onError is not told');
    } finally {
      client.close();
    }
  });

  it('past a full inbox each message is dropped and answered 429 InboxFull; the connection stays', async () => {
    // The ticker process never reads its inbox: 100 messages (the server's inbox_size) fill it.
    const { client, errors, errorCount } = await clientWithErrors();
    try {
      for (let i = 0; i < 105; i++) client.sendToProcess('ticker', i);
      await within(5000, errorCount(5), 'five refusals');
      assert.equal(await within(5000, client.call('hello', { name: 'still' }), 'hello'), 'Hello still');
      assert.equal(errors.length, 5, 'the first 100 were taken');
      assert.ok(errors.every((e) => e.code === 429 && e.type === 'InboxFull'), errors.map((e) => e.message).join('\n'));
    } finally {
      client.close();
    }
  });

  it('refuses a bad process id, and any send once the client is closed', () => {
    assert.throws(() => igor.sendToProcess('', 1), (e) => e instanceof TypeError && /process id must be a non-empty string/.test(e.message));
    assert.throws(() => igor.sendToProcess(7, 1), (e) => e instanceof TypeError && /got 7/.test(e.message));
    assert.throws(() => igor.sendToProcess('inbox', () => 1), (e) => e instanceof TypeError && /not JSON-serialisable/.test(e.message));
    const client = new IgorClient(server.url, { WebSocket });
    client.close();
    assert.throws(() => client.sendToProcess('inbox', 1), (e) => e instanceof IgorError && e.type === 'ConnectionClosed');
  });
});

/** Every value of a stream, as a promise (rejects with its error). */
function collect(stream) {
  return new Promise((resolve, reject) => {
    const values = [];
    stream.subscribe({ next: (v) => values.push(v), error: reject, complete: () => resolve(values) });
  });
}

describe('types', () => {
  it('the bidirectional API type-checks for a strict TypeScript consumer', () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const consumer = fileURLToPath(new URL('./types/bidi-consumer.ts', import.meta.url));
    const result = spawnSync(
      process.execPath,
      [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
        '--target', 'ES2022', '--lib', 'ES2022,DOM', '--types', 'node', consumer],
      { encoding: 'utf8', timeout: 120000 },
    );
    assert.equal(result.status, 0, `tsc failed:\n${result.stdout}\n${result.stderr}`);
  });
});
