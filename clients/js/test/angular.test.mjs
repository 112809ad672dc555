// The Angular service, with RxJS, without bootstrapping an application.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Injector } from '@angular/core';
import { firstValueFrom, lastValueFrom, Observable, of } from 'rxjs';
import { take, toArray } from 'rxjs/operators';
import WebSocket from 'ws';

import { IGOR_CONFIG, IgorService, igorServiceFactory, provideIgor } from '../dist/angular.js';
import { IgorClient, IgorError } from '../dist/index.js';
import { startServer, within } from './helpers.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

describe('IgorService constructed directly', () => {
  let igor;
  before(() => {
    igor = new IgorService({ url: server.url, WebSocket, clientId: 'ng-window' });
  });
  after(() => igor.ngOnDestroy());

  it('call() returns an Observable of the result', async () => {
    const result$ = igor.call('hello', { name: 'Angular' });
    assert.ok(result$ instanceof Observable);
    assert.equal(await within(5000, firstValueFrom(result$), 'call'), 'Hello Angular');
    assert.equal(await firstValueFrom(igor.call('whoami')), 'ng-window');
  });

  it('stream() emits every value; take() cancels on the server', async () => {
    assert.deepEqual(await lastValueFrom(igor.stream('jobs.count', { n: 4 }).pipe(toArray())), [0, 1, 2, 3]);
    assert.deepEqual(await lastValueFrom(igor.stream('jobs.slow', { tag: 'ng1', delay: 0.02 }).pipe(take(2), toArray())), [0, 1]);
    assert.equal(await firstValueFrom(igor.call('was_cancelled', { tag: 'ng1' })), true);
  });

  it('errors carry the IgorError', async () => {
    await assert.rejects(firstValueFrom(igor.call('boom', 'ng')), (e) => e instanceof IgorError && e.type === 'ValueError' && e.code === 500);
  });

  it('on() emits pushes, broadcast and targeted', async () => {
    const ticks = await within(5000, firstValueFrom(igor.on('tick').pipe(take(2), toArray())), 'ticks');
    assert.equal(ticks.length, 2);
    const targeted = firstValueFrom(igor.on('ng-note'));
    await firstValueFrom(igor.call('notify', { action: 'ng-note', data: { hi: 'ng' } }));
    assert.deepEqual(await within(5000, targeted, 'targeted'), { hi: 'ng' });
  });

  it('channel() sends its input into the open call and emits the answers', async () => {
    const answers = await within(5000, lastValueFrom(igor.channel('chat', of('a', 'b')).pipe(toArray())), 'channel');
    assert.deepEqual(answers, [{ n: 1, upper: 'A' }, { n: 2, upper: 'B' }, { bye: 2 }]);
  });

  it('expose() lets Python call the window, and its return value removes the function', async () => {
    const off = igor.expose('double', (n) => n * 2);
    assert.deepEqual(await within(5000, firstValueFrom(igor.call('ask_client', { name: 'double', data: 21 })), 'exposed'),
      { result: 42 });
    off();
    const gone = await within(5000, firstValueFrom(igor.call('ask_client', { name: 'double', data: 1 })), 'unexposed');
    assert.equal(gone.raised, 'UnknownAction');
  });

  it('sendToProcess() reaches the process, whose answer arrives through on()', async () => {
    const echoed = firstValueFrom(igor.on('inbox_echo'));
    igor.sendToProcess('inbox', { from: 'angular' });
    assert.deepEqual(await within(5000, echoed, 'inbox_echo'), { from: 'ng-window', data: { from: 'angular' } });
  });

  it('status$ reports the connection and ngOnDestroy closes it', async () => {
    const service = new IgorService({ url: server.url, WebSocket });
    await service.ready;
    const statuses = lastValueFrom(service.status$.pipe(toArray()));
    service.ngOnDestroy();
    assert.deepEqual(await within(5000, statuses, 'statuses'), ['open', 'closed']);
  });
});

describe('IgorService through Angular dependency injection', () => {
  it('provideIgor(config) provides one service per injector, without a JIT compiler', async () => {
    const injector = Injector.create({ providers: provideIgor({ url: server.url, WebSocket }) });
    const igor = injector.get(IgorService);
    try {
      assert.ok(igor instanceof IgorService);
      assert.equal(injector.get(IgorService), igor, 'one instance per injector');
      assert.equal(await within(5000, firstValueFrom(igor.call('hello', { name: 'DI' })), 'call'), 'Hello DI');
    } finally {
      igor.ngOnDestroy();
    }
  });

  it('destroying the injector closes the connection', async () => {
    const injector = Injector.create({ providers: provideIgor({ url: server.url, WebSocket }) });
    const igor = injector.get(IgorService);
    await within(5000, igor.ready, 'ready');
    const statuses = lastValueFrom(igor.status$.pipe(toArray()));
    injector.destroy();
    assert.deepEqual(await within(5000, statuses, 'statuses'), ['open', 'closed']);
  });

  it('provideIgor() with no argument uses the IGOR_CONFIG provided beside it', async () => {
    const injector = Injector.create({
      providers: [{ provide: IGOR_CONFIG, useValue: { url: server.url, WebSocket, clientId: 'ng-token' } }, ...provideIgor()],
    });
    try {
      assert.equal(await within(5000, firstValueFrom(injector.get(IgorService).call('whoami')), 'whoami'), 'ng-token');
    } finally {
      injector.destroy();
    }
  });

  it('a child injector that lists provideIgor gets its own service; one that does not shares its parent\'s', () => {
    const parent = Injector.create({ providers: provideIgor({ url: server.url, WebSocket }) });
    const own = Injector.create({ providers: provideIgor({ url: server.url, WebSocket }), parent });
    const sharing = Injector.create({ providers: [], parent });
    try {
      assert.notEqual(own.get(IgorService), parent.get(IgorService));
      assert.equal(sharing.get(IgorService), parent.get(IgorService));
    } finally {
      own.destroy();
      parent.destroy();
    }
  });

  it('provideIgor() can hand over an existing client', async () => {
    const client = new IgorClient(server.url, { WebSocket });
    const injector = Injector.create({ providers: provideIgor(client) });
    const igor = injector.get(IgorService);
    try {
      assert.equal(igor.client, client);
      assert.equal(await firstValueFrom(igor.call('hello', { name: 'shared' })), 'Hello shared');
    } finally {
      client.close();
    }
  });

  it('the literal provider with igorServiceFactory works as provideIgor does', async () => {
    const injector = Injector.create({
      providers: [
        { provide: IGOR_CONFIG, useValue: { url: server.url, WebSocket } },
        { provide: IgorService, useFactory: igorServiceFactory, deps: [IGOR_CONFIG] },
      ],
    });
    try {
      assert.equal(await within(5000, firstValueFrom(injector.get(IgorService).call('hello', { name: 'literal' })), 'call'), 'Hello literal');
    } finally {
      injector.destroy();
    }
  });
});

describe('the adapter uses only public Angular API', () => {
  it('has no \u0275 (private API) identifier in src/angular.ts', async () => {
    const source = await readFile(new URL('../src/angular.ts', import.meta.url), 'utf8');
    const found = source.split('\n').map((line, i) => [i + 1, line]).filter(([, line]) => line.includes('\u0275'));
    assert.deepEqual(found, [], 'Angular marks its private API with \u0275; the adapter must not use it');
  });

  it('adds no Angular definitions to the class', () => {
    const statics = Object.getOwnPropertyNames(IgorService).filter((name) => !['length', 'name', 'prototype'].includes(name));
    assert.deepEqual(statics, []);
  });
});
