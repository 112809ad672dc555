/**
 * {@link Connection}: the one WebSocket of an {@link IgorClient} and its life:
 * opening it (with a time limit), introducing the client, reconnecting with
 * backoff, and holding what waits for it (bounded by `maxQueuedBytes`). It
 * knows nothing of calls, pushes or exposed functions: it hands every message
 * to its {@link ConnectionHost}, the client, as socket.io-client's Manager
 * hands packets to its Socket.
 *
 * @packageDocumentation
 */

import { IgorError } from './errors.js';
import type { WireError } from './errors.js';
import type { ConnectionStatus, IgorClientOptions, ReconnectOptions, StatusEvent, WebSocketLike } from './options.js';
import { MalformedBinary, decode } from './binary.js';
import type { Payload } from './binary.js';
import { deferred } from './util.js';
import type { Deferred } from './util.js';
import { DEFAULT_LIMITS, HTTP_HINTS, WS_OPEN, connectUrl, httpStatusOf, limitsOf, protocolOf, resolveWebSocket } from './websocket.js';
import type { ServerLimits } from './websocket.js';

/** Something that waits for the connection: sent, in order, once it is ready. */
export interface Queued {
  /** The UTF-8 bytes it holds, counted against `maxQueuedBytes`; it may grow while it waits. */
  size: number;
  /** Write it; called once, when the connection is ready. */
  send(): void;
}

/** What the connection tells the client it serves. */
export interface ConnectionHost {
  /** A message from the server that is not the connection's own (introduction answers are). */
  receive(message: Record<string, unknown>): void;
  /** The connection dropped or could not be made: what was sent on it will never be answered. */
  lost(error: IgorError): void;
  /** Closed for good: fail what is still open or waiting. `error` is undefined after {@link Connection.close}. */
  shutdown(error: IgorError | undefined, why: string): void;
  /** An error that belongs to no call (an unreadable message). */
  reportError(error: IgorError): void;
}

export const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;
export const DEFAULT_CONNECT_TIMEOUT = 10000;
/** The close code of a server that restarts (RFC 6455): `igor dev` reloading the backend. */
export const CLOSE_SERVICE_RESTART = 1012;

/** @internal The connection of one {@link IgorClient}. */
export class Connection {
  private readonly _reconnect: Required<ReconnectOptions> | null;
  private readonly _maxQueuedBytes: number;
  private readonly _connectTimeout: number;
  private _socket: WebSocketLike | null = null;
  /** Bumped whenever a socket is given up, so that its late events are ignored. */
  private _generation = 0;
  private _status: ConnectionStatus = 'closed';
  private _attempt = 0;
  private _retryTimer: ReturnType<typeof setTimeout> | undefined;
  private _connectTimer: ReturnType<typeof setTimeout> | undefined;
  private _ready: Deferred<void> = deferred<void>();
  /** Closed by close() or a final failure; until connect(), new calls fail at once instead of waiting. */
  private _closed = false;
  private _everOpened = false;
  private _finalError: IgorError | undefined;
  private _nextId = 1;
  /** The stream id of the introduction waiting for its answer. */
  private _introducing: number | undefined;
  /**
   * The secret the server gave with the latest introduction. Presented on the
   * next one, it proves that a parked session is ours: without it the server
   * refuses the id with 409 while the session is parked. The server rotates
   * it on every introduction, so only the latest one is kept.
   */
  private _resume: string | undefined;
  private readonly _queue: Queued[] = [];
  private _queuedBytes = 0;
  private readonly _statusListeners = new Set<(event: StatusEvent) => void>();
  /** The protocol of the current (or latest) connection: 3, 2 or 1; 0 before the first one opened. */
  private _protocol = 0;
  private _limits: ServerLimits = DEFAULT_LIMITS;
  /** Opened under protocol 3 and the hello has not come yet: introduce (or become ready) when it does. */
  private _awaitingHello = false;
  /**
   * Messages that wait behind one whose Blob is being read, so that the
   * order of messages on the connection is the order they were written in.
   */
  private _writing: Payload[] = [];

