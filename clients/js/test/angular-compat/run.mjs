// Run by test/angular-compat.test.mjs in a folder where '@angular/core' and
// 'rxjs' are one Angular version's: the service through that version's own
// dependency injection, against the fixture server at argv[2].
// Prints one JSON line of what it saw.
import { Injector } from '@angular/core';
import { take, toArray } from 'rxjs/operators';

import { IGOR_CONFIG, IgorService, igorServiceFactory, provideIgor } from './igor/angular.js';
import { IgorClient } from './igor/index.js';

const [url, wsModule] = process.argv.slice(2);
const { default: WebSocket } = await import(wsModule);
// One id per service: the server keeps a departed client's id for its resume secret alone.
const clientId = `ng-compat-${process.pid}`;
const config = { url, WebSocket, clientId: `${clientId}-first` };
// toPromise: the one way to await an Observable in both RxJS 6 and 7.
const first = (observable) => observable.pipe(take(1)).toPromise();
const seen = {};

// provideIgor(config): the service, one per injector.
const injector = Injector.create({ providers: provideIgor(config) });
const igor = injector.get(IgorService);
seen.instance = igor instanceof IgorService;
seen.singleton = injector.get(IgorService) === igor;
seen.hello = await first(igor.call('hello', { name: 'compat' }));
seen.counted = await igor.stream('jobs.count', { n: 3 }).pipe(toArray()).toPromise();

// The injector's end closes the connection, where the injector has an end.
if (typeof injector.destroy === 'function') {
  const statuses = igor.status$.pipe(toArray()).toPromise();
  injector.destroy();
  seen.afterDestroy = await statuses;
} else {
  igor.ngOnDestroy();
  seen.afterDestroy = 'no destroy() in this version';
}

// IGOR_CONFIG from elsewhere, then provideIgor() with no argument.
const separate = Injector.create({ providers: [{ provide: IGOR_CONFIG, useValue: { ...config, clientId } }, ...provideIgor()] });
seen.clientId = clientId;
const fromToken = separate.get(IgorService);
seen.whoami = await first(fromToken.call('whoami'));
fromToken.ngOnDestroy();

// The literal provider (View Engine AOT), wrapping an existing client.
const client = new IgorClient(url, { WebSocket });
const literal = Injector.create({
  providers: [{ provide: IGOR_CONFIG, useValue: client }, { provide: IgorService, useFactory: igorServiceFactory, deps: [IGOR_CONFIG] }],
});
const wrapped = literal.get(IgorService);
seen.wrapsClient = wrapped.client === client;
seen.wrappedHello = await first(wrapped.call('hello', { name: 'literal' }));
client.close();

console.log(JSON.stringify(seen));
