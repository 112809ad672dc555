/**
 * {@link IgorClient}: one WebSocket to an Igor server, many concurrent calls
 * on it, pushes from background processes, reconnection.
 *
 * @packageDocumentation
 */

import { IgorError } from './errors.js';
import type { WireError } from './errors.js';
import { IgorStream } from './stream.js';
import type { ActionName, ActionResult, CallArgs } from './typed.js';

/** The part of the WebSocket API the client uses: the browser's `WebSocket` and Node's `ws` both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
}

/** A WebSocket class: `WebSocket` in a browser or Electron renderer, `ws`'s `WebSocket` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Tuning of the reconnection backoff. Every field is optional. */
export interface ReconnectOptions {
  /** Delay before the first retry, in ms (default 250). */
  initialDelay?: number;
  /** Largest delay between retries, in ms (default 10000). */
  maxDelay?: number;
  /** Each retry waits this many times longer than the previous one (default 2). */
  factor?: number;
  /**
   * Fraction of each delay that is randomised, 0..1 (default 0.5: a delay of
   * 1000 ms becomes 500..1000 ms), so that many windows restarting together
   * do not hammer the server in step.
   */
  jitter?: number;
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

/** Options of {@link IgorClient}. Every one is optional. */
export interface IgorClientOptions {
  /**
   * The server's token (from its `IGOR_READY` line, or the value you gave it).
   * `null`/`undefined`: connect without a token.
   */
  token?: string | null;
  /**
   * How the token travels. `'protocol'` (default): as the WebSocket
   * subprotocol `'igor.token.' + token` beside `'igor.v2'`, which browsers can send
   * and which keeps the token out of URLs and logs. `'query'`: as
   * `?token=...` in the URL. A token with characters a subprotocol cannot
   * hold (anything but letters, digits and ``!#$%&'*+-.^_`|~``) always goes in
   * the query.
   */
  tokenIn?: 'protocol' | 'query';
  /**
   * Introduce this connection under this id (the built-in `introduce_self`
   * action) before anything else is sent. Processes can then push to it by
   * id, and after a reconnect the server hands the same id its session back
   * (within the server's `session_timeout`, 10 s by default).
   */
  clientId?: string | number;
  /**
   * Reconnect after the connection drops or cannot be opened, with
   * exponential backoff and jitter (default `false`). `true` uses the default
   * {@link ReconnectOptions}.
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Default timeout of every call and stream, in ms (default: none). A call
   * option `timeout` overrides it.
   */
  timeout?: number;
  /**
   * The most that may wait for the connection, in bytes of JSON (UTF-8):
   * calls, their input and process messages made while connecting or
   * reconnecting (default 16 MiB). Past it a new call fails at once, and
   * `IgorStream.send` / {@link IgorClient.sendToProcess} throw, with type
   * `'QueueFull'`; what waits already is kept and sent in order.
   */
  maxQueuedBytes?: number;
  /**
   * The WebSocket class to use. Default: in a browser or Electron renderer,
   * `globalThis.WebSocket`; in Node, the `ws` package (loaded with a dynamic
   * `import('ws')`) when it is installed, else Node's global `WebSocket`
   * (Node 22+). `ws` is preferred in Node because it reports the HTTP status
   * of a refused handshake (401, 403), so such a refusal is not retried.
   */
  WebSocket?: WebSocketConstructor;
}

/** Options of one call or stream. */
export interface CallOptions {
  /**
   * Fail with an {@link IgorError} of type `'Timeout'` if the stream has not
   * ended after this many ms (counted from the call, including any wait for
   * the connection), and cancel it on the server.
   */
  timeout?: number;
  /** Abort the call: it fails with type `'Aborted'` and is cancelled on the server. */
  signal?: AbortSignal;
}

/**
 * The connection's state:
 * - `'connecting'`: a WebSocket is being opened (and the client introduced);
 * - `'open'`: ready, calls go out at once;
 * - `'reconnecting'`: the connection is down and a retry is scheduled
 *   (see {@link StatusEvent.delay});
 * - `'closed'`: for good, after {@link IgorClient.close}, or a failure with
 *   reconnection off (or given up).
 */
export type ConnectionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** What status listeners receive. */
export interface StatusEvent {
  status: ConnectionStatus;
  /** Failed attempts in a row so far (0 once open). */
  attempt: number;
  /** With `'reconnecting'`: ms until the next attempt. */
  delay?: number;
  /** Why the connection closed or could not open, if it was not {@link IgorClient.close}. */
  error?: IgorError;
}

/** A push from a background process. */
export interface Push<T = unknown> {
  /** The push's name (the first argument of `self.output.send` in Python). */
  action: string;
  /** The id of the process that sent it. */
  processId: string | number;
  data: T;
}

/** A function receiving pushes: `(data, push) => ...`. */
export type PushListener<T = unknown> = (data: T, push: Push<T>) => void;

/**
 * An observer of pushes. When listening by process id, `error` receives the
 * process's failure and `complete` its end (`{"streamId": P, "close": true}`).
 */
export interface PushObserver<T = unknown> {
  next?: PushListener<T>;
  error?: (error: IgorError) => void;
  complete?: () => void;
}

/**
 * A function the server may call (see {@link IgorClient.expose}): it gets the
 * call's data and an `AbortSignal` that aborts when the server stops waiting
 * (its timeout passed) or the connection drops, and returns the answer or a
 * promise of it. A throw or a rejection is sent back as the call's error.
 */
export type ExposedFunction<D = unknown, R = unknown> = (data: D, signal: AbortSignal) => R | PromiseLike<R>;

type Deferred<T> = {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
  settled: boolean;
};

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A rejection nobody awaits must not crash Node: mark it handled here; whoever awaits still sees it.
  promise.catch(() => {});
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      d.settled = true;
      resolve(value);
    },
    reject: (error) => {
      d.settled = true;
      reject(error);
    },
  };
  return d;
}

