/**
 * {@link IgorStream}: the values of one call, consumable three ways
 * (`for await`, `subscribe`, or any Observable library through
 * `Symbol.observable`), without depending on any of them.
 *
 * @packageDocumentation
 */

import { IgorError } from './errors.js';
import { DEFAULT_MAX_STREAM_BUFFER, weightOf } from './pacing.js';

/** Receives a stream's values and its end. Every member is optional, as in RxJS. */
export interface StreamObserver<T> {
  /** One data value of the stream. */
  next?: (value: T) => void;
  /** The stream failed: an {@link IgorError} from the server or from the client. Nothing follows. */
  error?: (error: IgorError) => void;
  /** The stream ended normally (or was cancelled). Nothing follows. */
  complete?: () => void;
}

/** What {@link IgorStream.subscribe} returns; the same shape as an RxJS Subscription. */
export interface Unsubscribable {
  /** Stop receiving. Unsubscribing the last subscriber of an open stream cancels it on the server. */
  unsubscribe(): void;
  /** True once this subscriber will receive nothing more. */
  readonly closed: boolean;
}

/** What a stream needs from the client that opened it (an implementation detail of {@link IgorClient}). */
export interface StreamOwner {
  cancelStream(stream: IgorStream<unknown>): void;
  /** Tell an error that no subscriber has an `error` callback for (the client's `onError`). */
  reportStreamError?(error: IgorError): void;
  /** Send one input message (`{"streamId", "data"}`), or the end of input (`{"streamId", "end": true}`). */
  sendInput?(stream: IgorStream<unknown>, message: { data: unknown } | { end: true }): void;
  /** The {@link IgorStream.maxBuffer} of a new stream (the client's `maxStreamBuffer`). */
  readonly maxStreamBuffer?: number;
  /** The stream holds more than its bound, or no longer does: pause the socket's reading, or resume it (pacing.ts). */
  paceStream?(stream: IgorStream<unknown>, over: boolean): void;
}

type Sink<T> = {
  observer: StreamObserver<T>;
  closed: boolean;
};

/** Hand an exception thrown by a user callback to the host, without breaking the stream machinery. */
function reportLater(error: unknown): void {
  setTimeout(() => {
    throw error;
  }, 0);
}

/**
 * The values the server sends on one stream (one call of an action).
 *
 * The call is sent when the stream is created (it is "hot", like a Promise).
 * Values that arrive before anyone consumes the stream are kept and handed to
 * the first consumer, so `const s = igor.stream(...)` followed later by
 * `for await (const v of s)` loses nothing. After that, values go to every
 * current subscriber. A subscriber that arrives after the end is told the end
 * (complete or error) at once.
 *
 * The stream ends exactly once: complete (the server closed it, or you called
 * {@link IgorStream.cancel}), or error (an {@link IgorError}).
 *
 * Values wait, until they are taken, in a `for await` loop's iterator (and
 * for the first consumer); at most {@link maxBuffer} bytes of them: past that
 * the client stops reading the connection, in Node with `ws`, until the loop
 * takes one (see {@link maxBuffer}). Subscribers get each value as it comes.
 *
 * A stream is also a channel the other way: {@link IgorStream.send} hands
 * values to the handler while the call runs (it reads them with
 * `out.receive()` or `for item in out`), and {@link IgorStream.end} tells it
 * no more will come.
 *
 * @typeParam T - the type of the values the action sends.
 * @typeParam I - the type of the input values {@link IgorStream.send} takes.
 */
export class IgorStream<T = unknown, I = unknown> implements AsyncIterable<T> {
  /** The stream id on the wire (unique per client, never reused). */
  readonly id: number;
  /** The action this stream calls. */
  readonly action: string;

