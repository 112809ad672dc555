/**
 * The functions a client exposes to the server (`server.call_client` in
 * Python), and the server's calls to them that are being answered.
 *
 * @packageDocumentation
 */

import { encode } from './binary.js';
import type { Payload } from './binary.js';
import { IgorError } from './errors.js';
import type { ExposedFunction } from './options.js';
import { describe } from './util.js';

/**
 * The answer to a server call for a thrown value: its message and its type (and, for an IgorError, its
 * code and its data, which reaches Python as the `RemoteError`'s `data`).
 */
function errorAnswer(error: unknown): { error: string; type: string; code?: number; data?: unknown } {
  if (error instanceof IgorError) {
    return {
      error: error.message || error.type,
      type: error.type,
      ...(error.code >= 400 && error.code <= 599 ? { code: error.code } : {}),
      ...(error.data !== undefined && error.data !== null ? { data: error.data } : {}),
    };
  }
  if (error instanceof Error) return { error: error.message || error.name, type: error.name || 'Error' };
  return { error: String(error), type: 'Error' };
}

/** @internal The exposed functions of one client. */
export class ExposedFunctions {
  private readonly _functions = new Map<string, ExposedFunction<any, unknown>>();
  /** Server calls being answered on the current connection, by callId. */
  private readonly _calls = new Map<number | string, AbortController>();

  /**
   * @param _write - sends one message on the current connection (dropped when there is none).
   * @param _server - the current connection's protocol (binary answers need 3) and the server's message size.
   */
  constructor(
    private readonly _write: (payload: Payload) => void,
    private readonly _server: { readonly protocol: number; readonly limits: { maxMessageSize: number } },
  ) {}

  /** Expose `fn` as `name`, replacing what was exposed as `name` (as the Python client does). */
  expose(name: string, fn: ExposedFunction<any, unknown>): () => void {
    if (typeof name !== 'string' || name === '') {
      throw new TypeError(`expose: the name must be a non-empty string, got ${describe(name)}`);
    }
    if (typeof fn !== 'function') throw new TypeError(`expose(${JSON.stringify(name)}, fn): fn must be a function, got ${describe(fn)}`);
    this._functions.set(name, fn);
    return () => {
      // A later expose of the same name replaced fn: its own unexpose must not remove the newer one.
      if (this._functions.get(name) === fn) this._functions.delete(name);
    };
  }

  /** `{"callId", "action", "data"}`: run the exposed function and answer; `{"callId", "cancel": true}`: give up on it. */
  handle(m: Record<string, unknown>): void {
    const callId = m.callId;
    if (typeof callId !== 'number' && typeof callId !== 'string') return;
    if (m.cancel === true) {
      const controller = this._calls.get(callId);
      this._calls.delete(callId);
      controller?.abort(new IgorError(`the server stopped waiting for call ${callId}`, 0, 'Cancelled'));
      return;
    }
    const action = m.action;
    if (typeof action !== 'string') return;
    const fn = this._functions.get(action);
    if (!fn) {
      this._write(JSON.stringify({ callId, error: `this client exposes no function named ${JSON.stringify(action)}`, code: 404, type: 'UnknownAction' }));
      return;
    }
    const controller = new AbortController();
    this._calls.set(callId, controller);
    /** Send `message`; if it cannot go (not JSON, binary to an old server, too big), `fallback`, else the reason. */
    const answer = (message: Record<string, unknown>, fallback?: Record<string, unknown>): void => {
      // Cancelled, or the connection it came on is gone: the server expects no answer.
      if (this._calls.get(callId) !== controller) return;
      this._calls.delete(callId);
      let payload: Payload;
      try {
        const encoded = encode({ callId, ...message }, `the answer of ${JSON.stringify(action)}`);
        const { protocol, limits } = this._server;
        if (encoded.binary && protocol < 3) {
          throw new TypeError(`the answer of ${JSON.stringify(action)} holds binary data, which protocol ${protocol} cannot carry`);
        }
        if (protocol >= 3 && encoded.size > limits.maxMessageSize) {
          throw new TypeError(`the answer of ${JSON.stringify(action)} is ${encoded.size} bytes, more than the server reads (max_message_size ${limits.maxMessageSize})`);
        }
        payload = encoded.payload;
      } catch (error) {
        if (fallback) console.warn('[igor-client]', `the data of the error thrown by ${JSON.stringify(action)} cannot be sent; answering without it:`, error);
        payload = JSON.stringify({ callId, ...(fallback ?? errorAnswer(error)) });
      }
      this._write(payload);
    };
    // Through a promise: a synchronous throw is answered like a rejection, and nothing here waits for fn.
    new Promise<unknown>((resolve) => resolve(fn(m.data, controller.signal))).then(
      (result) => answer({ data: result === undefined ? null : result }),
      (error: unknown) => {
        const full = errorAnswer(error);
        const { data, ...bare } = full;
        answer(full, data === undefined ? undefined : bare);
      },
    );
  }

  /** The connection is gone: the server calls it carried can no longer be answered. */
  abortAll(reason: IgorError): void {
    const controllers = [...this._calls.values()];
    this._calls.clear();
    for (const controller of controllers) controller.abort(reason);
  }
}
