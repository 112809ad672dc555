// Compiled (never run) with `tsc --strict`, library checks on, against each
// Angular version of test/angular-compat/*: what an app writes must type-check.
import { Injector } from '@angular/core';
import type { Provider, StaticProvider } from '@angular/core';
import type { Observable } from 'rxjs';

import { IGOR_CONFIG, IgorService, igorServiceFactory, provideIgor } from './igor/angular.js';
import type { IgorConfig } from './igor/angular.js';
import { IgorClient } from './igor/index.js';
import type { ConnectionStatus, Push } from './igor/index.js';

const config: IgorConfig = { url: 'ws://127.0.0.1:5678', token: 't', clientId: 'main-window', reconnect: true };

// Every way the README gives to provide the service, in NgModule-style
// providers and in Injector.create's static providers.
const moduleProviders: Provider[] = [
  provideIgor(config),
  provideIgor(new IgorClient('ws://127.0.0.1:5678')),
  [{ provide: IGOR_CONFIG, useValue: config }, provideIgor()],
  { provide: IgorService, useFactory: igorServiceFactory, deps: [IGOR_CONFIG] },
];
const staticProviders: StaticProvider[] = provideIgor(config);
const injector = Injector.create({ providers: [...staticProviders, ...provideIgor()] });

const igor: IgorService = injector.get(IgorService);
const greeting: Observable<string> = igor.call<string>('hello', { name: 'Ada' });
const counted: Observable<number> = igor.stream<number>('jobs.count', { n: 3 });
const answers: Observable<string> = igor.channel<string, string>('chat', greeting);
const ticks: Observable<{ n: number }> = igor.on<{ n: number }>('tick');
const pushes: Observable<Push<number>> = igor.pushes<number>('ticker');
const status: Observable<ConnectionStatus> = igor.status$;
const ready: Promise<void> = igor.ready;
const unexpose: () => void = igor.expose('double', (n: number) => n * 2);
igor.sendToProcess('inbox', { text: 'hi' });
const client: IgorClient = igor.client;
igor.ngOnDestroy();

export { moduleProviders, greeting, counted, answers, ticks, pushes, status, ready, unexpose, client };
