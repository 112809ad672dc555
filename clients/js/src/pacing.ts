/**
 * Reading paced by the slowest consumer. The values of a stream
 * wait in its `for await` iterator, or for its first consumer, until they
 * are taken; past {@link DEFAULT_MAX_STREAM_BUFFER} bytes of them the client
 * stops reading the socket (`ws`'s `pause()`), so TCP fills, the server's
 * backlog for this client fills and its `out.send_file` / `send_chunks`
 * waits: the sender goes at the consumer's pace, with no change to the
 * protocol. The price is head-of-line blocking: while the socket is paused,
 * nothing else on the connection is read either (other streams, pushes, the
 * server's calls, an upload's acknowledgements), until the slow consumer
 * takes values, cancels, or the client closes.
 *
 * Only a socket with `pause()` and `resume()` can be paused: `ws` 8.3 and
 * later in Node. A browser's WebSocket, Electron's renderer and Node's global
 * WebSocket have no way to stop reading (that would need a credit protocol),
 * so there, as with older `ws`, what a slow consumer has not taken is held in
 * memory, however much it is.
 *
 * @packageDocumentation
 */

import type { WebSocketLike } from './options.js';
import { WS_OPEN } from './websocket.js';

/** The bytes of values a stream holds for its consumer before the client stops reading the socket: 8 MiB. */
export const DEFAULT_MAX_STREAM_BUFFER = 8 * 1024 * 1024;
/**
 * How often a paused client sends an unsolicited pong (RFC 6455 5.5.3), in
 * ms. The server's heartbeat ping waits behind the data the client has not
 * read, so its pong would come too late; the server counts any frame as
 * life, and still finds a consumer that takes nothing at all by its
 * `send_timeout` (docs/protocol.md).
 */
export const KEEPALIVE_INTERVAL = 500;

/** What a socket needs for its reading to be paused: `ws`'s WebSocket has it. */
interface PausableSocket extends WebSocketLike {
  pause(): void;
  resume(): void;
  pong?(data?: Uint8Array): void;
}

function canPause(socket: WebSocketLike): socket is PausableSocket {
  const s = socket as Partial<PausableSocket>;
  return typeof s.pause === 'function' && typeof s.resume === 'function';
}

/**
 * About the bytes `value` holds in memory: binary values exactly, strings by
 * their length, and 16 for every value, key and item. What the server sends
 * is bytes (a download's chunks) or JSON, which holds little but its strings.
 */
export function weightOf(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength + 16;
  let total = 0;
  const todo: unknown[] = [value];
  while (todo.length > 0) {
    const item = todo.pop();
    total += 16;
    if (typeof item === 'string') total += item.length;
    else if (ArrayBuffer.isView(item)) total += item.byteLength;
    // One push per item: spreading an array of a million numbers as arguments would overflow the stack.
    else if (Array.isArray(item)) for (const element of item) todo.push(element);
    else if (item !== null && typeof item === 'object') {
      for (const key of Object.keys(item)) todo.push(key, (item as Record<string, unknown>)[key]);
    }
  }
  return total;
}

/**
 * @internal The pauses of one client's socket: paused while any stream
 * holds more than its bound (see {@link hold}), resumed once none does.
 */
export class ReadPauses {
  private readonly _holders = new Set<unknown>();
  /** The socket paused, kept so that the same one is resumed, even once the connection has dropped it. */
  private _paused: PausableSocket | null = null;
  private _beat: ReturnType<typeof setTimeout> | undefined;
  /**
   * When the latest keepalive pong went (`Date.now()`), across pauses: a
   * consumer that takes a chunk now and then resumes the socket for a moment
   * only, nowhere near long enough to read up to the server's ping, so the
   * pongs must keep their pace however often the socket pauses.
   */
  private _lastPong = 0;
  /** How many times the socket was paused: for the tests. */
  count = 0;

  /** @param _socket - the connection's open socket, or null. */
  constructor(private readonly _socket: () => WebSocketLike | null) {}

  /** True while the socket is paused. */
  get paused(): boolean {
    return this._paused !== null;
  }

  /** `holder` (a stream) is over its bound, or no longer is (`over` false: it also ended, or was cancelled). */
  hold(holder: unknown, over: boolean): void {
    if (over) this._holders.add(holder);
    else this._holders.delete(holder);
    if (this._holders.size > 0 && !this._paused) this._pause();
    else if (this._holders.size === 0 && this._paused) this._resume();
  }

  private _pause(): void {
    const socket = this._socket();
    // A socket that cannot pause (a browser's) reads on: its streams hold what comes, unbounded.
    if (!socket || socket.readyState !== WS_OPEN || !canPause(socket)) return;
    socket.pause();
    this._paused = socket;
    this.count++;
    this._keepalive(socket);
  }

  /** Send a pong if the latest went {@link KEEPALIVE_INTERVAL} ago or more, and see to the next one. */
  private _keepalive(socket: PausableSocket): void {
    const due = this._lastPong + KEEPALIVE_INTERVAL - Date.now();
    if (due <= 0 && socket.readyState === WS_OPEN && typeof socket.pong === 'function') {
      try {
        socket.pong();
      } catch {
        // The socket is failing: its close event ends the streams, and resumes it.
      }
      this._lastPong = Date.now();
    }
    this._beat = setTimeout(() => {
      if (this._paused === socket) this._keepalive(socket);
    }, due > 0 ? due : KEEPALIVE_INTERVAL);
    // The socket keeps the process alive while it is open; this timer need not.
    (this._beat as { unref?: () => void }).unref?.();
  }

  private _resume(): void {
    const socket = this._paused!;
    this._paused = null;
    clearTimeout(this._beat);
    this._beat = undefined;
    // Also when it is closing: the server's close frame waits behind the unread data.
    socket.resume();
  }
}