  constructor(
    readonly url: string,
    private readonly _options: IgorClientOptions,
    private readonly _host: ConnectionHost,
  ) {
    this._maxQueuedBytes = _options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this._connectTimeout = _options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT;
    const r = _options.reconnect;
    this._reconnect = r
      ? { initialDelay: 250, maxDelay: 10000, factor: 2, jitter: 0.5, maxAttempts: Infinity, ...(typeof r === 'object' ? r : {}) }
      : null;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  get ready(): Promise<void> {
    return this._ready.promise;
  }

  /** True after close() or a final failure, until connect(). */
  get closed(): boolean {
    return this._closed;
  }

  /** Why the connection closed for good, unless it was close(). */
  get finalError(): IgorError | undefined {
    return this._finalError;
  }

  /** Stream ids are unique per client, across connections, and never reused. */
  nextId(): number {
    return this._nextId++;
  }

  /** Start connecting, unless connecting, open or retrying already; resolves when ready. */
  open(): Promise<void> {
    if (this._status !== 'closed') return this._ready.promise;
    if (this._closed) {
      this._closed = false;
      this._finalError = undefined;
      this._attempt = 0;
      if (this._ready.settled) this._ready = deferred<void>();
    }
    this._connect();
    return this._ready.promise;
  }

  /** Close for good (until {@link open}): stop reconnecting and fail what is open or waiting. */
  close(): void {
    if (this._closed) return;
    this._shutdown(undefined, 'the client was closed');
  }

  get socket(): WebSocketLike | null { return this._socket; } // for pacing.ts, which pauses its reading for a slow consumer
  /** The protocol the server chose for the current (or latest) connection: 3, 2 or 1; 0 before any opened. */
  get protocol(): number {
    return this._protocol;
  }

  /** The server's figures from its hello (protocol 3), else its defaults. */
  get limits(): ServerLimits {
    return this._limits;
  }

  /**
   * Write one message if the socket is open; else drop it: the close event
   * fails what is in flight. A payload still being read (a Blob inside) holds
   * back what is written after it until it is sent.
   */
  write(payload: Payload): void {
    const socket = this._socket;
    if (!socket || socket.readyState !== WS_OPEN) return;
    if (this._writing.length === 0 && (typeof payload === 'string' || payload instanceof Uint8Array)) {
      socket.send(payload);
      return;
    }
    const queue = this._writing;
    queue.push(payload);
    if (queue.length === 1) this._drain(socket, queue);
  }

  /** Send what waits in `queue`, in order, awaiting each payload still being read; a new socket has a new queue. */
  private _drain(socket: WebSocketLike, queue: Payload[]): void {
    while (queue.length > 0 && queue === this._writing && socket.readyState === WS_OPEN) {
      const head = queue[0];
      if (typeof head === 'string' || head instanceof Uint8Array) {
        queue.shift();
        socket.send(head);
        continue;
      }
      head.then(
        (bytes) => {
          queue.shift();
          if (queue === this._writing && socket.readyState === WS_OPEN) socket.send(bytes);
          this._drain(socket, queue);
        },
        (error: unknown) => {
          queue.shift();
          this._host.reportError(
            new IgorError(`a message with a Blob inside was not sent: ${(error as Error)?.message ?? error}`, 0, 'BlobUnreadable', { cause: error }),
          );
          this._drain(socket, queue);
        },
      );
      return;
    }
  }

  /** Count `size` more bytes as waiting for the connection, or the QueueFull error if they do not fit. */
  reserve(size: number, what: string, streamId?: number): IgorError | undefined {
    if (this._queuedBytes + size > this._maxQueuedBytes) {
      return new IgorError(
        `${what}: ${this._queuedBytes} bytes wait for the connection already, and ${size} more would pass maxQueuedBytes (${this._maxQueuedBytes})`,
        0, 'QueueFull', { streamId });
    }
    this._queuedBytes += size;
    return undefined;
  }

  /** Wait for the connection; its bytes must have been {@link reserve}d. */
  enqueue(item: Queued): void {
    this._queue.push(item);
  }

  /** Stop waiting (a call that timed out or was aborted before it went out). */
  dequeue(item: Queued): void {
    const index = this._queue.indexOf(item);
    if (index < 0) return;
    this._queue.splice(index, 1);
    this._queuedBytes -= item.size;
  }

  onStatus(listener: (event: StatusEvent) => void): () => void {
    this._statusListeners.add(listener);
    return () => {
      this._statusListeners.delete(listener);
    };
  }

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

  private _connect(): void {
    const generation = ++this._generation;
    this._introducing = undefined;
    this._setStatus('connecting');
    resolveWebSocket(this._options.WebSocket).then(
      (WebSocketClass) => {
        if (generation !== this._generation || this._closed) return;
        let socket: WebSocketLike;
        try {
          const { url, protocols } = connectUrl(this.url, this._options.token, this._options.tokenIn);
          socket = new WebSocketClass(url, protocols);
          // Browsers hand binary messages out as Blobs by default, `ws` as Buffers: an ArrayBuffer is read at once, in order.
          socket.binaryType = 'arraybuffer';
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
        if (generation !== this._generation || this._closed) return;
        // No WebSocket class at all: retrying cannot help.
        this._shutdown(error, error.message);
      },
    );
  }

  private _attach(socket: WebSocketLike, generation: number): void {
    this._socket = socket;
    this._writing = [];
    let opened = false;
    let failed = false;
    let errorMessage: string | undefined;
    const current = (): boolean => generation === this._generation && this._socket === socket;
    const limit = this._connectTimeout;
    if (Number.isFinite(limit)) {
      this._connectTimer = setTimeout(() => {
        this._connectTimer = undefined;
        if (!current() || this._status !== 'connecting') return;
        const stage = opened ? 'answer to its introduction' : 'answer to the opening handshake';
        fail(undefined, new IgorError(`cannot connect to ${this.url}: no ${stage} within ${limit} ms (connectTimeout)`, 0, 'ConnectionFailed'));
      }, limit);
    }
    socket.onopen = () => {
      if (!current()) return;
      opened = true;
      this._protocol = protocolOf(socket.protocol);
      this._limits = DEFAULT_LIMITS;
      // A protocol 3 server sends its hello first: its figures are known before anything is sent.
      this._awaitingHello = this._protocol >= 3;
      if (!this._awaitingHello) this._introduce();
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
    const fail = (event?: { code?: number; reason?: string }, given?: IgorError): void => {
      if (failed) return;
      failed = true;
      this._socket = null;
      const code = event?.code ?? 1006;
      let error: IgorError;
      if (given) {
        error = given;
      } else if (opened) {
        const how = `(code ${code}${event?.reason ? ': ' + event.reason : ''})`;
        error =
          code === CLOSE_SERVICE_RESTART
            ? new IgorError(`the backend reloaded: ${this.url} closed the connection ${how}`, 0, 'BackendReloaded')
            : new IgorError(`the connection to ${this.url} closed ${how}`, 0, 'ConnectionClosed');
      } else {
        const status = httpStatusOf(errorMessage);
        const hint = status !== undefined ? HTTP_HINTS[status] : undefined;
        const detail =
          errorMessage ??
          'the server is not running, or refused the handshake (a missing or wrong token is answered 401, a refused Host/Origin 403)';
        error = new IgorError(`cannot connect to ${this.url}: ${detail}${hint ? ` (${hint})` : ''}`, status ?? 0, 'ConnectionFailed');
      }
      // The socket is given up, not closed yet, when the time limit passed.
      if (given) this._closeSocket(socket);
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
    const streamId = this.nextId();
    this._introducing = streamId;
    const data = this._resume === undefined ? { client_id: clientId } : { client_id: clientId, resume: this._resume };
    this.write(JSON.stringify({ streamId, action: 'introduce_self', data }));
  }

  /** Keep the resume secret of an introduction as `clientId` (ours, or one the app made with `call('introduce_self')`). */
  noteIntroduction(data: unknown): void {
    const d = data as { client_id?: unknown; resume?: unknown } | null | undefined;
    if (!d || typeof d !== 'object' || typeof d.resume !== 'string') return;
    if (d.client_id !== undefined && d.client_id !== this._options.clientId) return;
    this._resume = d.resume;
  }

  /** An answer to the introduction: its data (the id, the resume secret), its close, or a refusal. */
  private _introduced(m: Record<string, unknown>): void {
    const clientId = this._options.clientId;
    if ('error' in m) {
      this._introducing = undefined;
      const error = IgorError.fromWire(m as unknown as WireError, m.streamId as number, 'introduce_self');
      // 409 after we have been open once: the server most likely still
      // holds our previous connection (it has not noticed the drop yet),
      // which it will let go of: retry. A 409 on the first introduction
      // means another live window uses this id: fail.
      this._connectionLost(
        new IgorError(`cannot introduce as ${JSON.stringify(clientId)}: ${error.message}`, error.code, error.type),
        !(this._reconnect && error.code === 409 && this._everOpened),
      );
      return;
    }
    this.noteIntroduction(m.data);
    if ('close' in m) {
      this._introducing = undefined;
      this._becomeReady();
    }
  }

  private _becomeReady(): void {
    if (this._connectTimer !== undefined) clearTimeout(this._connectTimer);
    this._connectTimer = undefined;
    this._attempt = 0;
    this._everOpened = true;
    // Send what waited first, in order, so that a call made by an 'open'
    // listener or after `await ready` cannot overtake it.
    const generation = this._generation;
    while (this._queue.length > 0 && generation === this._generation) {
      const item = this._queue.shift()!;
      this._queuedBytes -= item.size;
      item.send();
    }
    if (generation !== this._generation) return;
    this._setStatus('open');
    this._ready.resolve();
  }

  private _receive(raw: unknown): void {
    let message: unknown;
    if (typeof raw === 'string') {
      try {
        message = JSON.parse(raw);
      } catch {
        this._host.reportError(new IgorError('the server sent a message that is not JSON', 0, 'ProtocolError'));
        return;
      }
    } else if (raw instanceof ArrayBuffer || ArrayBuffer.isView(raw)) {
      try {
        message = decode(raw);
      } catch (error) {
        const streamId = error instanceof MalformedBinary && typeof error.streamId === 'number' ? error.streamId : undefined;
        this._host.reportError(new IgorError(`the server sent a malformed binary message: ${(error as Error).message}`, 0, 'ProtocolError', { streamId }));
        return;
      }
    } else return;
    if (!message || typeof message !== 'object' || Array.isArray(message)) return;
    const m = message as Record<string, unknown>;
    if (this._awaitingHello && m.hello && typeof m.hello === 'object' && m.streamId === undefined) {
      this._awaitingHello = false;
      this._limits = limitsOf(m.hello as Record<string, unknown>);
      this._introduce();
      return;
    }
    if (this._introducing !== undefined && m.streamId === this._introducing && m.callId === undefined) {
      this._introduced(m);
      return;
    }
    this._host.receive(m);
  }

  private _closeSocket(socket: WebSocketLike | null): void {
    if (!socket) return;
    try {
      socket.close(1000);
    } catch {
      // already closing
    }
  }

  /**
   * The connection dropped or could not be made. Fail what was in flight,
   * then retry (if allowed) or close for good.
   */
  private _connectionLost(error: IgorError, permanent: boolean): void {
    const socket = this._socket;
    this._socket = null;
    this._generation++;
    this._introducing = undefined;
    if (this._connectTimer !== undefined) clearTimeout(this._connectTimer);
    this._connectTimer = undefined;
    this._closeSocket(socket);
    this._host.lost(error);
    const r = this._reconnect;
    if (!permanent && r && this._attempt < r.maxAttempts) {
      this._attempt++;
      const base = Math.min(r.maxDelay, r.initialDelay * Math.pow(r.factor, this._attempt - 1));
      // A reloaded backend's successor listens on the same socket already: waiting would only keep the UI waiting.
      const delay = error.type === 'BackendReloaded' ? 0 : Math.round(base * (1 - Math.min(Math.max(r.jitter, 0), 1) * Math.random()));
      if (this._ready.settled) this._ready = deferred<void>();
      this._setStatus('reconnecting', { delay, error });
      this._retryTimer = setTimeout(() => {
        this._retryTimer = undefined;
        if (!this._closed) this._connect();
      }, delay);
      return;
    }
    this._shutdown(error, error.message);
  }

  /** Close for good, failing everything still open or waiting. */
  private _shutdown(error: IgorError | undefined, why: string): void {
    this._closed = true;
    this._finalError = error;
    this._generation++;
    this._introducing = undefined;
    if (this._retryTimer !== undefined) clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    if (this._connectTimer !== undefined) clearTimeout(this._connectTimer);
    this._connectTimer = undefined;
    const socket = this._socket;
    this._socket = null;
    this._closeSocket(socket);
    this._queue.length = 0;
    this._queuedBytes = 0;
    this._host.shutdown(error, why);
    if (this._ready.settled) this._ready = deferred<void>();
    this._ready.reject(error ?? new IgorError(why, 0, 'ConnectionClosed'));
    this._setStatus('closed', error ? { error } : {});
  }
}