type Entry = {
  stream: IgorStream<unknown>;
  data: unknown;
  sent: boolean;
  timer?: ReturnType<typeof setTimeout>;
  cleanup?: () => void;
  /** Internal streams (introduce_self) get their messages here instead of through the stream. */
  internal?: (message: Record<string, unknown>) => void;
  /** Input given before the call went out: sent right after it, in order. */
  input?: string[];
  /** While queued: the call's JSON, made when it was queued, and the UTF-8 bytes it and its input hold. */
  text?: string;
  size?: number;
};

/** A message with no stream of its own (input to a process) waiting for the connection. */
type QueuedMessage = { text: string; size: number };

const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;

/** The UTF-8 size of `text`, without encoding it. */
function utf8Length(text: string): number {
  let size = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    // Two bytes below U+0800; three above, and four for a surrogate pair (two units: one extra each).
    size += unit < 0x800 || (unit >= 0xd800 && unit < 0xe000) ? 1 : 2;
  }
  return size;
}

/** The answer to a server call for a thrown value: its message, and its type (and code, for an IgorError). */
function errorAnswer(error: unknown): { error: string; type: string; code?: number } {
  if (error instanceof IgorError) {
    return { error: error.message || error.type, type: error.type, ...(error.code >= 400 && error.code <= 599 ? { code: error.code } : {}) };
  }
  if (error instanceof Error) return { error: error.message || error.name, type: error.name || 'Error' };
  return { error: String(error), type: 'Error' };
}

const SUBPROTOCOL_SAFE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const WS_OPEN = 1;

let wsImport: Promise<WebSocketConstructor> | undefined;

/** True in Node (not in a browser, nor in an Electron renderer, which has a `window`). */
function isNode(): boolean {
  const g = globalThis as { process?: { versions?: { node?: unknown } }; window?: unknown };
  return typeof g.process?.versions?.node === 'string' && typeof g.window === 'undefined';
}

/**
 * Find a WebSocket class: the given one; in a browser the global one; in Node
 * the `ws` package when it can be imported, else the global one (Node 22+).
 */
function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return Promise.resolve(given);
  const native = (globalThis as { WebSocket?: unknown }).WebSocket;
  const nativeCtor = typeof native === 'function' ? (native as WebSocketConstructor) : undefined;
  if (nativeCtor && !isNode()) return Promise.resolve(nativeCtor);
  return importWs().catch((error: unknown) => {
    if (nativeCtor) return nativeCtor;
    throw error;
  });
}

function importWs(): Promise<WebSocketConstructor> {
  if (!wsImport) {
    // A variable module name keeps browser bundlers from trying to bundle `ws`.
    const name = 'ws';
    wsImport = import(/* webpackIgnore: true */ /* @vite-ignore */ name).then(
      (mod: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor }) => {
        const ctor = mod.WebSocket ?? mod.default;
        if (typeof ctor !== 'function') throw new Error('the "ws" module has no WebSocket class');
        return ctor;
      },
      (cause: unknown) => {
        wsImport = undefined;
        throw new IgorError(
          'no WebSocket implementation: this runtime has no global WebSocket and the "ws" package ' +
            'could not be loaded (npm install ws, or pass { WebSocket } to IgorClient)',
          0,
          'ConnectionFailed',
          { cause },
        );
      },
    );
  }
  return wsImport;
}

/** The HTTP status in `ws`'s "Unexpected server response: 401" error, if any. */
function httpStatusOf(message: string | undefined): number | undefined {
  const match = message ? /Unexpected server response: (\d{3})/.exec(message) : null;
  return match ? Number(match[1]) : undefined;
}

