/**
 * Listeners of pushes from background processes, by push name or process id.
 *
 * @packageDocumentation
 */

import type { IgorError } from './errors.js';
import type { Push, PushListener, PushObserver } from './options.js';
import { describe, safely } from './util.js';

/** @internal The push listeners of one client; they outlive its connections. */
export class PushListeners {
  private readonly _listeners = new Map<string, Set<PushObserver<any>>>();

  /** @param _reportError - where an error goes that no observer takes (the client's onError). */
  constructor(private readonly _reportError: (error: IgorError) => void) {}

  on<T>(name: string | number, listener: PushListener<T> | PushObserver<T>): () => void {
    if (typeof name !== 'string' && typeof name !== 'number') {
      throw new TypeError(`on: the name must be a push name or a process id (a string or a number), got ${describe(name)}`);
    }
    if (typeof listener !== 'function' && (listener === null || typeof listener !== 'object')) {
      throw new TypeError(`on(${JSON.stringify(name)}, listener): listener must be a function or an observer, got ${describe(listener)}`);
    }
    const observer: PushObserver<T> = typeof listener === 'function' ? { next: listener } : listener;
    const key = String(name);
    let set = this._listeners.get(key);
    if (!set) this._listeners.set(key, (set = new Set()));
    set.add(observer);
    return () => {
      const current = this._listeners.get(key);
      if (!current) return;
      current.delete(observer);
      if (current.size === 0) this._listeners.delete(key);
    };
  }

  /** A push: to the listeners of its name and of its process. */
  dispatch(action: string, processId: string | number | undefined, data: unknown): void {
    const push: Push = { action, processId: processId as string | number, data };
    const targets = new Set<PushObserver<any>>();
    for (const key of processId !== undefined && String(processId) !== action ? [action, String(processId)] : [action]) {
      const set = this._listeners.get(key);
      if (set) for (const o of set) targets.add(o);
    }
    for (const o of targets) if (o.next) safely(() => o.next!(data, push));
  }

  /** An error about process `processId`: to its observers' `error`, or to onError when none has one. */
  processError(processId: string, error: IgorError): void {
    const observers = this._listeners.get(processId);
    const handlers = observers ? [...observers].filter((o) => o.error) : [];
    if (handlers.length === 0) this._reportError(error);
    for (const o of handlers) safely(() => o.error!(error));
  }

  /** Process `processId` ended. */
  complete(processId: string): void {
    const observers = this._listeners.get(processId);
    if (observers) for (const o of [...observers]) if (o.complete) safely(() => o.complete!());
  }
}
