/**
 * Small helpers shared by the connection and the calls.
 *
 * @packageDocumentation
 */

export type Deferred<T> = {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
  settled: boolean;
};

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A rejection nobody awaits must not crash Node: mark it handled here; whoever awaits still sees it.
  promise.catch(() => {});
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      d.settled = true;
      resolve(value);
    },
    reject: (error) => {
      d.settled = true;
      reject(error);
    },
  };
  return d;
}

/** The UTF-8 size of `text`, without encoding it. */
export function utf8Length(text: string): number {
  let size = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    // Two bytes below U+0800; three above, and four for a surrogate pair (two units: one extra each).
    size += unit < 0x800 || (unit >= 0xd800 && unit < 0xe000) ? 1 : 2;
  }
  return size;
}

/** How a value looks in an error message: strings quoted, functions and objects by kind. */
export function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return value.toString();
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return String(value); // NaN and Infinity, which JSON would print as null
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Run a user callback; what it throws goes to the host (uncaught) later, without breaking the caller's loop. */
export function safely(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    setTimeout(() => {
      throw e;
    }, 0);
  }
}

/**
 * The JSON text of an outgoing message, or a TypeError saying what could not
 * be serialised: the app gave a value JSON cannot carry, a programmer error.
 */
export function serialise(message: Record<string, unknown>, what: string): string {
  let text: string | undefined;
  let cause: unknown;
  try {
    text = JSON.stringify(message);
  } catch (e) {
    cause = e;
  }
  const data = message.data;
  // JSON.stringify drops a function or a symbol as a field without failing: refuse it too.
  if (text === undefined || typeof data === 'function' || typeof data === 'symbol') {
    const error = new TypeError(`${what}: data is not JSON-serialisable${cause ? ': ' + (cause as Error).message : ` (${describe(data)})`}`);
    if (cause !== undefined) (error as { cause?: unknown }).cause = cause;
    throw error;
  }
  return text;
}