const HTTP_HINTS: Record<number, string> = {
  400: 'the server refused the handshake as malformed',
  401: 'the server requires a token and this one is missing or wrong',
  403: 'the server refused this Host or Origin',
  503: 'the server already has its maximum number of clients',
};

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
 * The client connects as soon as it is constructed. Calls made before the
 * connection is ready, or while it is reconnecting, wait for it (they have
 * not been sent, so nothing runs twice) and go out, in order, once it is
 * ready; a call `timeout` bounds that wait too. Calls made once the client is
 * closed for good fail at once with type `'ConnectionClosed'`. Calls that are
 * in flight when the connection drops fail with type `'ConnectionClosed'`:
 * they are never sent again, since the server may have run them already.
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

  private readonly _options: IgorClientOptions;
  private readonly _reconnect: Required<ReconnectOptions> | null;
  private _socket: WebSocketLike | null = null;
  private _generation = 0;
  private _status: ConnectionStatus = 'connecting';
  private _attempt = 0;
  private _retryTimer: ReturnType<typeof setTimeout> | undefined;
  private _ready: Deferred<void> = deferred<void>();
  private _closedForGood = false;
  /** Set by {@link close}: streams it ends are not reported as unhandled errors. */
  private _closedByUser = false;
  private _everOpened = false;
  private _finalError: IgorError | undefined;
  private _nextId = 1;
  private readonly _open = new Map<number, Entry>();
  private readonly _queue: Array<Entry | QueuedMessage> = [];
  private _queuedBytes = 0;
  private readonly _maxQueuedBytes: number;
  private readonly _listeners = new Map<string, Set<PushObserver<any>>>();
  private readonly _statusListeners = new Set<(event: StatusEvent) => void>();
  private readonly _errorListeners = new Set<(error: IgorError) => void>();
  private readonly _exposed = new Map<string, ExposedFunction<any, unknown>>();
  /** Server calls being answered on the current connection, by callId. */
  private readonly _serverCalls = new Map<number | string, AbortController>();

  /**
   * @param url - the server, e.g. `'ws://127.0.0.1:5678'` (the `url` of its `IGOR_READY` line).
   * @param options - token, client id, reconnection, default timeout, WebSocket class.
   */
  constructor(url: string, options: IgorClientOptions = {}) {
    this.url = url;
    this._options = { ...options };
    const max = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    if (typeof max !== 'number' || !(max > 0)) {
      throw new IgorError(`maxQueuedBytes must be a positive number of bytes, got ${JSON.stringify(max)}`, 0, 'TypeError');
    }
    this._maxQueuedBytes = max;
    const r = options.reconnect;
    this._reconnect = r
      ? {
          initialDelay: 250,
          maxDelay: 10000,
          factor: 2,
          jitter: 0.5,
          maxAttempts: Infinity,
          ...(typeof r === 'object' ? r : {}),
        }
      : null;
    this._connect();
  }

  /**
   * A promise that resolves when the client is connected (and introduced,
   * with `clientId`) and rejects with an {@link IgorError} if it closes for
   * good first. Read it again after a drop: while reconnecting it is a new
   * pending promise for the next connection.
   */
  get ready(): Promise<void> {
    return this._ready.promise;
  }

  /** The connection's current {@link ConnectionStatus}. */
  get status(): ConnectionStatus {
    return this._status;
  }

  /** The client id given in the options, if any. */
  get clientId(): string | number | undefined {
    return this._options.clientId;
  }

  /**
   * Call an action and get its last data value (`undefined` if it sent none).
   * Rejects with an {@link IgorError}: the server's error, or `'Timeout'`,
   * `'Aborted'`, `'ConnectionClosed'`.
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
    const stream = this._stream<R>(action, data, options);
    return new Promise<R>((resolve, reject) => {
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
   */
  stream<T = unknown, K extends ActionName<A> = ActionName<A>>(
    action: K,
    ...[data, options]: CallArgs<A, K>
  ): IgorStream<ActionResult<A, K, T>> {
    return this._stream(action, data, options);
  }

  /** {@link stream} for any action name and data, unchecked: what `call` and `stream` share. */
  private _stream<T>(action: string, data?: unknown, options: CallOptions = {}): IgorStream<T> {
    const stream = new IgorStream<T>(this, this._nextId++, action);
    const entry: Entry = { stream: stream as IgorStream<unknown>, data, sent: false };
    if (this._closedForGood) {
      stream._end('error', this._closedError(stream, 'the client is closed'));
      return stream;
    }
    this._open.set(stream.id, entry);
    const timeout = options.timeout ?? this._options.timeout;
    if (timeout !== undefined && timeout !== null && Number.isFinite(timeout)) {
      entry.timer = setTimeout(() => {
        this._abandon(
          entry,
          new IgorError(`${action}: no end within ${timeout} ms`, 0, 'Timeout', { streamId: stream.id, action }),
        );
      }, timeout);
    }
    const signal = options.signal;
    if (signal) {
      const onAbort = (): void => {
        this._abandon(entry, new IgorError(`${action}: aborted`, 0, 'Aborted', { streamId: stream.id, action, cause: signal.reason }));
      };
      if (signal.aborted) {
        onAbort(); // fails the stream; nothing is sent
        return stream;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      entry.cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    if (this._status === 'open') {
      this._send(entry);
      return stream;
    }
    const text = this._callText(entry);
    if (text === undefined) return stream;
    const size = utf8Length(text);
    const full = this._room(size, action, stream.id);
    if (full) {
      this._forget(entry);
      stream._end('error', full);
      return stream;
    }
    entry.text = text;
    entry.size = size;
    this._queue.push(entry);
    return stream;
  }

  /** Count `size` more bytes as waiting for the connection, or the QueueFull error if they do not fit. */
  private _room(size: number, what: string, streamId?: number): IgorError | undefined {
    if (this._queuedBytes + size > this._maxQueuedBytes) {
      return new IgorError(
        `${what}: ${this._queuedBytes} bytes wait for the connection already, and ${size} more would pass maxQueuedBytes (${this._maxQueuedBytes})`,
        0, 'QueueFull', { streamId });
    }
    this._queuedBytes += size;
    return undefined;
  }

  /**
   * Listen to pushes from background processes, by push name (the `action`
   * the process sends, e.g. `'counter_increment'`) or by process id (e.g.
   * `'counter_process'`, which also tells the process's failure and end to an
   * observer's `error`/`complete`). Listeners survive reconnections.
   *
   * @returns a function that removes the listener.
   */
  on<T = unknown>(name: string | number, listener: PushListener<T> | PushObserver<T>): () => void {
    const observer: PushObserver<T> = typeof listener === 'function' ? { next: listener } : listener;
    const key = String(name);
    let set = this._listeners.get(key);
    if (!set) this._listeners.set(key, (set = new Set()));
    set.add(observer);
    return () => {
      const current = this._listeners.get(key);
      if (!current) return;
      current.delete(observer);
      if (current.size === 0) this._listeners.delete(key);
    };
  }

  /**
   * Be told of every status change (`'connecting'`, `'open'`,
   * `'reconnecting'`, `'closed'`).
   *
   * @returns a function that removes the listener.
   */
  onStatus(listener: (event: StatusEvent) => void): () => void {
    this._statusListeners.add(listener);
    return () => {
      this._statusListeners.delete(listener);
    };
  }

  /**
   * Be told of errors that belong to no call: a server error message without
   * a stream id, a process failure nobody listens to, an unreadable message.
   * Without any such listener they are logged with `console.warn`.
   *
   * @returns a function that removes the listener.
   */
  onError(listener: (error: IgorError) => void): () => void {
    this._errorListeners.add(listener);
    return () => {
      this._errorListeners.delete(listener);
    };
  }

  /**
   * Let the server call `fn` by `name`: Python's
   * `server.call_client(client_id, name, data, timeout=30)` gets what `fn`
   * returns (or resolves to), or a `RemoteError` carrying the message of what
   * it throws (an `Error`'s `name` becomes the error's type). `fn` runs
   * asynchronously, so a slow one (a dialog waiting for the user) holds up no
   * other stream or push. Its `signal` aborts when the server stops waiting
   * (the Python caller got `CallTimeout`) or the connection drops; the answer
   * is then not sent. Exposed functions survive reconnections.
   *
   * ```ts
   * const unexpose = igor.expose('confirm', (data: { question: string }, signal) => showDialog(data.question, signal));
   * ```
   *
   * @param name - the name Python calls; a name not exposed is answered with
   *   code 404, type `UnknownAction`.
   * @returns a function that removes `fn` again.
   * @throws {@link IgorError} of type `'TypeError'` for an empty name or a
   *   non-function, `'AlreadyExposed'` when `name` is exposed already.
   */
  expose<D = unknown, R = unknown>(name: string, fn: ExposedFunction<D, R>): () => void {
    if (typeof name !== 'string' || name === '') {
      throw new IgorError(`expose: the name must be a non-empty string, got ${JSON.stringify(name)}`, 0, 'TypeError');
    }
    if (typeof fn !== 'function') throw new IgorError(`expose(${JSON.stringify(name)}): fn must be a function`, 0, 'TypeError');
    if (this._exposed.has(name)) {
      throw new IgorError(`expose: ${JSON.stringify(name)} is exposed already (call its unexpose function first)`, 0, 'AlreadyExposed');
    }
    const exposed = fn as ExposedFunction<any, unknown>;
    this._exposed.set(name, exposed);
    return () => {
      if (this._exposed.get(name) === exposed) this._exposed.delete(name);
    };
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
   * if the client closes for good first.
   *
   * @throws {@link IgorError} of type `'TypeError'` for an empty id or data
   *   that is not JSON-serialisable, `'ConnectionClosed'` once the client is
   *   closed for good.
   */
  sendToProcess(processId: string, data?: unknown): void {
    if (typeof processId !== 'string' || processId === '') {
      throw new IgorError(`sendToProcess: the process id must be a non-empty string, got ${JSON.stringify(processId)}`, 0, 'TypeError');
    }
    if (this._closedForGood) {
      throw new IgorError(`sendToProcess(${JSON.stringify(processId)}): the client is closed`, 0, 'ConnectionClosed', { cause: this._finalError });
    }
    const what = `sendToProcess(${JSON.stringify(processId)})`;
    const text = this._serialise({ process: processId, data: data === undefined ? null : data }, what);
    if (this._status === 'open') {
      this._writeText(text);
      return;
    }
    const size = utf8Length(text);
    const full = this._room(size, what);
    if (full) throw full;
    this._queue.push({ text, size });
  }

  /**
   * Close the connection for good: stop reconnecting, fail every open and
   * waiting call with type `'ConnectionClosed'`, and reject {@link ready}.
   * Listeners are kept but receive nothing more.
   */
  close(): void {
    if (this._closedForGood) return;
    this._closedByUser = true;
    this._shutdown(undefined, 'the client was closed');
  }

  // ---- for IgorStream ------------------------------------------------------

  /** @internal Called by {@link IgorStream} for an error no subscriber has an `error` callback for. */
  reportStreamError(error: IgorError): void {
    // Streams ended by this client's own close() are expected: nothing to report.
    if (this._closedByUser && error.type === 'ConnectionClosed') return;
    this._reportError(error);
  }

  /** @internal Called by {@link IgorStream.cancel}. */
  cancelStream(stream: IgorStream<unknown>): void {
    const entry = this._open.get(stream.id);
    if (!entry) return;
    this._forget(entry);
    if (entry.sent && this._status === 'open') this._write({ streamId: stream.id, cancel: true });
  }

  /** @internal Called by {@link IgorStream.send} and {@link IgorStream.end}. */
  sendInput(stream: IgorStream<unknown>, input: { data: unknown } | { end: true }): void {
    const entry = this._open.get(stream.id);
    if (!entry || entry.stream !== stream) {
      throw new IgorError(`${stream.action}: cannot send input, the stream has ended`, 0, 'StreamClosed', { streamId: stream.id, action: stream.action });
    }
    const message = 'end' in input ? { streamId: stream.id, end: true } : { streamId: stream.id, data: input.data === undefined ? null : input.data };
    const text = this._serialise(message, stream.action, stream.id);
    if (entry.sent) {
      this._writeText(text);
      return;
    }
    // Not sent yet (connecting, reconnecting): the input waits with the call and follows it.
    const size = utf8Length(text);
    const full = this._room(size, stream.action, stream.id);
    if (full) throw full;
    entry.size = (entry.size ?? 0) + size;
    (entry.input ??= []).push(text);
  }

  /** JSON text of an outgoing message, or an IgorError of type 'TypeError' saying what could not be serialised. */
  private _serialise(message: Record<string, unknown>, what: string, streamId?: number): string {
    let text: string | undefined;
    let cause: unknown;
    try {
      text = JSON.stringify(message);
    } catch (e) {
      cause = e;
    }
    const data = message.data;
    // JSON.stringify drops a function or a symbol as a field without failing: refuse it too.
    if (text === undefined || typeof data === 'function' || typeof data === 'symbol') {
      throw new IgorError(`${what}: data is not JSON-serialisable${cause ? ': ' + (cause as Error).message : ''}`, 0, 'TypeError', {
        streamId,
        cause,
      });
    }
    return text;
  }

  // ---- connection ----------------------------------------------------------

  private _setStatus(status: ConnectionStatus, extra: { delay?: number; error?: IgorError } = {}): void {
    this._status = status;
    const event: StatusEvent = { status, attempt: this._attempt, ...extra };
    for (const listener of [...this._statusListeners]) {
      try {
        listener(event);
      } catch (e) {
        setTimeout(() => {
          throw e;
        }, 0);
      }
    }
  }

  private _connectUrl(): { url: string; protocols: string[] } {
    // Protocol 2: the server may put a stream's close on its last message, one message per call instead of two.
    const protocols = ['igor.v2'];
    const token = this._options.token;
    if (token === undefined || token === null || token === '') return { url: this.url, protocols };
    if (this._options.tokenIn !== 'query' && SUBPROTOCOL_SAFE.test(token)) {
      return { url: this.url, protocols: [...protocols, 'igor.token.' + token] };
    }
    // Relative to the page in a browser (`/socket`); an absolute URL is required elsewhere.
    const base = (globalThis as { location?: { href?: string } }).location?.href;
    const url = new URL(this.url, base);
    url.searchParams.set('token', token);
    return { url: url.toString(), protocols };
  }

  private _connect(): void {
    const generation = ++this._generation;
    this._setStatus('connecting');
    resolveWebSocket(this._options.WebSocket).then(
      (WebSocketClass) => {
        if (generation !== this._generation || this._closedForGood) return;
        let socket: WebSocketLike;
        try {
          const { url, protocols } = this._connectUrl();
          socket = new WebSocketClass(url, protocols);
        } catch (cause) {
          // A URL that cannot be parsed (or a constructor that refuses it)
          // will be refused again: retrying cannot help.
          this._connectionLost(
            new IgorError(`cannot connect to ${this.url}: ${(cause as Error)?.message ?? cause}`, 0, 'ConnectionFailed', { cause }),
            true,
          );
          return;
        }
        this._attach(socket, generation);
      },
      (error: IgorError) => {
        if (generation !== this._generation || this._closedForGood) return;
        // No WebSocket class at all: retrying cannot help.
        this._shutdown(error, error.message);
      },
    );
  }

  private _attach(socket: WebSocketLike, generation: number): void {
    this._socket = socket;
    let opened = false;
    let failed = false;
    let errorMessage: string | undefined;
    const current = (): boolean => generation === this._generation && this._socket === socket;
    socket.onopen = () => {
      if (!current()) return;
      opened = true;
      this._introduce();
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (!current()) return;
      this._receive(event.data);
    };
    socket.onerror = (event: { message?: string; error?: { message?: string } }) => {
      errorMessage = event?.message ?? event?.error?.message ?? errorMessage;
      // Some implementations (Node's built-in WebSocket on a refused
      // handshake) fire 'error' and never 'close': fail the attempt here.
      if (!opened && current()) fail();
    };
    socket.onclose = (event: { code?: number; reason?: string }) => {
      if (!current()) return;
      fail(event);
    };
    const fail = (event?: { code?: number; reason?: string }): void => {
      if (failed) return;
      failed = true;
      this._socket = null;
      const code = event?.code ?? 1006;
      let error: IgorError;
      if (opened) {
        error = new IgorError(
          `the connection to ${this.url} closed (code ${code}${event?.reason ? ': ' + event.reason : ''})`,
          0,
          'ConnectionClosed',
        );
      } else {
        const status = httpStatusOf(errorMessage);
        const hint = status !== undefined ? HTTP_HINTS[status] : undefined;
        const detail =
          errorMessage ??
          'the server is not running, or refused the handshake (a missing or wrong token is answered 401, a refused Host/Origin 403)';
        error = new IgorError(
          `cannot connect to ${this.url}: ${detail}${hint ? ` (${hint})` : ''}`,
          status ?? 0,
          'ConnectionFailed',
        );
      }
      // A refused handshake (4xx, not 503) will be refused again: do not retry it.
      const permanent = error.code >= 400 && error.code < 500;
      this._connectionLost(error, permanent);
    };
  }

  /** The socket is open: introduce ourselves if asked to, then become ready. */
  private _introduce(): void {
    const clientId = this._options.clientId;
    if (clientId === undefined || clientId === null) {
      this._becomeReady();
      return;
    }
    const stream = new IgorStream<unknown>(this, this._nextId++, 'introduce_self');
    const entry: Entry = {
      stream,
      data: { client_id: clientId },
      sent: false,
      internal: (message) => {
        if ('error' in message) {
          this._forget(entry);
          const error = IgorError.fromWire(message as unknown as WireError, stream.id, 'introduce_self');
          // 409 after we have been open once: the server most likely still
          // holds our previous connection (it has not noticed the drop yet),
          // which it will let go of: retry. A 409 on the first introduction
          // means another live window uses this id: fail.
          this._connectionLost(
            new IgorError(`cannot introduce as ${JSON.stringify(clientId)}: ${error.message}`, error.code, error.type),
            !(this._reconnect && error.code === 409 && this._everOpened),
          );
        } else if ('close' in message) {
          this._forget(entry);
          this._becomeReady();
        }
      },
    };
    this._open.set(stream.id, entry);
    this._send(entry);
  }

  private _becomeReady(): void {
    this._attempt = 0;
    this._everOpened = true;
    // Send what waited first, in order, so that a call made by an 'open'
    // listener or after `await ready` cannot overtake it.
    const generation = this._generation;
    while (this._queue.length > 0 && generation === this._generation) {
      const entry = this._queue.shift()!;
      this._queuedBytes -= entry.size ?? 0;
      if (!('stream' in entry)) this._writeText(entry.text);
      else if (this._open.get(entry.stream.id) === entry) this._send(entry);
    }
    if (generation !== this._generation) return;
    this._setStatus('open');
    this._ready.resolve();
  }

  /**
   * The connection dropped or could not be made. Fail what was in flight,
   * then retry (if allowed) or close for good.
   */
  private _connectionLost(error: IgorError, permanent: boolean): void {
    const socket = this._socket;
    this._socket = null;
    this._generation++;
    this._abortServerCalls(error);
    if (socket) {
      try {
        socket.close(1000);
      } catch {
        // already closing
      }
    }
    for (const entry of [...this._open.values()]) {
      if (!entry.sent) continue;
      this._forget(entry);
      if (entry.internal) continue;
      entry.stream._end(
        'error',
        new IgorError(
          `${entry.stream.action}: ${error.type === 'ConnectionClosed' ? error.message : 'the connection was lost'} before the call ended; it was not sent again`,
          0,
          'ConnectionClosed',
          { streamId: entry.stream.id, action: entry.stream.action, cause: error },
        ),
      );
    }
    const r = this._reconnect;
    if (!permanent && r && this._attempt < r.maxAttempts) {
      this._attempt++;
      const base = Math.min(r.maxDelay, r.initialDelay * Math.pow(r.factor, this._attempt - 1));
      const delay = Math.round(base * (1 - Math.min(Math.max(r.jitter, 0), 1) * Math.random()));
      if (this._ready.settled) this._ready = deferred<void>();
      this._setStatus('reconnecting', { delay, error });
      this._retryTimer = setTimeout(() => {
        this._retryTimer = undefined;
        if (!this._closedForGood) this._connect();
      }, delay);
      return;
    }
    this._shutdown(error, error.message);
  }

  /** Close for good, failing everything still open or waiting. */
  private _shutdown(error: IgorError | undefined, why: string): void {
    this._closedForGood = true;
    this._finalError = error;
    this._generation++;
    if (this._retryTimer !== undefined) clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      try {
        socket.close(1000);
      } catch {
        // already closing
      }
    }
    this._queue.length = 0;
    this._queuedBytes = 0;
    this._abortServerCalls(error ?? new IgorError(why, 0, 'ConnectionClosed'));
    for (const entry of [...this._open.values()]) {
      this._forget(entry);
      if (!entry.internal) entry.stream._end('error', this._closedError(entry.stream, why));
    }
    const readyError = error ?? new IgorError(`${why}`, 0, 'ConnectionClosed');
    if (this._ready.settled) this._ready = deferred<void>();
    this._ready.reject(readyError);
    this._setStatus('closed', error ? { error } : {});
  }

  private _closedError(stream: { id: number; action: string }, why: string): IgorError {
    const base = this._finalError;
    return new IgorError(`${stream.action}: ${why}`, base && base.type === 'ConnectionFailed' ? base.code : 0,
      base && base.type === 'ConnectionFailed' ? 'ConnectionFailed' : 'ConnectionClosed',
      { streamId: stream.id, action: stream.action, cause: base });
  }

  // ---- streams ---------------------------------------------------------------

  private _send(entry: Entry): void {
    const text = this._callText(entry);
    if (text === undefined) return;
    entry.sent = true;
    entry.text = undefined;
    entry.size = undefined;
    this._writeText(text);
    const input = entry.input;
    entry.input = undefined;
    if (input) for (const line of input) this._writeText(line);
  }

  /** The call's JSON (made once, when it was queued), or undefined after failing its stream with a TypeError. */
  private _callText(entry: Entry): string | undefined {
    if (entry.text !== undefined) return entry.text;
    const message: Record<string, unknown> = { streamId: entry.stream.id, action: entry.stream.action };
    if (entry.data !== undefined) message.data = entry.data;
    try {
      return JSON.stringify(message);
    } catch (cause) {
      this._forget(entry);
      entry.stream._end(
        'error',
        new IgorError(`${entry.stream.action}: data is not JSON-serialisable: ${(cause as Error).message}`, 0, 'TypeError', {
          streamId: entry.stream.id,
          action: entry.stream.action,
          cause,
        }),
      );
      return undefined;
    }
  }

  private _write(message: unknown): void {
    this._writeText(JSON.stringify(message));
  }

  private _writeText(text: string): void {
    const socket = this._socket;
    if (!socket || socket.readyState !== WS_OPEN) return; // the close event will fail what is in flight
    socket.send(text);
  }

  /** Stop tracking a stream (timer, abort listener, queue). */
  private _forget(entry: Entry): void {
    if (this._open.get(entry.stream.id) === entry) this._open.delete(entry.stream.id);
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.cleanup?.();
    entry.cleanup = undefined;
    if (!entry.sent) {
      const index = this._queue.indexOf(entry);
      if (index >= 0) {
        this._queue.splice(index, 1);
        this._queuedBytes -= entry.size ?? 0;
      }
    }
  }

  /** Give up on a stream (timeout, abort): cancel it on the server and fail it here. */
  private _abandon(entry: Entry, error: IgorError): void {
    if (this._open.get(entry.stream.id) !== entry) return;
    this._forget(entry);
    if (entry.sent && this._status === 'open') this._write({ streamId: entry.stream.id, cancel: true });
    entry.stream._end('error', error);
  }

  // ---- incoming ----------------------------------------------------------------

  private _receive(raw: unknown): void {
    let text: string;
    if (typeof raw === 'string') text = raw;
    else if (raw instanceof Uint8Array) text = new TextDecoder().decode(raw); // a `ws` configured to hand out Buffers
    else return; // Igor sends text frames only
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      this._reportError(new IgorError('the server sent a message that is not JSON', 0, 'ProtocolError'));
      return;
    }
    if (!message || typeof message !== 'object' || Array.isArray(message)) return;
    const m = message as Record<string, unknown>;
    const streamId = m.streamId as string | number | undefined;

    if (m.callId !== undefined) {
      this._onServerCall(m);
      return;
    }
    if (typeof m.process === 'string') {
      // The server refused input this client sent to a process.
      if ('error' in m) this._processError(m.process, IgorError.fromWire(m as unknown as WireError));
      return;
    }
    if (typeof m.action === 'string') {
      this._dispatchPush(m.action, streamId, m.data);
      return;
    }
    const entry = typeof streamId === 'number' ? this._open.get(streamId) : undefined;
    if (entry && entry.sent) {
      if (entry.internal) {
        entry.internal(m);
        return;
      }
      if ('error' in m) {
        this._forget(entry);
        entry.stream._end('error', IgorError.fromWire(m as unknown as WireError, entry.stream.id, entry.stream.action));
      } else {
        if ('data' in m) entry.stream._push(m.data);
        if ('close' in m) {
          // Alone, or (protocol 2) on the stream's last value.
          this._forget(entry);
          entry.stream._end('complete');
        }
      }
      return;
    }
    if (typeof streamId === 'number') return; // a late answer of a stream we already ended here
    if (typeof streamId === 'string') {
      // Process ids are non-empty strings and our stream ids integers, so a
      // string id is never one of our streams: it is a process's error or end.
      const observers = this._listeners.get(String(streamId));
      if ('error' in m) {
        this._processError(streamId, IgorError.fromWire(m as unknown as WireError, streamId));
      } else if ('close' in m && observers) {
        for (const o of [...observers]) if (o.complete) this._safely(() => o.complete!());
      }
      return;
    }
    if ('error' in m) this._reportError(IgorError.fromWire(m as unknown as WireError));
  }

  /** An error about process `processId`: to its observers' `error`, or to onError when none has one. */
  private _processError(processId: string, error: IgorError): void {
    const observers = this._listeners.get(processId);
    const handlers = observers ? [...observers].filter((o) => o.error) : [];
    if (handlers.length === 0) this._reportError(error);
    for (const o of handlers) this._safely(() => o.error!(error));
  }

  /** `{"callId", "action", "data"}`: run the exposed function and answer; `{"callId", "cancel": true}`: give up on it. */
  private _onServerCall(m: Record<string, unknown>): void {
    const callId = m.callId;
    if (typeof callId !== 'number' && typeof callId !== 'string') return;
    if (m.cancel === true) {
      const controller = this._serverCalls.get(callId);
      this._serverCalls.delete(callId);
      controller?.abort(new IgorError(`the server stopped waiting for call ${callId}`, 0, 'Cancelled'));
      return;
    }
    const action = m.action;
    if (typeof action !== 'string') return;
    const fn = this._exposed.get(action);
    if (!fn) {
      this._write({ callId, error: `this client exposes no function named ${JSON.stringify(action)}`, code: 404, type: 'UnknownAction' });
      return;
    }
    const controller = new AbortController();
    this._serverCalls.set(callId, controller);
    const answer = (message: Record<string, unknown>): void => {
      // Cancelled, or the connection it came on is gone: the server expects no answer.
      if (this._serverCalls.get(callId) !== controller) return;
      this._serverCalls.delete(callId);
      let text: string;
      try {
        text = this._serialise({ callId, ...message }, `the answer of ${JSON.stringify(action)}`);
      } catch (error) {
        text = JSON.stringify({ callId, ...errorAnswer(error) });
      }
      this._writeText(text);
    };
    // Through a promise: a synchronous throw is answered like a rejection, and nothing here waits for fn.
    new Promise<unknown>((resolve) => resolve(fn(m.data, controller.signal))).then(
      (result) => answer({ data: result === undefined ? null : result }),
      (error: unknown) => answer(errorAnswer(error)),
    );
  }

  /** The connection is gone: the server calls it carried can no longer be answered. */
  private _abortServerCalls(reason: IgorError): void {
    const controllers = [...this._serverCalls.values()];
    this._serverCalls.clear();
    for (const controller of controllers) controller.abort(reason);
  }

  private _dispatchPush(action: string, processId: string | number | undefined, data: unknown): void {
    const push: Push = { action, processId: processId as string | number, data };
    const targets = new Set<PushObserver<any>>();
    for (const key of processId !== undefined && String(processId) !== action ? [action, String(processId)] : [action]) {
      const set = this._listeners.get(key);
      if (set) for (const o of set) targets.add(o);
    }
    for (const o of targets) if (o.next) this._safely(() => o.next!(data, push));
  }

  private _reportError(error: IgorError): void {
    if (this._errorListeners.size === 0) {
      console.warn('[igor-client]', error.message);
      return;
    }
    for (const listener of [...this._errorListeners]) this._safely(() => listener(error));
  }

  private _safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      setTimeout(() => {
        throw e;
      }, 0);
    }
  }
}
