/**
 * `igor-client/rxjs`: the client's calls, streams, pushes and status as real
 * RxJS Observables (RxJS 6.5+ or 7, an optional peer dependency).
 *
 * They are cold, like Angular's HttpClient: nothing is sent until you
 * subscribe, each subscription makes its own call, and unsubscribing cancels
 * the call on the server.
 *
 * ```ts
 * import { IgorClient } from 'igor-client';
 * import { call$, stream$, on$ } from 'igor-client/rxjs';
 * const igor = new IgorClient(url, { token });
 * call$<string>(igor, 'hello', { name: 'Ada' }).subscribe(console.log);
 * stream$<number>(igor, 'jobs.run', { n: 10 }).pipe(take(3)).subscribe(console.log); // cancels after 3
 * on$<{ counter: number }>(igor, 'counter_increment').subscribe((d) => console.log(d.counter));
 * channel$<string, string>(igor, 'chat', lines$).subscribe(console.log); // lines$ in, answers out
 * ```
 *
 * @packageDocumentation
 */

import { Observable } from 'rxjs';
import type { Unsubscribable as RxUnsubscribable } from 'rxjs';
// 'rxjs/operators' serves both RxJS 6 and 7.
import { takeLast } from 'rxjs/operators';

import type { IgorClient } from './client.js';
import type { ConnectionStatus, Push, StatusEvent } from './options.js';
import type { DownloadOptions, UploadOptions, UploadSource } from './transfer.js';
import type { ActionName, ActionResult, CallArgs } from './typed.js';

/**
 * Every data value of `action`, as an Observable that completes when the
 * server closes the stream and errors with an {@link IgorError}. Each
 * subscription opens a new stream; unsubscribing before the end cancels it.
 * With a typed client (`IgorClient<Api>`) the action, data and values are
 * checked against `Api`.
 */
export function stream$<T = unknown, A = any, K extends ActionName<A> = ActionName<A>>(
  client: IgorClient<A>,
  action: K,
  ...[data, options]: CallArgs<A, K>
): Observable<ActionResult<A, K, T>> {
  type R = ActionResult<A, K, T>;
  return new Observable<R>((subscriber) => {
    const stream = (client as IgorClient).stream<R>(action, data, options);
    const subscription = stream.subscribe({
      next: (value) => subscriber.next(value),
      error: (error) => subscriber.error(error),
      complete: () => subscriber.complete(),
    });
    return () => subscription.unsubscribe();
  });
}

/**
 * A call with input both ways (a request-channel): subscribing opens the
 * stream `action` with `data`, then subscribes to `input$` and sends each of
 * its values to the handler (`for item in out` in Python); when `input$`
 * completes the input ends. Emits every value the handler sends and
 * completes when it returns.
 *
 * If `input$` errors (or emits a value that is not JSON-serialisable), the
 * call is cancelled on the server and the Observable errors with that error. When the call ends first (the handler returned, or
 * failed, e.g. with type `'InboxFull'` after input it did not read), `input$`
 * is unsubscribed. Unsubscribing cancels the call and unsubscribes `input$`.
 *
 * With a typed client (`IgorClient<Api>`) the action, data and values are
 * checked against `Api`; `I` types the input.
 *
 * ```ts
 * const typing$ = fromEvent(textarea, 'input').pipe(map(() => textarea.value));
 * channel$<{ words: number }, string>(igor, 'text.live', typing$).subscribe(({ words }) => show(words));
 * ```
 */
export function channel$<T = unknown, I = unknown, A = any, K extends ActionName<A> = ActionName<A>>(
  client: IgorClient<A>,
  action: K,
  input$: Observable<I>,
  ...[data, options]: CallArgs<A, K>
): Observable<ActionResult<A, K, T>> {
  type R = ActionResult<A, K, T>;
  return new Observable<R>((subscriber) => {
    const stream = (client as IgorClient).stream<R>(action, data, options);
    let input: RxUnsubscribable | undefined;
    let done = false;
    const stopInput = (): void => {
      done = true;
      input?.unsubscribe();
      input = undefined;
    };
    const fail = (error: unknown): void => {
      stopInput();
      output.unsubscribe(); // cancels the call
      subscriber.error(error);
    };
    const output = stream.subscribe({
      next: (value) => subscriber.next(value),
      error: (error) => {
        stopInput();
        subscriber.error(error);
      },
      complete: () => {
        stopInput();
        subscriber.complete();
      },
    });
    if (!stream.closed) {
      const subscription = input$.subscribe({
        next: (value) => {
          // The call may have ended while input$ was emitting synchronously.
          if (stream.inputClosed) return;
          try {
            stream.send(value);
          } catch (error) {
            fail(error); // a value that is not JSON-serialisable
          }
        },
        error: (error: unknown) => fail(error),
        complete: () => {
          input = undefined;
          stream.end();
        },
      });
      // input$ may have finished synchronously, or the call ended while it subscribed.
      if (done) subscription.unsubscribe();
      else if (!subscription.closed) input = subscription;
    }
    return () => {
      stopInput();
      output.unsubscribe();
    };
  });
}

