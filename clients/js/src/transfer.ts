/**
 * Large transfers over protocol 3: {@link upload} sends a Blob, a buffer or
 * an async iterable of chunks as a call's input, paced by the server's `read`
 * acknowledgements, so that a fast client never overfills a slow handler's
 * inbox; {@link download} reads what a handler sends with `out.send_file` /
 * `out.send_chunks` (a `{"transfer": {...}}` header, then bare chunks).
 *
 * @packageDocumentation
 */

import { bytesOf, isBinary } from './binary.js';
import { IgorError } from './errors.js';
import type { CallOptions } from './options.js';
import type { IgorStream } from './stream.js';
import type { ServerLimits } from './websocket.js';

/** A chunk an iterable upload source may yield. */
export type UploadChunk = Uint8Array | ArrayBufferView | ArrayBuffer | string;

/** What {@link upload} sends: a Blob or File, a buffer or view, or (in Node) an (async) iterable of chunks, such as `fs.createReadStream(path)`. */
export type UploadSource = Blob | ArrayBuffer | ArrayBufferView | AsyncIterable<UploadChunk> | Iterable<UploadChunk>;

/** Options of `IgorClient.upload`. */
export interface UploadOptions {
  /** The data the action is called with (the handler's `data`); the source follows as its input. */
  data?: unknown;
  /** Bytes per chunk (default 1 MiB); never more than the server's message size (minus room for the head) or its input window. */
  chunkSize?: number;
  /** The source's size when it is an iterable (Blobs and buffers know theirs): the progress total. */
  size?: number;
  /** Told `(done, total)` as the handler reads: bytes it has taken out of its inbox, of the total (null when unknown). */
  onProgress?: (done: number, total: number | null) => void;
  /** Cancel the upload: the stream is cancelled on the server and the promise rejects with type `'Aborted'`. */
  signal?: AbortSignal;
  /** Fail with type `'Timeout'` (and cancel) if the handler has not returned after this many ms. */
  timeout?: number;
}

/** The header a download begins with (`out.send_file`, `out.send_chunks`). */
export interface TransferInfo {
  /** The total bytes, when the handler knows it. */
  size: number | null;
  name: string | null;
  /** A MIME type, when the handler gave one. */
  type: string | null;
}

/** Options of `IgorClient.download`. */
export interface DownloadOptions {
  /** Told `(done, total, info)` after each chunk: bytes received, of the header's size (null when unknown). */
  onProgress?: (done: number, total: number | null, info: TransferInfo) => void;
  /**
   * Take each chunk as it comes instead of joining them (bounded memory for
   * large downloads): write it to a file, a stream, a `MediaSource`. A promise
   * it returns is awaited before the next chunk is handed over, and the
   * download resolves once the last one settled. Meanwhile chunks wait, up to
   * the client's `maxStreamBuffer` (8 MiB); past that, in Node with `ws`, the
   * client stops reading until one is taken, so the server sends at the pace
   * of `onChunk` (elsewhere they wait unbounded: see {@link IgorStream.maxBuffer}).
   */
  onChunk?: (chunk: Uint8Array, info: TransferInfo) => void | PromiseLike<void>;
  /** Cancel the download: the stream is cancelled on the server and the promise rejects with type `'Aborted'`. */
  signal?: AbortSignal;
  timeout?: number;
}

/** What a download with `onChunk` resolves to: the header, and the bytes received. */
export interface DownloadResult extends TransferInfo {
  received: number;
}

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** Room for the head of a chunk's message (`{"streamId":N,"data":null,"binary":[...]}`) under the server's message size. */
const HEAD_ROOM = 4096;

/** Starts a call of the action the transfer is about. */
export type StartCall = <T>(data: unknown, options: CallOptions) => IgorStream<T>;