  private _owner: StreamOwner;
  private _buffer: T[] | null = [];
  private _sinks: Sink<T>[] = [];
  private _state: 'open' | 'complete' | 'error' = 'open';
  private _error: IgorError | undefined;
  private _hadConsumer = false;
  private _inputEnded = false;
  private _maxBuffer: number;
  /** Bytes waiting for the first consumer, in {@link _buffer}. */
  private _bufferBytes = 0;
  private _buffered = 0;
  private _maxBuffered = 0;
  /** The weight of the latest value to wait: the next one is guessed to be as large. */
  private _latest = 0;
  /** True while this stream has the socket paused. */
  private _over = false;
  /** True while subscribe() hands what waited to a new consumer. */
  private _handing = false;
  /** @internal Told of the server's `read` acknowledgements (protocol 3): set by the upload helper that paces this stream. */
  _onRead: ((count: number) => void) | undefined;

  /** Streams are made by {@link IgorClient.stream} and {@link IgorClient.call}; there is no need to construct one. */
  constructor(owner: StreamOwner, id: number, action: string) {
    this._owner = owner;
    this.id = id;
    this.action = action;
    this._maxBuffer = owner.maxStreamBuffer ?? DEFAULT_MAX_STREAM_BUFFER;
  }

  /**
   * The bytes of values that may wait to be taken (8 MiB unless the client's
   * `maxStreamBuffer` says otherwise; `Infinity`: no bound). When the next
   * value would not fit, the client stops reading the connection until the
   * `for await` loop takes one, cancels, or the stream ends: the server's
   * `out.send_file` / `send_chunks` then waits, paced by the loop, instead of
   * filling this process's memory. Meanwhile nothing else on the connection
   * is read (other calls' values, pushes): head-of-line blocking, the price.
   * A single value larger than the bound still comes, alone. The bound can be
   * passed by what the WebSocket had read already when it stopped (`ws`
   * delivers the messages of its last read, at most 64 KiB of them).
   *
   * Only Node with `ws` 8.3 or later can stop reading: a browser's WebSocket,
   * Electron's renderer and Node's global WebSocket cannot, and there (as
   * with an older `ws`) what waits is unbounded.
   */
  get maxBuffer(): number {
    return this._maxBuffer;
  }

  set maxBuffer(bytes: number) {
    if (typeof bytes !== 'number' || !(bytes > 0)) throw new TypeError(`maxBuffer must be a positive number of bytes, got ${String(bytes)}`);
    this._maxBuffer = bytes;
    this._pace();
  }

  /** About the bytes of values that have arrived and wait to be taken: binary exactly, JSON roughly (its strings). */
  get buffered(): number {
    return this._buffered;
  }

  /** The most {@link buffered} has been. */
  get maxBuffered(): number {
    return this._maxBuffered;
  }

  /** True once the stream has ended (completed, cancelled or failed). */
  get closed(): boolean {
    return this._state !== 'open';
  }

  /** True once no more input can be sent: {@link end} was called, or the stream has ended. */
  get inputClosed(): boolean {
    return this._inputEnded || this._state !== 'open';
  }

  /**
   * Send one input value to the handler of this open call; it reads it with
   * `out.receive()` or by iterating over `out`. Values go out in the order of
   * the `send` calls, after the call itself: sent before the connection is
   * ready (or while it reconnects, for a call not sent yet) they wait with
   * the call and follow it.
   *
   * The server keeps at most `inbox_size` unread inputs per stream (100 by
   * default): a handler that does not read them fails the stream with an
   * {@link IgorError} of type `'InboxFull'` (code 429).
   *
   * @throws {@link IgorError} of type `'StreamClosed'` when the stream has
   *   ended, `'InputEnded'` after {@link end}; TypeError when `data` is not
   *   JSON-serialisable (nothing is sent then).
   */
  send(data: I): void {
    this._checkInput('send');
    this._owner.sendInput!(this as IgorStream<unknown>, { data });
  }

  /**
   * Tell the handler that no more input will come: its `for item in out`
   * loop ends (the stream itself stays open until the handler returns).
   * Ending twice, or ending a stream that has ended, does nothing.
   */
  end(): void {
    if (this.inputClosed) return;
    this._inputEnded = true;
    this._owner.sendInput?.(this as IgorStream<unknown>, { end: true });
  }