/**
 * The last data value of `action` (like {@link IgorClient.call}), as an
 * Observable that emits once (if the action sent anything) and completes.
 * Unsubscribing before the end cancels the call.
 */
export function call$<T = unknown, A = any, K extends ActionName<A> = ActionName<A>>(
  client: IgorClient<A>,
  action: K,
  ...args: CallArgs<A, K>
): Observable<ActionResult<A, K, T>> {
  return stream$<T, A, K>(client, action, ...args).pipe(takeLast(1));
}

/**
 * Pushes from background processes, by push name or process id (see
 * {@link IgorClient.on}). Never completes when listening by push name; when
 * listening by process id it completes when the process says it has finished
 * and errors when it fails.
 */
export function on$<T = unknown>(client: IgorClient, name: string | number): Observable<T> {
  return new Observable<T>((subscriber) =>
    client.on<T>(name, {
      next: (data) => subscriber.next(data),
      error: (error) => subscriber.error(error),
      complete: () => subscriber.complete(),
    }),
  );
}

/** Like {@link on$}, but emits the whole {@link Push} (name, process id, data). */
export function pushes$<T = unknown>(client: IgorClient, name: string | number): Observable<Push<T>> {
  return new Observable<Push<T>>((subscriber) =>
    client.on<T>(name, {
      next: (_data, push) => subscriber.next(push),
      error: (error) => subscriber.error(error),
      complete: () => subscriber.complete(),
    }),
  );
}

/**
 * The connection's status: emits the current status at once, then every
 * change; completes after `'closed'`.
 */
export function status$(client: IgorClient): Observable<ConnectionStatus> {
  return new Observable<ConnectionStatus>((subscriber) => {
    subscriber.next(client.status);
    if (client.status === 'closed') {
      subscriber.complete();
      return undefined;
    }
    return client.onStatus((event: StatusEvent) => {
      subscriber.next(event.status);
      if (event.status === 'closed') subscriber.complete();
    });
  });
}

/** What {@link upload$} and {@link download$} emit: progress as it goes, then the result (last, once). */
export type TransferEvent<R> =
  | { type: 'progress'; done: number; total: number | null }
  | { type: 'result'; value: R };

/**
 * {@link IgorClient.upload} as an Observable: each subscription uploads
 * `source` once, emitting `{type: 'progress', done, total}` as the handler
 * reads, then `{type: 'result', value}` (the handler's return) and
 * completing. Unsubscribing before the end cancels the upload.
 */
export function upload$<R = unknown>(
  client: IgorClient<any>,
  action: string,
  source: UploadSource,
  options: Omit<UploadOptions, 'onProgress' | 'signal'> = {},
): Observable<TransferEvent<R>> {
  return transfer$((signal, onProgress) => client.upload<R>(action, source, { ...options, signal, onProgress }));
}

/**
 * {@link IgorClient.download} as an Observable: `{type: 'progress', done,
 * total}` after each chunk, then `{type: 'result', value}` with the joined
 * bytes. Unsubscribing before the end cancels the download.
 */
export function download$(
  client: IgorClient<any>,
  action: string,
  data?: unknown,
  options: Omit<DownloadOptions, 'onProgress' | 'onChunk' | 'signal'> = {},
): Observable<TransferEvent<Uint8Array>> {
  return transfer$((signal, onProgress) => client.download(action, data, { ...options, signal, onProgress }));
}

/** A transfer as an Observable: its progress events, then its result; unsubscribing aborts it. */
function transfer$<R>(
  start: (signal: AbortSignal, onProgress: (done: number, total: number | null) => void) => Promise<R>,
): Observable<TransferEvent<R>> {
  return new Observable<TransferEvent<R>>((subscriber) => {
    const controller = new AbortController();
    start(controller.signal, (done, total) => subscriber.next({ type: 'progress', done, total })).then(
      (value) => {
        subscriber.next({ type: 'result', value });
        subscriber.complete();
      },
      (error: unknown) => subscriber.error(error),
    );
    return () => controller.abort();
  });
}
