/**
 * Finding a WebSocket class for the platform, and reading what a failed
 * handshake says.
 *
 * @packageDocumentation
 */

import { IgorError } from './errors.js';
import type { WebSocketConstructor } from './options.js';

export const SUBPROTOCOL_SAFE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
export const WS_OPEN = 1;

let wsImport: Promise<WebSocketConstructor> | undefined;

/** True in Node (not in a browser, nor in an Electron renderer, which has a `window`). */
function isNode(): boolean {
  const g = globalThis as { process?: { versions?: { node?: unknown } }; window?: unknown };
  return typeof g.process?.versions?.node === 'string' && typeof g.window === 'undefined';
}

/**
 * The token in the page's address fragment (`#token=...`), where `igor app`,
 * `IgorServer.open_window()` and `igor serve --static` put it: a fragment is
 * never sent over HTTP, so it stays out of server logs. `undefined` outside a
 * browser (Node has no page; a `location` there is not one) and when the
 * fragment holds no token.
 */
export function tokenFromLocation(): string | undefined {
  if (isNode()) return undefined;
  const hash = (globalThis as { location?: { hash?: unknown } }).location?.hash;
  if (typeof hash !== 'string' || hash === '') return undefined;
  return new URLSearchParams(hash.replace(/^#/, '')).get('token') || undefined;
}

/**
 * Find a WebSocket class: the given one; in a browser the global one; in Node
 * the `ws` package when it can be imported, else the global one (Node 22+).
 */
export function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
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
export function httpStatusOf(message: string | undefined): number | undefined {
  const match = message ? /Unexpected server response: (\d{3})/.exec(message) : null;
  return match ? Number(match[1]) : undefined;
}

/** The protocol version of the subprotocol a server chose: 3 for `'igor.v3'`, 2 for `'igor.v2'`, else 1. */
export function protocolOf(subprotocol: string | undefined): number {
  if (subprotocol === 'igor.v3') return 3;
  if (subprotocol === 'igor.v2') return 2;
  return 1;
}

/**
 * The figures a protocol 3 server announces in its hello: what one message
 * may be, and how much unread input one stream may hold. Upload helpers size
 * their chunks and pace themselves by them.
 */
export interface ServerLimits {
  /** The largest message the server reads, in bytes (16 MiB by default). */
  maxMessageSize: number;
  /** The unread input messages one stream may hold (100 by default). */
  inboxSize: number;
  /** The bytes of unread input a client may keep in flight on one stream (4 MiB by default). */
  inputWindow: number;
}

/** What a server that sends no hello (protocol 1 and 2) is assumed to take: its defaults. */
export const DEFAULT_LIMITS: ServerLimits = { maxMessageSize: 16 * 1024 * 1024, inboxSize: 100, inputWindow: 4 * 1024 * 1024 };

export const HTTP_HINTS: Record<number, string> = {
  400: 'the server refused the handshake as malformed',
  401: 'the server requires a token and this one is missing or wrong',
  403: 'the server refused this Host or Origin',
  503: 'the server already has its maximum number of clients',
};

/**
 * The URL and subprotocols of one connection attempt: `'igor.v3'` (protocol
 * 3: binary values, paced input) and `'igor.v2'` (protocol 2: a stream's
 * close may ride on its last message), of which the server picks the highest
 * it speaks, and the token as a subprotocol, or in the query when asked to or
 * when it cannot be one.
 */
export function connectUrl(
  url: string,
  token: string | null | undefined,
  tokenIn: 'protocol' | 'query' | undefined,
): { url: string; protocols: string[] } {
  const protocols = ['igor.v3', 'igor.v2'];
  if (token === undefined || token === null || token === '') return { url, protocols };
  if (tokenIn !== 'query' && SUBPROTOCOL_SAFE.test(token)) return { url, protocols: [...protocols, 'igor.token.' + token] };
  // Relative to the page in a browser (`/socket`); an absolute URL is required elsewhere.
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const withToken = new URL(url, base);
  withToken.searchParams.set('token', token);
  return { url: withToken.toString(), protocols };
}

/** The figures of a hello, each one the default when missing or not a positive number. */
export function limitsOf(hello: Record<string, unknown>): ServerLimits {
  const figure = (key: string, fallback: number): number => {
    const value = hello[key];
    return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
  };
  return {
    maxMessageSize: figure('max_message_size', DEFAULT_LIMITS.maxMessageSize),
    inboxSize: figure('inbox_size', DEFAULT_LIMITS.inboxSize),
    inputWindow: figure('input_window', DEFAULT_LIMITS.inputWindow),
  };
}