  private _checkInput(what: string): void {
    if (this._state !== 'open') {
      throw new IgorError(`${this.action}: cannot ${what} input, the stream has ended`, 0, 'StreamClosed', {
        streamId: this.id,
        action: this.action,
      });
    }
    if (this._inputEnded) {
      throw new IgorError(`${this.action}: cannot ${what} input after end()`, 0, 'InputEnded', {
        streamId: this.id,
        action: this.action,
      });
    }
    if (!this._owner.sendInput) {
      throw new IgorError(`${this.action}: this stream takes no input`, 0, 'StreamClosed', { streamId: this.id, action: this.action });
    }
  }

  /**
   * Ask the server to stop this stream and end it here at once (it completes;
   * the server's `{"close": true, "cancelled": true}` answer is ignored, as is
   * any value still in flight). Does nothing if the stream has already ended.
   */
  cancel(): void {
    if (this._state !== 'open') return;
    this._owner.cancelStream(this as IgorStream<unknown>);
    this._end('complete');
  }

  /**
   * Receive the stream's values: pass an observer `{ next, error, complete }`
   * or up to three functions. Returns an {@link Unsubscribable}; unsubscribing
   * the last subscriber of an open stream cancels it on the server.
   */
  subscribe(
    observerOrNext?: StreamObserver<T> | ((value: T) => void) | null,
    error?: ((error: IgorError) => void) | null,
    complete?: (() => void) | null,
  ): Unsubscribable {
    const observer: StreamObserver<T> =
      typeof observerOrNext === 'function' || observerOrNext == null
        ? {
            next: observerOrNext ?? undefined,
            error: error ?? undefined,
            complete: complete ?? undefined,
          }
        : observerOrNext;
    const sink: Sink<T> = { observer, closed: false };
    const subscription: Unsubscribable = {
      unsubscribe: () => this._remove(sink),
      get closed() {
        return sink.closed;
      },
    };
    this._hadConsumer = true;
    const buffered = this._buffer;
    this._buffer = null;
    this._sinks.push(sink);
    // What waited moves to this consumer (an iterator counts it again): the socket stays as it is meanwhile.
    this._buffered -= this._bufferBytes;
    this._bufferBytes = 0;
    this._handing = true;
    try {
      if (buffered) for (const value of buffered) this._deliver(sink, value);
    } finally {
      this._handing = false;
    }
    this._pace();
    if (this._state !== 'open') this._finish(sink);
    return subscription;
  }

