/**
 * {@link IgorClient}: one WebSocket to an Igor server, many concurrent calls
 * on it, pushes from background processes, functions the server may call,
 * reconnection. The socket's life is {@link Connection}'s (connection.ts);
 * this class is the calls made over it.
 *
 * @packageDocumentation
 */

import { Calls } from './calls.js';
import { checkCallArguments, checkClientArguments, checkFunction } from './check.js';
import { Connection } from './connection.js';
import type { ConnectionHost } from './connection.js';
import { IgorError } from './errors.js';
import type { WireError } from './errors.js';
import { ExposedFunctions } from './exposed.js';
import type {
  CallOptions,
  ConnectionStatus,
  ExposedFunction,
  IgorClientOptions,
  PushListener,
  PushObserver,
  StatusEvent,
} from './options.js';
import { PushListeners } from './pushes.js';
import type { IgorStream } from './stream.js';
import { download, upload } from './transfer.js';
import type { DownloadOptions, DownloadResult, UploadOptions, UploadSource } from './transfer.js';
import type { ActionName, ActionResult, CallArgs } from './typed.js';
import { safely } from './util.js';
import { encode } from './binary.js';
import { tokenFromLocation } from './websocket.js';


/**
 * A client of one Igor server.
 *
 * ```ts
 * const igor = new IgorClient('ws://127.0.0.1:5678', { token, clientId: 'main-window', reconnect: true });
 * await igor.ready;
 * const greeting = await igor.call('hello', { name: 'Ada' });
 * for await (const progress of igor.stream('jobs.run', { n: 10 })) console.log(progress);
 * const off = igor.on('counter_increment', (data) => console.log(data.counter));
 * igor.close();
 * ```
 *
 * The client connects as soon as it is constructed (unless `autoConnect:
 * false`: then at {@link connect}). Calls made before the connection is
 * ready, or while it is reconnecting, wait for it (they have not been sent,
 * so nothing runs twice) and go out, in order, once it is ready; a call
 * `timeout` bounds that wait too. Calls made once the client is closed fail at
 * once with type `'ConnectionClosed'`, until {@link connect} opens it again.
 * Calls that are in flight when the connection drops fail with type
 * `'ConnectionClosed'`: they are never sent again, since the server may have
 * run them already.
 *
 * Misuse (an option of the wrong type, an action name that is not a string,
 * data JSON cannot carry, a non-function to {@link expose}) throws a native
 * `TypeError` at once; `call` rejects with it.
 *
 * @typeParam A - the actions' types, generated from the Python annotations by
 * `python -m igor types module:API` (`new IgorClient<Api>(url)`): then `call`
 * and `stream` accept only its action names, with their data, and give values
 * of their types. Without it (the default `any`) any action goes, with
 * `unknown` data, and every typed client is also an `IgorClient`.
 */
export class IgorClient<A = any> {
  /** The server URL as given. */
  readonly url: string;

  private readonly _clientId: string | number | undefined;
  private readonly _connection: Connection;
  private readonly _calls: Calls;
  private readonly _pushes: PushListeners;
  private readonly _exposed: ExposedFunctions;
  private readonly _errorListeners = new Set<(error: IgorError) => void>();

  /**
   * @param url - the server, e.g. `'ws://127.0.0.1:5678'` (the `url` of its `IGOR_READY` line).
   * @param options - token, client id, reconnection, timeouts, WebSocket class.
   * @throws TypeError for a url that is not a string, or an option of the wrong type.
   */
  constructor(url: string, options: IgorClientOptions = {}) {
    checkClientArguments(url, options);
    this.url = url;
    this._clientId = options.clientId ?? undefined;
    const host: ConnectionHost = {
      receive: (message) => this._receive(message),
      lost: (error) => this._lost(error),
      shutdown: (error, why) => this._shutdown(error, why),
      reportError: (error) => this._reportError(error),
    };
    // No token given (null is "none"): in a page, the one its address's #token= fragment carries.
    const token = options.token === undefined ? tokenFromLocation() : options.token;
    this._connection = new Connection(url, { ...options, token }, host);
    this._calls = new Calls(this._connection, options.timeout ?? undefined, (error) => this._reportError(error), options.maxStreamBuffer);
    this._pushes = new PushListeners((error) => this._reportError(error));
    this._exposed = new ExposedFunctions((payload) => this._connection.write(payload), this._connection);
    if (options.autoConnect !== false) this._connection.open();
  }

