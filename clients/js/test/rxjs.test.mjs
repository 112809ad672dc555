// RxJS interop: from(igor.stream(...)), and the igor-client/rxjs entry.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { firstValueFrom, from, lastValueFrom, Observable } from 'rxjs';
import { map, take, toArray } from 'rxjs/operators';
import WebSocket from 'ws';

import { IgorClient, IgorError } from '../dist/index.js';
import { call$, on$, pushes$, status$, stream$ } from '../dist/rxjs.js';
import { startServer, within } from './helpers.mjs';

let server;
let igor;

before(async () => {
  server = await startServer();
  igor = new IgorClient(server.url, { WebSocket, clientId: 'rx-window' });
  await within(5000, igor.ready, 'ready');
});

after(async () => {
  igor?.close();
  await server?.stop();
});

describe('from(igor.stream())', () => {
  it('adopts the stream as an Observable', async () => {
    const values = await within(5000, lastValueFrom(from(igor.stream('jobs.count', { n: 5 })).pipe(toArray())), 'values');
    assert.deepEqual(values, [0, 1, 2, 3, 4]);
  });

  it('take(n) unsubscribes, which cancels the stream on the server', async () => {
    const values = await within(5000, lastValueFrom(from(igor.stream('jobs.slow', { tag: 'rx1', delay: 0.02 })).pipe(take(3), toArray())), 'take');
    assert.deepEqual(values, [0, 1, 2]);
    assert.equal(await igor.call('was_cancelled', { tag: 'rx1' }), true);
  });

  it('errors the Observable with the IgorError', async () => {
    await assert.rejects(lastValueFrom(from(igor.stream('boom', 'rx'))), (e) => e instanceof IgorError && e.type === 'ValueError');
  });
});

describe('igor-client/rxjs', () => {
  it('stream$ is a cold RxJS Observable: one stream per subscription', async () => {
    const numbers$ = stream$(igor, 'jobs.count', { n: 3 });
    assert.ok(numbers$ instanceof Observable);
    const [a, b] = await Promise.all([lastValueFrom(numbers$.pipe(toArray())), lastValueFrom(numbers$.pipe(map((x) => x * 10), toArray()))]);
    assert.deepEqual(a, [0, 1, 2]);
    assert.deepEqual(b, [0, 10, 20]);
  });

  it('stream$ unsubscribe cancels on the server', async () => {
    const values = await lastValueFrom(stream$(igor, 'jobs.slow', { tag: 'rx2', delay: 0.02 }).pipe(take(2), toArray()));
    assert.deepEqual(values, [0, 1]);
    assert.equal(await igor.call('was_cancelled', { tag: 'rx2' }), true);
  });

  it('call$ emits the last value once, then completes', async () => {
    const values = await lastValueFrom(call$(igor, 'jobs.count', { n: 4 }).pipe(toArray()));
    assert.deepEqual(values, [3]);
    assert.equal(await firstValueFrom(call$(igor, 'hello', { name: 'Rx' })), 'Hello Rx');
  });

  it('call$ errors with IgorError, and times out with type Timeout', async () => {
    await assert.rejects(firstValueFrom(call$(igor, 'no.such')), (e) => e instanceof IgorError && e.code === 404);
    await assert.rejects(firstValueFrom(call$(igor, 'jobs.slow', { delay: 0.05 }, { timeout: 150 })), (e) => e.type === 'Timeout');
  });

  it('on$ emits pushes by name; pushes$ the whole push', async () => {
    const ticks = await within(5000, firstValueFrom(on$(igor, 'tick').pipe(take(3), toArray())), 'ticks');
    assert.equal(ticks.length, 3);
    assert.ok(ticks[0].n < ticks[1].n && ticks[1].n < ticks[2].n);
    const push = await within(5000, firstValueFrom(pushes$(igor, 'ticker')), 'push');
    assert.equal(push.action, 'tick');
    assert.equal(push.processId, 'ticker');
  });

  it('on$ by process id completes when the process finishes', async () => {
    const done = lastValueFrom(on$(igor, 'notifier').pipe(toArray()));
    await igor.call('notify', { action: 'note', data: 1 });
    await igor.call('notify', { kind: 'finish' });
    assert.deepEqual(await within(5000, done, 'process end'), [1]);
  });

  it('status$ starts with the current status and completes on close', async () => {
    const client = new IgorClient(server.url, { WebSocket });
    const seen = lastValueFrom(status$(client).pipe(toArray()));
    await client.ready;
    client.close();
    assert.deepEqual(await within(5000, seen, 'statuses'), ['connecting', 'open', 'closed']);
  });
});
