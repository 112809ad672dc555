/**
 * The public types of {@link IgorClient}'s options, status and pushes. Apart
 * from the class so that every module (the connection, the calls, typed.ts)
 * can import them without importing the client, which keeps the module graph
 * free of cycles.
 *
 * @packageDocumentation
 */

import type { IgorError } from './errors.js';

/** The part of the WebSocket API the client uses: the browser's `WebSocket` and Node's `ws` both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server chose (`'igor.v3'`, `'igor.v2'`, `'igor'`); protocol 1 is assumed without it. */
  readonly protocol?: string;
  /** Set to `'arraybuffer'` so that binary messages arrive as ArrayBuffers (browsers default to Blobs). */
  binaryType?: string;
  /** Text for JSON messages; bytes for protocol 3's binary messages. */
  send(data: string | Uint8Array): void;
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
   * Not given (or `undefined`): in a browser, the `token` of the page
   * address's fragment (`#token=...`, where `igor app` and `--static` put
   * it), else none. `null`: connect without a token.
   */
  token?: string | null;
  /**
   * How the token travels. `'protocol'` (default): as the WebSocket
   * subprotocol `'igor.token.' + token` beside `'igor.v3'` and `'igor.v2'`, which browsers can send
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
   * The bytes of a stream's values that may wait for its `for await` loop (a
   * `download`'s `onChunk`), or for its first consumer, before the client
   * stops reading the connection until the loop takes one (default 8 MiB;
   * `Infinity`: no bound). A slow consumer then paces the server's
   * `out.send_file` / `send_chunks` instead of filling memory, at the price
   * of holding up everything else on the connection meanwhile. Only in Node
   * with `ws` 8.3 or later: elsewhere a WebSocket cannot stop reading, and
   * what waits is unbounded. Per stream: {@link IgorStream.maxBuffer}.
   */
  maxStreamBuffer?: number;
  /**
   * How long one attempt to connect may take, in ms (default 10000): the
   * WebSocket's opening handshake and, with `clientId`, the introduction. An
   * attempt still unfinished then is abandoned as `'ConnectionFailed'` and,
   * with `reconnect`, retried after the usual backoff. A server that accepts
   * the TCP connection but never answers (a stopped process, a wedged proxy)
   * would otherwise leave the client connecting for as long as the platform's
   * own timeout, minutes in some browsers. `Infinity`: no limit.
   */
  connectTimeout?: number;
  /**
   * Open the connection as soon as the client is constructed (default
   * `true`). With `false` the client stays `'closed'` until
   * {@link IgorClient.connect} is called; calls and process messages made
   * before then wait, as they do while connecting, and go out once connected.
   */
  autoConnect?: boolean;
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
 * - `'closed'`: not connected and not trying to: after {@link IgorClient.close},
 *   after a failure with reconnection off (or given up), or, with
 *   `autoConnect: false`, before the first {@link IgorClient.connect}. Only
 *   `connect()` opens it again.
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

/**
 * A function the server may call (see {@link IgorClient.expose}): it gets the
 * call's data and an `AbortSignal` that aborts when the server stops waiting
 * (its timeout passed) or the connection drops, and returns the answer or a
 * promise of it. A throw or a rejection is sent back as the call's error.
 */
export type ExposedFunction<D = unknown, R = unknown> = (data: D, signal: AbortSignal) => R | PromiseLike<R>;