  /**
   * A promise that resolves when the client is connected (and introduced,
   * with `clientId`) and rejects with an {@link IgorError} if it closes
   * first. Read it again after a drop: while reconnecting it is a new
   * pending promise for the next connection.
   */
  get ready(): Promise<void> {
    return this._connection.ready;
  }

  /** The connection's current {@link ConnectionStatus}. */
  get status(): ConnectionStatus {
    return this._connection.status;
  }

  /** The client id given in the options, if any. */
  get clientId(): string | number | undefined {
    return this._clientId;
  }

  /**
   * Open the connection: the first time with `autoConnect: false`, or again
   * after {@link close} (or after a failure that closed it). The client is
   * then as good as new, with its listeners and exposed functions, and under
   * `clientId` it gets its session back if the server still holds it.
   * Connecting, open or reconnecting already: nothing more happens.
   *
   * @returns {@link ready}: resolves once connected, rejects if the attempt
   *   closes the client (a refused handshake, reconnection off).
   */
  connect(): Promise<void> {
    return this._connection.open();
  }

  /**
   * Call an action and get its last data value (`undefined` if it sent none).
   * Rejects with an {@link IgorError}: the server's error, or `'Timeout'`,
   * `'Aborted'`, `'ConnectionClosed'`; with a `TypeError` for data JSON
   * cannot carry, or arguments of the wrong type.
   *
   * @param action - the action name, e.g. `'hello'` or `'jobs.run'`.
   * @param data - any JSON value, handed to the handler (omit for `None`).
   * @typeParam T - with an untyped client, the type of the result.
   */
  call<T = unknown, K extends ActionName<A> = ActionName<A>>(
    action: K,
    ...[data, options]: CallArgs<A, K>
  ): Promise<ActionResult<A, K, T>> {
    type R = ActionResult<A, K, T>;
    return new Promise<R>((resolve, reject) => {
      const stream = this._stream<R>('call', action, data, options);
      let last: R | undefined;
      stream.subscribe({
        next: (value) => {
          last = value;
        },
        error: reject,
        complete: () => resolve(last as R),
      });
    });
  }

  /**
   * Call an action and get every data value it sends, as an
   * {@link IgorStream}: iterate it with `for await`, `subscribe` to it, hand
   * it to RxJS `from()`, or `cancel()` it.
   *
   * @throws TypeError for data JSON cannot carry, or arguments of the wrong type.
   */
  stream<T = unknown, K extends ActionName<A> = ActionName<A>>(
    action: K,
    ...[data, options]: CallArgs<A, K>
  ): IgorStream<ActionResult<A, K, T>> {
    return this._stream('stream', action, data, options);
  }

  /** {@link stream} for any action name and data: what `call` and `stream` share. */
  private _stream<T>(what: string, action: string, data?: unknown, options?: CallOptions): IgorStream<T> {
    checkCallArguments(what, action, options);
    return this._calls.start<T>(action, data, options);
  }

  /**
   * Upload `source` into the handler of `action`: the action is called with
   * `options.data`, then the source follows as its input in chunks (bare
   * bytes, 1 MiB by default) that the handler reads with `out.receive()`,
   * iteration, or `out.receive_file(path)`, then the end of input. Chunks are
   * paced by the server's `read` acknowledgements (protocol 3), so however
   * slow the handler, its inbox never overflows and the server holds at most
   * its input window of this upload. Resolves with the handler's result.
   *
   * ```ts
   * const saved = await igor.upload('files.save', input.files[0], {
   *   data: { name: input.files[0].name },
   *   onProgress: (done, total) => (bar.value = done / total!),
   *   signal: controller.signal,
   * });
   * ```
   *
   * @param source - a Blob or File (read a chunk at a time), an ArrayBuffer or
   *   view, or an (async) iterable of chunks such as Node's `fs.createReadStream(path)`.
   * @throws TypeError for a source of another kind; rejects with
   *   {@link IgorError}: the handler's error, `'Aborted'` (the `signal`; the
   *   handler is cancelled), `'BinaryUnsupported'` (a protocol 2 server).
   */
  async upload<T = unknown>(action: ActionName<A>, source: UploadSource, options: UploadOptions = {}): Promise<T> {
    checkCallArguments('upload', action, { signal: options.signal, timeout: options.timeout });
    if (this._connection.status !== 'open') await this._connection.ready;
    const start = <R>(data: unknown, o: CallOptions): IgorStream<R> => this._calls.start<R>(action, data, o);
    return upload<T>(start, this._connection.limits, action, source, options);
  }

