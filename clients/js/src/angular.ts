/**
 * `igor-client/angular`: an injectable {@link IgorService} (Angular 8+),
 * configured through the {@link IGOR_CONFIG} injection token, whose
 * `call`/`stream`/`channel`/`on` return RxJS Observables.
 *
 * ```ts
 * // app.module.ts (or bootstrapApplication's providers)
 * providers: [provideIgor({ url: 'ws://127.0.0.1:5678', token, clientId: 'main-window', reconnect: true })]
 *
 * // a component
 * constructor(private igor: IgorService) {}
 * this.igor.call<string>('hello', { name: 'Ada' }).subscribe((greeting) => (this.greeting = greeting));
 * this.counter$ = this.igor.on<{ counter: number }>('counter_increment');
 * ```
 *
 * Why a provider function and no `@Injectable()` decorator: this file is
 * compiled by plain `tsc`, not by the Angular compiler. A decorated class
 * compiled that way only becomes injectable at run time through Angular's
 * JIT compiler, which AOT applications do not ship, and the static
 * definitions the Angular compiler would add instead are private API, whose
 * names changed between versions (Angular 8 reads `ngInjectableDef`, 9 and
 * later a renamed field, so such a class is not injectable in one or the
 * other). A factory provider with `deps` is public API in every
 * version, in AOT and JIT applications alike; the class stays a plain class
 * that can also be built with `new IgorService(config)` (in tests, or
 * outside Angular).
 *
 * @packageDocumentation
 */

import { InjectionToken } from '@angular/core';
import type { FactoryProvider, OnDestroy, ValueProvider } from '@angular/core';
import type { Observable } from 'rxjs';

import { IgorClient } from './client.js';
import type { ConnectionStatus, ExposedFunction, IgorClientOptions, Push } from './options.js';
import type { ActionName, ActionResult, CallArgs } from './typed.js';
import { call$, channel$, download$, on$, pushes$, status$, stream$, upload$ } from './rxjs.js';
import type { TransferEvent } from './rxjs.js';
import type { DownloadOptions, UploadOptions, UploadSource } from './transfer.js';

/** The configuration of {@link IgorService}: the server URL plus any {@link IgorClientOptions}. */
export interface IgorConfig extends IgorClientOptions {
  /** The server, e.g. `'ws://127.0.0.1:5678'`. */
  url: string;
}

/** Provide an {@link IgorConfig} (or a ready {@link IgorClient}) under this token to configure {@link IgorService}. */
export const IGOR_CONFIG = new InjectionToken<IgorConfig | IgorClient>('IGOR_CONFIG');

/**
 * The providers of {@link IgorService}: `providers: [provideIgor({ url, token })]`.
 *
 * With a config (or an existing client) they provide it under
 * {@link IGOR_CONFIG} too; without one (`provideIgor()`) they use the
 * `IGOR_CONFIG` provided elsewhere, e.g. by a factory that reads it at start.
 * The service lives, and is closed, with the injector they are listed in:
 * the application's (`bootstrapApplication`, the root `NgModule`) for one
 * connection for the whole app, or a component's for one per component.
 * They are static providers too, so `Injector.create` takes them.
 */
export function provideIgor(config?: IgorConfig | IgorClient): Array<ValueProvider | FactoryProvider> {
  const service: FactoryProvider = { provide: IgorService, useFactory: igorServiceFactory, deps: [IGOR_CONFIG] };
  return config === undefined ? [service] : [{ provide: IGOR_CONFIG, useValue: config }, service];
}

/**
 * The factory of {@link provideIgor}'s service provider, for the one case
 * that cannot call `provideIgor`: the metadata of an `@NgModule` compiled by
 * Angular 8's View Engine AOT compiler, which evaluates no function calls.
 * There write the provider itself:
 * `{ provide: IgorService, useFactory: igorServiceFactory, deps: [IGOR_CONFIG] }`.
 */
export function igorServiceFactory(config: IgorConfig | IgorClient): IgorService {
  return new IgorService(config);
}

