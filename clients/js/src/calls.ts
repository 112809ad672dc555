/**
 * {@link Calls}: the streams (calls) of one client: sending them, or queueing
 * them on the {@link Connection} until it is ready, their input, timeouts,
 * aborts and cancels, their answers, and failing them when the connection
 * drops or closes.
 *
 * @packageDocumentation
 */

import { encode } from './binary.js';
import type { Encoded } from './binary.js';
import type { Connection, Queued } from './connection.js';
import { IgorError } from './errors.js';
import type { WireError } from './errors.js';
import type { CallOptions } from './options.js';
import { DEFAULT_MAX_STREAM_BUFFER, ReadPauses } from './pacing.js';
import { IgorStream } from './stream.js';
import type { StreamOwner } from './stream.js';

type Entry = {
  stream: IgorStream<unknown>;
  /** The call's message, encoded when the call was made, so that bad data fails there and then. */
  encoded: Encoded;
  sent: boolean;
  timer?: ReturnType<typeof setTimeout>;
  cleanup?: () => void;
  /** While it waits for the connection: its place in the queue, and the input given meanwhile, sent right after it. */
  queued?: Queued;
  input?: Encoded[];
};

/** @internal The open streams of one client. */
export class Calls implements StreamOwner {
  private readonly _open = new Map<number, Entry>();
  /** The errors close() ended streams with: expected, so not reported as unhandled. */
  private readonly _closeErrors = new WeakSet<IgorError>();
  /** The socket's reading, paused while a stream's consumer is slow. */
  readonly pauses: ReadPauses;

  /**
   * @param _connection - the client's connection.
   * @param _defaultTimeout - the client's `timeout` option.
   * @param _reportError - the client's onError, for a stream error no subscriber takes.
   * @param maxStreamBuffer - the client's `maxStreamBuffer`: each new stream's bound.
   */
  constructor(
    private readonly _connection: Connection,
    private readonly _defaultTimeout: number | undefined,
    private readonly _reportError: (error: IgorError) => void,
    readonly maxStreamBuffer: number = DEFAULT_MAX_STREAM_BUFFER,
  ) {
    this.pauses = new ReadPauses(() => _connection.socket);
  }

