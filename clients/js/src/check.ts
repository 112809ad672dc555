/**
 * Checks of what the app passes to {@link IgorClient}: a wrong type is a
 * programmer error, thrown at once as a native `TypeError` naming the option,
 * rather than a failure much later (a string `timeout` that never fires).
 *
 * @packageDocumentation
 */

import type { CallOptions, IgorClientOptions } from './options.js';
import { describe } from './util.js';

function fail(what: string, expected: string, value: unknown): never {
  throw new TypeError(`${what} must be ${expected}, got ${describe(value)}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A number of ms or bytes: `undefined` is the default; `Infinity` allowed where there may be no limit. */
function checkAmount(what: string, value: unknown, { positive = false, infinite = true } = {}): void {
  if (value === undefined) return;
  const ok = typeof value === 'number' && !Number.isNaN(value) && (positive ? value > 0 : value >= 0) && (infinite || Number.isFinite(value));
  if (!ok) fail(what, `a ${positive ? 'positive' : 'non-negative'}${infinite ? '' : ' finite'} number`, value);
}

export function checkClientArguments(url: unknown, options: unknown): asserts options is IgorClientOptions {
  if (typeof url !== 'string' || url === '') fail('IgorClient: url', 'a non-empty string such as "ws://127.0.0.1:5678"', url);
  if (!isObject(options)) fail('IgorClient: options', 'an object', options);
  const o = options as Record<string, unknown>;
  if (o.token !== undefined && o.token !== null && typeof o.token !== 'string') fail('IgorClient: options.token', 'a string or null', o.token);
  if (o.tokenIn !== undefined && o.tokenIn !== 'protocol' && o.tokenIn !== 'query') fail('IgorClient: options.tokenIn', "'protocol' or 'query'", o.tokenIn);
  if (o.clientId !== undefined && o.clientId !== null && typeof o.clientId !== 'string' && typeof o.clientId !== 'number') {
    fail('IgorClient: options.clientId', 'a string or a number', o.clientId);
  }
  if (o.reconnect !== undefined && typeof o.reconnect !== 'boolean') {
    if (!isObject(o.reconnect)) fail('IgorClient: options.reconnect', 'a boolean or an object of ReconnectOptions', o.reconnect);
    const r = o.reconnect as Record<string, unknown>;
    checkAmount('IgorClient: options.reconnect.initialDelay', r.initialDelay, { infinite: false });
    checkAmount('IgorClient: options.reconnect.maxDelay', r.maxDelay, { infinite: false });
    checkAmount('IgorClient: options.reconnect.factor', r.factor, { positive: true, infinite: false });
    if (r.jitter !== undefined && !(typeof r.jitter === 'number' && r.jitter >= 0 && r.jitter <= 1)) {
      fail('IgorClient: options.reconnect.jitter', 'a number from 0 to 1', r.jitter);
    }
    checkAmount('IgorClient: options.reconnect.maxAttempts', r.maxAttempts);
  }
  if (o.timeout !== null) checkAmount('IgorClient: options.timeout', o.timeout);
  checkAmount('IgorClient: options.maxQueuedBytes', o.maxQueuedBytes, { positive: true });
  checkAmount('IgorClient: options.maxStreamBuffer', o.maxStreamBuffer, { positive: true });
  checkAmount('IgorClient: options.connectTimeout', o.connectTimeout, { positive: true });
  if (o.autoConnect !== undefined && typeof o.autoConnect !== 'boolean') fail('IgorClient: options.autoConnect', 'a boolean', o.autoConnect);
  if (o.WebSocket !== undefined && typeof o.WebSocket !== 'function') fail('IgorClient: options.WebSocket', 'a WebSocket class', o.WebSocket);
}

export function checkCallArguments(what: string, action: unknown, options: unknown): asserts options is CallOptions | undefined {
  if (typeof action !== 'string' || action === '') fail(`${what}: the action`, "a non-empty string such as 'hello'", action);
  if (options === undefined) return;
  if (!isObject(options)) fail(`${what}(${JSON.stringify(action)}): options`, 'an object of CallOptions', options);
  const o = options as Record<string, unknown>;
  if (o.timeout !== null) checkAmount(`${what}(${JSON.stringify(action)}): options.timeout`, o.timeout);
  const signal = o.signal as { aborted?: unknown; addEventListener?: unknown } | undefined;
  if (signal !== undefined && (!isObject(signal) || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
    fail(`${what}(${JSON.stringify(action)}): options.signal`, 'an AbortSignal', signal);
  }
}

export function checkFunction(what: string, value: unknown): void {
  if (typeof value !== 'function') fail(what, 'a function', value);
}