/**
 * Igor for Angular: one {@link IgorClient} per injector that lists
 * {@link provideIgor} (application-wide when that is the application's),
 * closed when the injector is destroyed. Every method returns a cold Observable: nothing is sent until
 * it is subscribed, each subscription makes its own call, and unsubscribing
 * (for example through the `async` pipe when a component goes away) cancels
 * the call on the server.
 *
 * With the generated `Api` as type parameter (`IgorService<Api>`, e.g.
 * `constructor(private igor: IgorService<Api>)`), `call` and `stream` are
 * type-checked as {@link IgorClient}'s are.
 */
export class IgorService<A = any> implements OnDestroy {
  /** The underlying client, for what the service does not cover (`onStatus`, `onError`, `close`). */
  readonly client: IgorClient<A>;
  /** The connection status: the current one at once, then every change. */
  readonly status$: Observable<ConnectionStatus>;

  /** @param config - the server URL and client options, or an existing client to wrap. */
  constructor(config: IgorConfig | IgorClient) {
    this.client = config instanceof IgorClient ? config : new IgorClient(config.url, config);
    this.status$ = status$(this.client);
  }

  /** Resolves once connected (and introduced); see {@link IgorClient.ready}. */
  get ready(): Promise<void> {
    return this.client.ready;
  }

  /** The last data value of `action`, emitted once, then complete. */
  call<T = unknown, K extends ActionName<A> = ActionName<A>>(action: K, ...args: CallArgs<A, K>): Observable<ActionResult<A, K, T>> {
    return call$<T, A, K>(this.client, action, ...args);
  }

  /** Every data value of `action`, then complete; unsubscribing cancels it. */
  stream<T = unknown, K extends ActionName<A> = ActionName<A>>(action: K, ...args: CallArgs<A, K>): Observable<ActionResult<A, K, T>> {
    return stream$<T, A, K>(this.client, action, ...args);
  }

  /**
   * A call with input both ways: sends each value of `input$` into the open
   * call (`for item in out` in Python), ends the input when `input$`
   * completes, and emits every value the handler sends; see {@link channel$}.
   */
  channel<T = unknown, I = unknown, K extends ActionName<A> = ActionName<A>>(
    action: K, input$: Observable<I>, ...args: CallArgs<A, K>
  ): Observable<ActionResult<A, K, T>> {
    return channel$<T, I, A, K>(this.client, action, input$, ...args);
  }

  /** Upload `source` into `action`'s handler: progress events, then its result; unsubscribing cancels. See {@link upload$}. */
  upload<R = unknown>(action: string, source: UploadSource, options?: Omit<UploadOptions, 'onProgress' | 'signal'>): Observable<TransferEvent<R>> {
    return upload$<R>(this.client, action, source, options);
  }

  /** Download what `action`'s handler sends with `out.send_file`: progress events, then the bytes. See {@link download$}. */
  download(action: string, data?: unknown, options?: Omit<DownloadOptions, 'onProgress' | 'onChunk' | 'signal'>): Observable<TransferEvent<Uint8Array>> {
    return download$(this.client, action, data, options);
  }

  /** Let Python call `fn` by `name` (`server.call_client`); returns the function that removes it. See {@link IgorClient.expose}. */
  expose<D = unknown, R = unknown>(name: string, fn: ExposedFunction<D, R>): () => void {
    return this.client.expose(name, fn);
  }

  /** Send `data` to the inbox of background process `processId`; see {@link IgorClient.sendToProcess}. */
  sendToProcess(processId: string, data?: unknown): void {
    this.client.sendToProcess(processId, data);
  }

  /** Pushes by push name or process id (their data). */
  on<T = unknown>(name: string | number): Observable<T> {
    return on$<T>(this.client, name);
  }

  /** Pushes by push name or process id (the whole {@link Push}). */
  pushes<T = unknown>(name: string | number): Observable<Push<T>> {
    return pushes$<T>(this.client, name);
  }

  /** Angular calls this when the providing injector is destroyed: closes the connection. */
  ngOnDestroy(): void {
    this.client.close();
  }
}