  /** A new call of `action`; the arguments are checked already. */
  start<T>(action: string, data: unknown, options: CallOptions | undefined): IgorStream<T> {
    const id = this._connection.nextId();
    const message: Record<string, unknown> = { streamId: id, action };
    if (data !== undefined) message.data = data;
    const encoded = encode(message, action);
    const stream = new IgorStream<T>(this, id, action);
    const entry: Entry = { stream: stream as IgorStream<unknown>, encoded, sent: false };
    if (this._connection.closed) {
      const failure = this._closedError(stream, 'the client is closed');
      if (this._connection.finalError === undefined) this._closeErrors.add(failure);
      stream._end('error', failure);
      return stream;
    }
    this._open.set(id, entry);
    const timeout = options?.timeout ?? this._defaultTimeout;
    if (timeout !== undefined && timeout !== null && Number.isFinite(timeout)) {
      entry.timer = setTimeout(() => {
        this._abandon(entry, new IgorError(`${action}: no end within ${timeout} ms`, 0, 'Timeout', { streamId: id, action }));
      }, timeout);
    }
    const signal = options?.signal;
    if (signal) {
      const onAbort = (): void => {
        this._abandon(entry, new IgorError(`${action}: aborted`, 0, 'Aborted', { streamId: id, action, cause: signal.reason }));
      };
      if (signal.aborted) {
        onAbort(); // fails the stream; nothing is sent
        return stream;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      entry.cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    if (this._connection.status === 'open') {
      this._send(entry);
      return stream;
    }
    const size = encoded.size;
    const full = this._connection.reserve(size, action, id);
    if (full) {
      this._forget(entry);
      stream._end('error', full);
      return stream;
    }
    entry.queued = {
      size,
      send: () => {
        if (this._open.get(id) === entry) this._send(entry);
      },
    };
    this._connection.enqueue(entry.queued);
    return stream;
  }

  /** A message about one of our streams (a number id): true when it was one. */
  receive(m: Record<string, unknown>): boolean {
    if (typeof m.streamId !== 'number') return false;
    const entry = this._open.get(m.streamId);
    // Not open (or not sent yet, which the server cannot answer): a late answer of a stream we already ended here.
    if (!entry || !entry.sent) return true;
    if (typeof m.read === 'number') entry.stream._read(m.read);
    if ('error' in m) {
      this._forget(entry);
      entry.stream._end('error', IgorError.fromWire(m as unknown as WireError, entry.stream.id, entry.stream.action));
      return true;
    }
    if ('data' in m) {
      // The app introduced itself: the connection must present the secret of this introduction next time.
      if (entry.stream.action === 'introduce_self') this._connection.noteIntroduction(m.data);
      entry.stream._push(m.data);
    }
    if ('close' in m) {
      // Alone, or (protocol 2) on the stream's last value.
      this._forget(entry);
      entry.stream._end('complete');
    }
    return true;
  }

  /** The connection dropped: what was sent on it will never be answered; what waits, waits on. */
  lost(error: IgorError): void {
    for (const entry of [...this._open.values()]) {
      if (!entry.sent) continue;
      this._forget(entry);
      const told = error.type === 'ConnectionClosed' || error.type === 'BackendReloaded';
      entry.stream._end(
        'error',
        new IgorError(
          `${entry.stream.action}: ${told ? error.message : 'the connection was lost'} before the call ended; it was not sent again`,
          0,
          error.type === 'BackendReloaded' ? 'BackendReloaded' : 'ConnectionClosed',
          { streamId: entry.stream.id, action: entry.stream.action, cause: error },
        ),
      );
    }
  }

  /** Closed (`error` undefined: by close()): fail everything still open or waiting. */
  shutdown(error: IgorError | undefined, why: string): void {
    for (const entry of [...this._open.values()]) {
      this._forget(entry);
      const failure = this._closedError(entry.stream, why);
      if (error === undefined) this._closeErrors.add(failure);
      entry.stream._end('error', failure);
    }
  }

  // ---- StreamOwner: called by IgorStream --------------------------------------

  reportStreamError(error: IgorError): void {
    // Streams ended by the client's own close() are expected: nothing to report.
    if (this._closeErrors.has(error)) return;
    this._reportError(error);
  }

  cancelStream(stream: IgorStream<unknown>): void {
    const entry = this._open.get(stream.id);
    if (!entry) return;
    this._forget(entry);
    if (entry.sent) this._cancelOnServer(entry);
  }

  paceStream(stream: IgorStream<unknown>, over: boolean): void {
    this.pauses.hold(stream, over);
  }

  sendInput(stream: IgorStream<unknown>, input: { data: unknown } | { end: true }): void {
    const entry = this._open.get(stream.id);
    if (!entry || entry.stream !== stream) {
      throw new IgorError(`${stream.action}: cannot send input, the stream has ended`, 0, 'StreamClosed', { streamId: stream.id, action: stream.action });
    }
    const message = 'end' in input ? { streamId: stream.id, end: true } : { streamId: stream.id, data: input.data === undefined ? null : input.data };
    const encoded = encode(message, stream.action);
    if (entry.sent) {
      const refused = this._binaryRefused(entry, encoded);
      if (refused) throw refused;
      this._connection.write(encoded.payload);
      return;
    }
    // Not sent yet (connecting, reconnecting): the input waits with the call and follows it.
    const full = this._connection.reserve(encoded.size, stream.action, stream.id);
    if (full) throw full;
    if (entry.queued) entry.queued.size += encoded.size;
    (entry.input ??= []).push(encoded);
  }

  /** The error for a message the server would refuse: binary under protocol 2 or 1, or past its message size. */
  private _binaryRefused(entry: Entry, encoded: Encoded): IgorError | undefined {
    const protocol = this._connection.protocol;
    const { id: streamId, action } = entry.stream;
    // Only a protocol 3 server tells its limit; one message past it would close the connection.
    const limit = this._connection.limits.maxMessageSize;
    if (protocol >= 3 && encoded.size > limit) {
      return new IgorError(
        `${action}: a message of ${encoded.size} bytes is more than the server reads (max_message_size ${limit}); send large data in chunks (igor.upload)`,
        0, 'MessageTooBig', { streamId, action });
    }
    if (!encoded.binary || protocol >= 3) return undefined;
    return new IgorError(
      `${action}: the server speaks protocol ${protocol}, which cannot carry binary data (it needs an Igor server with protocol 3)`,
      0, 'BinaryUnsupported', { streamId, action });
  }

  // ---- inside --------------------------------------------------------------------

  private _send(entry: Entry): void {
    entry.queued = undefined;
    const input = entry.input;
    entry.input = undefined;
    const refused = [entry.encoded, ...(input ?? [])].map((e) => this._binaryRefused(entry, e)).find(Boolean);
    if (refused) {
      // Known only now that the server has answered the handshake: nothing of the call is sent.
      this._forget(entry);
      entry.stream._end('error', refused);
      return;
    }
    entry.sent = true;
    this._connection.write(entry.encoded.payload);
    if (input) for (const e of input) this._connection.write(e.payload);
  }

  private _cancelOnServer(entry: Entry): void {
    if (this._connection.status === 'open') this._connection.write(JSON.stringify({ streamId: entry.stream.id, cancel: true }));
  }

  /** Stop tracking a stream (timer, abort listener, queue). */
  private _forget(entry: Entry): void {
    if (this._open.get(entry.stream.id) === entry) this._open.delete(entry.stream.id);
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.cleanup?.();
    entry.cleanup = undefined;
    if (entry.queued) this._connection.dequeue(entry.queued);
    entry.queued = undefined;
  }

  /** Give up on a stream (timeout, abort): cancel it on the server and fail it here. */
  private _abandon(entry: Entry, error: IgorError): void {
    if (this._open.get(entry.stream.id) !== entry) return;
    this._forget(entry);
    if (entry.sent) this._cancelOnServer(entry);
    entry.stream._end('error', error);
  }

  private _closedError(stream: { id: number; action: string }, why: string): IgorError {
    const base = this._connection.finalError;
    const failed = base !== undefined && base.type === 'ConnectionFailed';
    return new IgorError(`${stream.action}: ${why}`, failed ? base.code : 0, failed ? 'ConnectionFailed' : 'ConnectionClosed', {
      streamId: stream.id,
      action: stream.action,
      cause: base,
    });
  }
}
