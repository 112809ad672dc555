/**
 * Types of typed actions: what `new IgorClient<Api>(url)` checks `call()` and
 * `stream()` against. `Api` is generated from the Python handlers'
 * annotations by `python -m igor types module:API -o api.d.ts`:
 *
 * ```ts
 * export interface Api {
 *   'hello': { data: { name: string }; value: string };
 * }
 * ```
 *
 * One entry per action: `data`, the type of the data it takes; `value`, the
 * type of each value it sends (what `call()` resolves to, what a `stream()`
 * yields).
 *
 * @packageDocumentation
 */

import type { BinaryInput } from './binary.js';
import type { CallOptions } from './options.js';

/** The entry of one action in an `Api`. */
export interface ActionTypes {
  /** The type of the data the action takes. */
  data: unknown;
  /** The type of each value the action sends. */
  value: unknown;
}

/**
 * True for the `Api` of an untyped client: `any` (what `new IgorClient(url)`
 * gets) or one with an index signature (`{ [action: string]: ActionTypes }`).
 * Such a client takes any action name and data, as an untyped client always has.
 */
export type IsUntyped<A> = 0 extends 1 & A ? true : string extends keyof A ? true : false;

/** The actions every Igor server answers, whatever its API. */
export interface BuiltinActions {
  /**
   * Claim a client id (the `clientId` option does it for you, and presents
   * the `resume` secret on a reconnect). A parked session is handed back
   * only with the secret of the latest introduction under that id; the
   * answer carries the next one.
   */
  introduce_self: {
    data: { client_id: string | number; resume?: string };
    value: { client_id: string | number; resume?: string };
  };
}

/** The action names of `A`, and the built-in ones. */
export type ActionName<A> = IsUntyped<A> extends true ? string : Extract<keyof A, string> | keyof BuiltinActions;

/** The data action `K` of `A` takes. */
export type ActionData<A, K> = IsUntyped<A> extends true
  ? unknown
  : K extends keyof BuiltinActions
    ? BuiltinActions[K]['data']
    : K extends keyof A
      ? A[K] extends { data: infer D }
        ? D
        : unknown
      : unknown;

/** The type of each value action `K` of `A` sends. */
export type ActionValue<A, K> = K extends keyof BuiltinActions
  ? BuiltinActions[K]['value']
  : K extends keyof A
    ? A[K] extends { value: infer V }
      ? V
      : unknown
    : unknown;

/**
 * The values of a call: with an untyped client `T` (as given, or inferred
 * from where the result goes, as always); with a typed one the action's
 * `value`, whatever `T` says, so that a wrong use of the result is an error.
 */
export type ActionResult<A, K, T> = IsUntyped<A> extends true ? T : ActionValue<A, K>;

/**
 * What may be sent where the action's type says `Uint8Array` (Python's
 * `bytes`): any binary the client takes (a view of any kind, an
 * ArrayBuffer, a Blob); the handler gets `bytes` all the same.
 */
export type Sendable<T> = T extends Uint8Array ? BinaryInput : T extends object ? { [K in keyof T]: Sendable<T[K]> } : T;

/**
 * The arguments after the action name: the data, which may be left out when
 * the action takes `null` (Python's `None`: an `Optional` or unannotated
 * `data`), then the call options.
 */
export type CallArgs<A, K> = undefined extends ActionData<A, K>
  ? [data?: Sendable<ActionData<A, K>>, options?: CallOptions]
  : null extends ActionData<A, K>
    ? [data?: Sendable<ActionData<A, K>>, options?: CallOptions]
    : [data: Sendable<ActionData<A, K>>, options?: CallOptions];
