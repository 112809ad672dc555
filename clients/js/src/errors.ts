/**
 * The one error class of igor-client.
 *
 * Every failure a caller can see (an error sent by a Python handler, a dropped
 * connection, a timeout, a refused handshake) is an {@link IgorError}, so a
 * single `catch (e) { if (e instanceof IgorError) ... }` covers them all and
 * `e.type` tells them apart.
 *
 * @packageDocumentation
 */

/**
 * The `type` values the client itself produces (code `0`, or a refused
 * handshake's HTTP status). Misuse of the API (a wrong argument or option
 * type, data JSON cannot carry) is not among them: it throws a native
 * `TypeError`. Errors sent by the
 * server carry its own types instead: `UnknownAction` (404),
 * `ProtocolError` (400), `StreamIdInUse` / `ClientIdTaken` (409), or the
 * Python exception's class name such as `ValueError` (500).
 */
export type ClientErrorType =
  /** The connection closed (or was closed by {@link IgorClient.close}) before the stream ended. */
  | 'ConnectionClosed'
  /**
   * The server closed the connection with code 1012 (Service Restart), as
   * `igor dev` does when it reloads the backend: the call did not finish. With
   * `reconnect` the client connects again at once and gets its session back.
   */
  | 'BackendReloaded'
  /** The WebSocket could not be opened: server down, or handshake refused (401 token, 403 Host/Origin, 503 full). */
  | 'ConnectionFailed'
  /** The call did not end within its `timeout`; it was cancelled on the server. */
  | 'Timeout'
  /** The call was aborted through its `signal`; it was cancelled on the server. */
  | 'Aborted'
  /** More would wait for the connection than `maxQueuedBytes` allows; nothing was queued. */
  | 'QueueFull'
  /** `IgorStream.send`/`end` on a stream that has ended, or that takes no input. */
  | 'StreamClosed'
  /** `IgorStream.send` after `end()`. */
  | 'InputEnded'
  /** The `signal` reason of an exposed function whose call the server stopped waiting for. */
  | 'Cancelled'
  /** The server sent a message that is not JSON (the server uses this type too, code 400, for what it cannot read). */
  | 'ProtocolError'
  /** Binary data on a connection whose server speaks protocol 2 or 1, which cannot carry it. */
  | 'BinaryUnsupported'
  /** A call or its input is larger than the server's `max_message_size` (from its hello): nothing was sent. */
  | 'MessageTooBig'
  /** A Blob in a message could not be read (it was not sent); the message is told to `onError`. */
  | 'BlobUnreadable'
  /** `launch()` of `igor-client/node` failed: the error is a `LaunchError`, whose `reason` says how. */
  | 'LaunchFailed';

/** The fields of an error message on the wire (`{"streamId", "error", "code", "type", "traceback", "data"}`). */
export interface WireError {
  error: string;
  code?: number;
  type?: string;
  traceback?: string;
  data?: unknown;
}

/**
 * An error from Igor: either reported by the server for one stream, or
 * detected by the client (then `code` is `0`, or the HTTP status of a refused
 * handshake when it is known).
 */
export class IgorError extends Error {
  /**
   * The error code: the server's code (400, 404, 409, 500, or whatever a
   * handler chose with `out.send_error(..., code=N)`), the HTTP status of a
   * refused handshake when the platform reveals it (Node with `ws` does,
   * browsers do not), or `0` for an error detected by the client.
   */
  readonly code: number;
  /** A machine-readable kind: the Python exception class name, or a {@link ClientErrorType}. */
  readonly type: string;
  /** The Python traceback, present only when the server runs with `debug` on. */
  readonly traceback?: string;
  /**
   * The value the server's error carried (`raise IgorError(..., data=...)`,
   * `out.send_error(..., data=...)`), binary as `Uint8Array` at its place;
   * `undefined` when it carried none.
   */
  readonly data?: unknown;
  /** The stream the error belongs to, when there is one. */
  readonly streamId?: string | number;
  /** The action of the failed call, when there is one (helps reading logs). */
  readonly action?: string;

  constructor(
    message: string,
    code: number,
    type: string,
    extra: { traceback?: string; streamId?: string | number; action?: string; cause?: unknown; data?: unknown } = {},
  ) {
    super(message);
    this.name = 'IgorError';
    this.code = code;
    this.type = type;
    if (extra.traceback !== undefined) this.traceback = extra.traceback;
    if (extra.streamId !== undefined) this.streamId = extra.streamId;
    if (extra.action !== undefined) this.action = extra.action;
    if (extra.data !== undefined) this.data = extra.data;
    if (extra.cause !== undefined) (this as { cause?: unknown }).cause = extra.cause;
    // Keep `instanceof` working when compiled to an older target.
    Object.setPrototypeOf(this, new.target.prototype);
  }

  /** Build an IgorError from a server error message. */
  static fromWire(message: WireError, streamId?: string | number, action?: string): IgorError {
    return new IgorError(
      typeof message.error === 'string' ? message.error : String(message.error),
      typeof message.code === 'number' ? message.code : 500,
      typeof message.type === 'string' ? message.type : 'Error',
      { traceback: message.traceback, streamId, action, data: message.data },
    );
  }
}