function isIterable(value: unknown): value is AsyncIterable<UploadChunk> | Iterable<UploadChunk> {
  const v = value as { [Symbol.asyncIterator]?: unknown; [Symbol.iterator]?: unknown } | null;
  return v !== null && typeof v === 'object' && (typeof v[Symbol.asyncIterator] === 'function' || typeof v[Symbol.iterator] === 'function');
}

function chunkBytes(chunk: UploadChunk, what: string): Uint8Array {
  if (typeof chunk === 'string') return new TextEncoder().encode(chunk);
  if (isBinary(chunk) && !(typeof Blob === 'function' && chunk instanceof Blob)) return bytesOf(chunk as ArrayBufferView | ArrayBuffer);
  throw new TypeError(`${what}: the source yielded a chunk that is neither bytes nor a string`);
}

/** The source in chunks of at most `size` bytes, read only as they are asked for. */
async function* chunksOf(source: UploadSource, size: number, what: string): AsyncGenerator<Uint8Array> {
  if (typeof Blob === 'function' && source instanceof Blob) {
    for (let offset = 0; offset < source.size; offset += size) {
      yield new Uint8Array(await source.slice(offset, offset + size).arrayBuffer());
    }
    return;
  }
  if (isBinary(source)) {
    const bytes = bytesOf(source as ArrayBufferView | ArrayBuffer);
    for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
    return;
  }
  if (!isIterable(source)) throw new TypeError(`${what}: the source must be a Blob, an ArrayBuffer, an ArrayBufferView or an iterable of chunks`);
  // Small chunks (a file stream's 64 KiB) are joined into full ones: fewer messages, as fast.
  let pending: Uint8Array | undefined;
  let filled = 0;
  for await (const item of source as AsyncIterable<UploadChunk>) {
    let bytes = chunkBytes(item, what);
    while (bytes.length > 0) {
      if (!pending && bytes.length >= size) {
        yield bytes.subarray(0, size);
        bytes = bytes.subarray(size);
        continue;
      }
      pending ??= new Uint8Array(size);
      const n = Math.min(size - filled, bytes.length);
      pending.set(bytes.subarray(0, n), filled);
      filled += n;
      bytes = bytes.subarray(n);
      if (filled === size) {
        yield pending;
        pending = undefined;
        filled = 0;
      }
    }
  }
  if (pending && filled > 0) yield pending.subarray(0, filled);
}

function sizeOfSource(source: UploadSource, given: number | undefined): number | null {
  if (typeof Blob === 'function' && source instanceof Blob) return source.size;
  if (source instanceof ArrayBuffer) return source.byteLength;
  if (ArrayBuffer.isView(source)) return source.byteLength;
  return given ?? null;
}

/**
 * Call the action with `options.data`, send `source` as its input in chunks,
 * each sent only while the handler's unread input stays within half its
 * inbox and the server's input window, then end the input; resolve with the
 * handler's last value (its return).
 */