  /**
   * Iterate the values with `for await`. Leaving the loop early (`break`,
   * `return`, an exception) cancels the stream on the server; a server error
   * is thrown from the loop as an {@link IgorError}.
   */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    const queue: T[] = [];
    const weights: number[] = [];
    let ended = false;
    let failure: IgorError | undefined;
    let waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
    const subscription = this.subscribe({
      next: (value) => {
        if (waiter) {
          const w = waiter;
          waiter = null;
          w.resolve({ value, done: false });
        } else {
          const weight = weightOf(value);
          queue.push(value);
          weights.push(weight);
          this._account(weight);
        }
      },
      error: (e) => {
        ended = true;
        failure = e;
        if (waiter) {
          const w = waiter;
          waiter = null;
          failure = undefined;
          w.reject(e);
        }
      },
      complete: () => {
        ended = true;
        if (waiter) {
          const w = waiter;
          waiter = null;
          w.resolve({ value: undefined, done: true });
        }
      },
    });
    const iterator: AsyncIterator<T> & AsyncIterable<T> = {
      next: () => {
        if (queue.length > 0) {
          const value = queue.shift() as T;
          this._account(-weights.shift()!);
          return Promise.resolve({ value, done: false });
        }
        if (failure) {
          const e = failure;
          failure = undefined;
          return Promise.reject(e);
        }
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<T>>((resolve, reject) => {
          waiter = { resolve, reject };
        });
      },
      return: () => {
        ended = true;
        queue.length = 0;
        this._account(-weights.reduce((sum, weight) => sum + weight, 0));
        weights.length = 0;
        failure = undefined;
        subscription.unsubscribe();
        if (waiter) {
          const w = waiter;
          waiter = null;
          w.resolve({ value: undefined, done: true });
        }
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /**
   * Observable interop (the `Symbol.observable` protocol, under the key
   * `'@@observable'` that RxJS uses when `Symbol.observable` is not defined):
   * lets `from(igor.stream(...))` in RxJS, or any interop-aware library, adopt
   * the stream.
   */
  '@@observable'(): this {
    return this;
  }

  /** @internal The handler has taken `count` input messages so far. */
  _read(count: number): void {
    if (this._state === 'open' && this._onRead) this._onRead(count);
  }

  /** @internal A data value arrived. */
  _push(value: T): void {
    if (this._state !== 'open') return;
    if (this._buffer) {
      const weight = weightOf(value);
      this._buffer.push(value);
      this._bufferBytes += weight;
      this._account(weight);
      return;
    }
    for (const sink of this._sinks.slice()) this._deliver(sink, value);
  }

  /** @internal The stream ended: completed, or failed with `error`. */
  _end(how: 'complete' | 'error', error?: IgorError): void {
    if (this._state !== 'open') return;
    this._state = how;
    this._error = error;
    // Nothing more comes for it: it no longer holds the socket, whatever still waits to be taken.
    this._pace();
    const sinks = this._sinks;
    this._sinks = [];
    for (const sink of sinks) this._finish(sink);
    // Sinks that subscribe later are finished in subscribe(); keep only a
    // buffer for a consumer that has not come yet.
    if (this._hadConsumer) this._buffer = null;
  }

  /** `weight` bytes more wait (fewer, when negative). */
  private _account(weight: number): void {
    this._buffered += weight;
    if (weight > 0) {
      this._latest = weight;
      if (this._buffered > this._maxBuffered) this._maxBuffered = this._buffered;
    }
    this._pace();
  }

  /** Tell the owner when this stream goes over its bound (the next value would not fit), or back under. */
  private _pace(): void {
    const over = this._state === 'open' && this._buffered > 0 && this._buffered + this._latest > this._maxBuffer;
    if (over === this._over || this._handing) return;
    this._over = over;
    this._owner.paceStream?.(this as IgorStream<unknown>, over);
  }

  private _deliver(sink: Sink<T>, value: T): void {
    if (sink.closed) return;
    try {
      sink.observer.next?.(value);
    } catch (e) {
      reportLater(e);
    }
  }

  private _finish(sink: Sink<T>): void {
    if (sink.closed) return;
    sink.closed = true;
    const index = this._sinks.indexOf(sink);
    if (index >= 0) this._sinks.splice(index, 1);
    try {
      if (this._state === 'error') {
        if (sink.observer.error) sink.observer.error(this._error as IgorError);
        else this._reportUnhandled(this._error as IgorError);
      } else sink.observer.complete?.();
    } catch (e) {
      reportLater(e);
    }
  }

  /**
   * A subscriber without an `error` callback: tell the error to the client's
   * `onError` listeners (or `console.warn`), never throw it, since an
   * uncaught exception would end a Node process over, say, a `close()`.
   */
  private _reportUnhandled(error: IgorError): void {
    try {
      if (this._owner.reportStreamError) this._owner.reportStreamError(error);
      else console.warn('[igor-client]', error?.message ?? error);
    } catch (e) {
      reportLater(e);
    }
  }

  private _remove(sink: Sink<T>): void {
    if (sink.closed) return;
    sink.closed = true;
    const index = this._sinks.indexOf(sink);
    if (index >= 0) this._sinks.splice(index, 1);
    if (this._sinks.length === 0 && this._state === 'open') this.cancel();
  }
}

// Also answer to the real `Symbol.observable` when some library has defined it.
const symbolObservable: symbol | undefined =
  typeof Symbol === 'function' ? (Symbol as unknown as { observable?: symbol }).observable : undefined;
if (symbolObservable) {
  Object.defineProperty(IgorStream.prototype, symbolObservable, {
    value: function (this: IgorStream<unknown>) {
      return this;
    },
    configurable: true,
    writable: true,
  });
}