  /**
   * Download what the handler of `action` sends with `out.send_file(path)` or
   * `out.send_chunks(chunks)`: a `{"transfer": {size, name, type}}` header,
   * then bare chunks. Resolves with the joined bytes; with `options.onChunk`,
   * hands each chunk over as it comes instead (memory stays bounded) and
   * resolves with the header and the bytes received.
   *
   * @throws rejects with {@link IgorError}: the handler's error, `'Aborted'`
   *   (the `signal`), `'ProtocolError'` (a value that is not bytes).
   */
  download(action: ActionName<A>, data: unknown, options: DownloadOptions & { onChunk: NonNullable<DownloadOptions['onChunk']> }): Promise<DownloadResult>;
  download(action: ActionName<A>, data?: unknown, options?: DownloadOptions): Promise<Uint8Array>;
  download(action: ActionName<A>, data?: unknown, options: DownloadOptions = {}): Promise<Uint8Array | DownloadResult> {
    try {
      checkCallArguments('download', action, { signal: options.signal, timeout: options.timeout });
    } catch (error) {
      return Promise.reject(error);
    }
    const start = <R>(d: unknown, o: CallOptions): IgorStream<R> => this._calls.start<R>(action, d, o);
    return download(start, action, data, options);
  }

  /**
   * Listen to pushes from background processes, by push name (the `action`
   * the process sends, e.g. `'counter_increment'`) or by process id (e.g.
   * `'counter_process'`, which also tells the process's failure and end to an
   * observer's `error`/`complete`). Listeners survive reconnections.
   *
   * @returns a function that removes the listener.
   * @throws TypeError for a name that is not a string or number, or a listener that is neither a function nor an observer.
   */
  on<T = unknown>(name: string | number, listener: PushListener<T> | PushObserver<T>): () => void {
    return this._pushes.on(name, listener);
  }

  /**
   * Be told of every status change (`'connecting'`, `'open'`,
   * `'reconnecting'`, `'closed'`).
   *
   * @returns a function that removes the listener.
   * @throws TypeError for a listener that is not a function.
   */
  onStatus(listener: (event: StatusEvent) => void): () => void {
    checkFunction('onStatus: the listener', listener);
    return this._connection.onStatus(listener);
  }

  /**
   * Be told of errors that belong to no call: a server error message without
   * a stream id, a process failure nobody listens to, an unreadable message.
   * Without any such listener they are logged with `console.warn`.
   *
   * @returns a function that removes the listener.
   * @throws TypeError for a listener that is not a function.
   */
  onError(listener: (error: IgorError) => void): () => void {
    checkFunction('onError: the listener', listener);
    this._errorListeners.add(listener);
    return () => {
      this._errorListeners.delete(listener);
    };
  }

  /**
   * Let the server call `fn` by `name`: Python's
   * `server.call_client(client_id, name, data, timeout=30)` gets what `fn`
   * returns (or resolves to), or a `RemoteError` carrying the message of what
   * it throws (an `Error`'s `name` becomes the error's type; an `IgorError`
   * also sends its code and its `data`, binary included). `fn` runs
   * asynchronously, so a slow one (a dialog waiting for the user) holds up no
   * other stream or push. Its `signal` aborts when the server stops waiting
   * (the Python caller got `CallTimeout`) or the connection drops; the answer
   * is then not sent. Exposed functions survive reconnections.
   *
   * Exposing a name again replaces its function, as in the Python client;
   * the first one's unexpose function then no longer removes anything.
   *
   * ```ts
   * const unexpose = igor.expose('confirm', (data: { question: string }, signal) => showDialog(data.question, signal));
   * ```
   *
   * @param name - the name Python calls; a name not exposed is answered with
   *   code 404, type `UnknownAction`.
   * @returns a function that removes `fn` again.
   * @throws TypeError for an empty name or a non-function.
   */
  expose<D = unknown, R = unknown>(name: string, fn: ExposedFunction<D, R>): () => void {
    return this._exposed.expose(name, fn as ExposedFunction<any, unknown>);
  }