export async function upload<T>(start: StartCall, limits: ServerLimits, action: string, source: UploadSource, options: UploadOptions = {}): Promise<T> {
  const what = `upload(${JSON.stringify(action)})`;
  if (options.chunkSize !== undefined && !(Number.isInteger(options.chunkSize) && options.chunkSize > 0)) {
    throw new TypeError(`${what}: chunkSize must be a positive integer, got ${String(options.chunkSize)}`);
  }
  if (!isBinary(source) && !isIterable(source)) {
    throw new TypeError(`${what}: the source must be a Blob, an ArrayBuffer, an ArrayBufferView or an iterable of chunks`);
  }
  const chunkSize = Math.max(1, Math.min(options.chunkSize ?? DEFAULT_CHUNK_SIZE, limits.maxMessageSize - HEAD_ROOM, limits.inputWindow));
  const maxUnread = Math.max(1, Math.floor(limits.inboxSize / 2));
  const total = sizeOfSource(source, options.size);
  const stream = start<T>(options.data, { signal: options.signal, timeout: options.timeout });

  let last: T | undefined;
  let wake: (() => void) | undefined;
  const result = new Promise<T>((resolve, reject) => {
    stream.subscribe({
      next: (value) => {
        last = value;
      },
      error: (error) => {
        wake?.();
        reject(error);
      },
      complete: () => {
        wake?.();
        resolve(last as T);
      },
    });
  });
  result.catch(() => {}); // awaited below; the pump may stop first

  // The sizes of the chunks the handler has not taken yet, oldest first.
  const unread: number[] = [];
  let unreadBytes = 0;
  let sent = 0;
  let read = 0;
  let done = 0;
  stream._onRead = (count) => {
    while (read < count && read < sent) {
      read++;
      const size = unread.shift() ?? 0;
      unreadBytes -= size;
      done += size;
    }
    if (options.onProgress) options.onProgress(done, total);
    wake?.();
  };
  const roomFor = (size: number): boolean => sent - read < maxUnread && (unreadBytes === 0 || unreadBytes + size <= limits.inputWindow);

  try {
    for await (const chunk of chunksOf(source, chunkSize, what)) {
      while (!stream.closed && !roomFor(chunk.length)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      if (stream.closed) break;
      stream.send(chunk);
      sent++;
      unread.push(chunk.length);
      unreadBytes += chunk.length;
    }
  } catch (error) {
    // The source failed (a file that could not be read): stop the handler too.
    if (!stream.closed) stream.cancel();
    throw error;
  }
  if (!stream.closed) stream.end();
  return result;
}

/** The `{"transfer": {...}}` header, or undefined when `value` is not one. */
function transferInfo(value: unknown): TransferInfo | undefined {
  const t = (value as { transfer?: unknown } | null)?.transfer;
  if (!t || typeof t !== 'object' || isBinary(value)) return undefined;
  const { size, name, type } = t as Record<string, unknown>;
  return {
    size: typeof size === 'number' ? size : null,
    name: typeof name === 'string' ? name : null,
    type: typeof type === 'string' ? type : null,
  };
}

/**
 * Call the action and take the transfer it sends: the joined bytes, or, with
 * `onChunk`, each chunk as it comes (then the header and the count).
 */
export async function download(start: StartCall, action: string, data: unknown, options: DownloadOptions = {}): Promise<Uint8Array | DownloadResult> {
  const stream = start<unknown>(data, { signal: options.signal, timeout: options.timeout });
  let info: TransferInfo = { size: null, name: null, type: null };
  let first = true;
  let received = 0;
  let parts: Uint8Array[] = [];
  let joined: Uint8Array | undefined;
  for await (const value of stream) {
    // Aborted: values that came before the abort may still be queued in the iterator; they are not handed over.
    if (options.signal?.aborted) {
      throw new IgorError(`${action}: aborted`, 0, 'Aborted', { streamId: stream.id, action, cause: options.signal.reason });
    }
    if (first) {
      first = false;
      const header = transferInfo(value);
      if (header) {
        info = header;
        // Known size: one buffer, no second copy to join.
        if (!options.onChunk && info.size !== null && info.size > 0) joined = new Uint8Array(info.size);
        continue;
      }
    }
    if (!(value instanceof Uint8Array)) {
      stream.cancel();
      throw new IgorError(`download(${JSON.stringify(action)}): the handler sent a value that is not bytes`, 0, 'ProtocolError', {
        streamId: stream.id,
        action,
      });
    }
    if (options.onChunk) await options.onChunk(value, info);
    else if (joined && received + value.length <= joined.length) joined.set(value, received);
    else {
      // More than the header said: keep the rest as parts.
      if (joined) parts = [joined.subarray(0, received)];
      joined = undefined;
      parts.push(value);
    }
    received += value.length;
    options.onProgress?.(received, info.size, info);
  }
  if (options.onChunk) return { ...info, received };
  if (joined) return received === joined.length ? joined : joined.subarray(0, received);
  const out = new Uint8Array(received);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