  /**
   * Send `data` to the inbox of the background process `processId` (Python's
   * `IgorProcess.receive()` returns it with this client's id). There is no
   * reply; when the server refuses it (no such process, or a process that
   * takes no input: type `'UnknownProcess'`, code 404; its inbox is full:
   * `'InboxFull'`, 429; the message was dropped) the error goes to the
   * `error` of the observers of {@link on}(processId), or to
   * {@link onError} when there are none.
   *
   * Sent before the connection is ready, or while it reconnects, the message
   * waits and goes out in order with the calls made around it; it is dropped
   * if the client closes first.
   *
   * @throws TypeError for an empty id or data that is not JSON-serialisable;
   *   {@link IgorError} of type `'ConnectionClosed'` once the client is
   *   closed, `'QueueFull'` when too much waits for the connection already.
   */
  sendToProcess(processId: string, data?: unknown): void {
    if (typeof processId !== 'string' || processId === '') {
      throw new TypeError(`sendToProcess: the process id must be a non-empty string, got ${JSON.stringify(processId) ?? String(processId)}`);
    }
    const what = `sendToProcess(${JSON.stringify(processId)})`;
    const encoded = encode({ process: processId, data: data === undefined ? null : data }, what);
    if (this._connection.closed) {
      throw new IgorError(`${what}: the client is closed`, 0, 'ConnectionClosed', { cause: this._connection.finalError });
    }
    const refused = (): IgorError | undefined => {
      const { protocol, limits } = this._connection;
      if (protocol >= 3 && encoded.size > limits.maxMessageSize) {
        return new IgorError(`${what}: ${encoded.size} bytes is more than the server reads (max_message_size ${limits.maxMessageSize})`, 0, 'MessageTooBig');
      }
      return encoded.binary && protocol < 3
        ? new IgorError(`${what}: the server speaks protocol ${protocol}, which cannot carry binary data`, 0, 'BinaryUnsupported')
        : undefined;
    };
    if (this._connection.status === 'open') {
      const error = refused();
      if (error) throw error;
      this._connection.write(encoded.payload);
      return;
    }
    const size = encoded.size;
    const full = this._connection.reserve(size, what);
    if (full) throw full;
    this._connection.enqueue({
      size,
      send: () => {
        const error = refused();
        if (error) this._pushes.processError(processId, error);
        else this._connection.write(encoded.payload);
      },
    });
  }

  /**
   * Close the connection: stop reconnecting, fail every open and waiting
   * call with type `'ConnectionClosed'`, and reject {@link ready}. Listeners
   * and exposed functions are kept; they receive nothing until
   * {@link connect} opens the client again.
   */
  close(): void {
    this._connection.close();
  }

  // ---- from the connection -------------------------------------------------------

  /** The connection dropped: what was sent on it will never be answered; what waits, waits on. */
  private _lost(error: IgorError): void {
    this._exposed.abortAll(error);
    this._calls.lost(error);
  }

  /** Closed: fail everything still open or waiting. */
  private _shutdown(error: IgorError | undefined, why: string): void {
    this._exposed.abortAll(error ?? new IgorError(why, 0, 'ConnectionClosed'));
    this._calls.shutdown(error, why);
  }

  private _receive(m: Record<string, unknown>): void {
    const streamId = m.streamId as string | number | undefined;
    if (m.callId !== undefined) {
      this._exposed.handle(m);
      return;
    }
    if (typeof m.process === 'string') {
      // The server refused input this client sent to a process.
      if ('error' in m) this._pushes.processError(m.process, IgorError.fromWire(m as unknown as WireError));
      return;
    }
    if (typeof m.action === 'string') {
      this._pushes.dispatch(m.action, streamId, m.data);
      return;
    }
    if (this._calls.receive(m)) return;
    if (typeof streamId === 'string') {
      // Process ids are non-empty strings and our stream ids integers, so a
      // string id is never one of our streams: it is a process's error or end.
      if ('error' in m) this._pushes.processError(streamId, IgorError.fromWire(m as unknown as WireError, streamId));
      else if ('close' in m) this._pushes.complete(streamId);
      return;
    }
    if ('error' in m) this._reportError(IgorError.fromWire(m as unknown as WireError));
  }

  private _reportError(error: IgorError): void {
    if (this._errorListeners.size === 0) {
      console.warn('[igor-client]', error.message);
      return;
    }
    for (const listener of [...this._errorListeners]) safely(() => listener(error));
  }
}
