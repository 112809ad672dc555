/**
 * Protocol 3's binary messages: a message any of whose values is binary
 * travels as one WebSocket binary message,
 *
 * ```text
 * [H: uint32 big-endian][head: H bytes of UTF-8 JSON][the binary values, back to back]
 * ```
 *
 * where the head is the message as protocol 2 would send it, each binary
 * value replaced by `null`, plus `"binary": [{"at": PATH, "size": N}, ...]`
 * (PATH from the top of the message, starting with `"data"`). A message
 * without binary values stays the JSON text it always was.
 *
 * @packageDocumentation
 */

import { describe, serialise, utf8Length } from './util.js';

/** What the client takes as a binary value anywhere in the data it sends. */
export type BinaryInput = Uint8Array | ArrayBufferView | ArrayBuffer | Blob;

/** A path into a message: object keys and array indexes, from the top. */
export type BinaryPath = (string | number)[];

/** The most binary values one message may hold (the server refuses more). */
export const MAX_BINARY_ENTRIES = 1024;

/** One outgoing message: a text frame, a binary one, or a binary one still being read (a Blob inside). */
export type Payload = string | Uint8Array | Promise<Uint8Array>;

/** An encoded message: its payload and how many bytes it is (known before a Blob is read). */
export interface Encoded {
  payload: Payload;
  size: number;
  /** True when it must go as a binary message (only protocol 3 can carry it). */
  binary: boolean;
}

const hasBlob = typeof Blob === 'function';
const toString = Object.prototype.toString;

function isArrayBuffer(value: unknown): value is ArrayBuffer {
  // The tag, not instanceof, so that a buffer from another realm (an iframe, a vm context) counts.
  return value instanceof ArrayBuffer || toString.call(value) === '[object ArrayBuffer]';
}

function isBlob(value: unknown): value is Blob {
  return hasBlob && value instanceof Blob;
}

/** True for every value the client sends as binary: an ArrayBufferView (Uint8Array, Buffer, DataView...), an ArrayBuffer, a Blob. */
export function isBinary(value: unknown): value is BinaryInput {
  if (value === null || typeof value !== 'object') return false;
  return ArrayBuffer.isView(value) || isArrayBuffer(value) || isBlob(value);
}

/** The bytes of a view or buffer as a Uint8Array over the same memory: a view's own bytes only, its offset respected. */
export function bytesOf(value: ArrayBufferView | ArrayBuffer): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(value);
}

type Part = Uint8Array | Blob;

/**
 * `value` with each binary value replaced by null (copying only the objects
 * and arrays on the way to one), and the binary values found, in order.
 * Walks what JSON.stringify would write: arrays, and the own enumerable keys
 * of plain objects; anything else (a Date, a class instance) is left to it.
 */
function extract(value: unknown, path: BinaryPath, found: { at: BinaryPath; part: Part }[], seen: Set<object>): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (isBinary(value)) {
    found.push({ at: path.slice(), part: isBlob(value) ? value : bytesOf(value) });
    return null;
  }
  const isArray = Array.isArray(value);
  if (!isArray && Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  if (!isArray && typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
  // A cycle: leave it for JSON.stringify to refuse with its own message.
  if (seen.has(value)) return value;
  seen.add(value);
  if (isArray) {
    let copy: unknown[] | undefined;
    const array = value as unknown[];
    for (let i = 0; i < array.length; i++) {
      path.push(i);
      const item = extract(array[i], path, found, seen);
      path.pop();
      if (item !== array[i]) (copy ??= array.slice())[i] = item;
    }
    seen.delete(value);
    return copy ?? value;
  }
  let copy: Record<string, unknown> | undefined;
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    path.push(key);
    const item = extract(object[key], path, found, seen);
    path.pop();
    if (item !== object[key]) (copy ??= { ...object })[key] = item;
  }
  seen.delete(value);
  return copy ?? value;
}

const encoder = new TextEncoder();

/**
 * Encode one outgoing message: the JSON text when its `data` holds no binary
 * value, else the binary layout (read asynchronously when a Blob is inside;
 * the connection keeps the order of messages all the same).
 *
 * @throws TypeError when the message cannot be serialised (as
 *   {@link serialise}), or holds more than 1024 binary values.
 */
export function encode(message: Record<string, unknown>, what: string): Encoded {
  const found: { at: BinaryPath; part: Part }[] = [];
  const data = 'data' in message ? extract(message.data, ['data'], found, new Set()) : undefined;
  if (found.length === 0) {
    const text = serialise(message, what);
    return { payload: text, size: utf8Length(text), binary: false };
  }
  if (found.length > MAX_BINARY_ENTRIES) {
    throw new TypeError(`${what}: data holds ${found.length} binary values, more than one message may carry (${MAX_BINARY_ENTRIES})`);
  }
  const head = serialise({ ...message, data, binary: found.map(({ at, part }) => ({ at, size: sizeOf(part) })) }, what);
  const headBytes = encoder.encode(head);
  let size = 4 + headBytes.length;
  for (const { part } of found) size += sizeOf(part);
  const assemble = (parts: Uint8Array[]): Uint8Array => {
    const out = new Uint8Array(size);
    new DataView(out.buffer).setUint32(0, headBytes.length);
    out.set(headBytes, 4);
    let offset = 4 + headBytes.length;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  };
  const parts = found.map(({ part }) => part);
  if (!parts.some(isBlob)) return { payload: assemble(parts as Uint8Array[]), size, binary: true };
  const read = Promise.all(parts.map((part) => (isBlob(part) ? part.arrayBuffer().then((b) => new Uint8Array(b)) : part)));
  const payload = read.then((bytes) => {
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i].length !== sizeOf(parts[i])) throw new Error(`${what}: a Blob changed size while it was read`);
    }
    return assemble(bytes);
  });
  payload.catch(() => {}); // the connection reports it; do not let it be an unhandled rejection meanwhile
  return { payload, size, binary: true };
}

function sizeOf(part: Part): number {
  return part instanceof Uint8Array ? part.byteLength : part.size;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Why a binary message could not be read. */
export class MalformedBinary extends Error {
  constructor(message: string, readonly streamId?: unknown) {
    super(message);
    this.name = 'MalformedBinary';
  }
}

function isContainer(value: unknown): value is Record<string | number, unknown> {
  return value !== null && typeof value === 'object' && !(value instanceof Uint8Array);
}

/**
 * Read one binary message: its head, with each binary value put back at its
 * path as a Uint8Array over the received buffer (no copy).
 *
 * @throws MalformedBinary saying what is wrong with it.
 */
export function decode(raw: ArrayBuffer | ArrayBufferView): Record<string, unknown> {
  // A plain Uint8Array even over a Node Buffer, so that values are Uint8Arrays and not Buffers.
  const bytes = ArrayBuffer.isView(raw) ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : new Uint8Array(raw);
  if (bytes.length < 4) throw new MalformedBinary(`a binary message of ${bytes.length} bytes is shorter than its 4-byte head length`);
  const headLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + headLength > bytes.length) {
    throw new MalformedBinary(`the head length ${headLength} runs past the end of the ${bytes.length}-byte message`);
  }
  let head: unknown;
  try {
    head = JSON.parse(decoder.decode(bytes.subarray(4, 4 + headLength)));
  } catch {
    throw new MalformedBinary('the head of a binary message is not UTF-8 JSON');
  }
  if (!head || typeof head !== 'object' || Array.isArray(head)) throw new MalformedBinary('the head of a binary message is not a JSON object');
  const message = head as Record<string, unknown>;
  const streamId = message.streamId;
  const fail = (why: string): never => {
    throw new MalformedBinary(why, streamId);
  };
  const entries = message.binary;
  delete message.binary;
  if (!Array.isArray(entries) || entries.length === 0 || entries.length > MAX_BINARY_ENTRIES) {
    fail(`"binary" must be an array of 1 to ${MAX_BINARY_ENTRIES} entries, got ${describe(entries)}`);
  }
  let offset = 4 + headLength;
  for (const entry of entries as unknown[]) {
    const { at, size } = (entry ?? {}) as { at?: unknown; size?: unknown };
    if (!Array.isArray(at) || at.length === 0 || at[0] !== 'data') fail(`a "binary" entry's "at" must be a path starting with "data", got ${JSON.stringify(at)}`);
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) fail(`a "binary" entry's "size" must be a non-negative integer, got ${JSON.stringify(size)}`);
    const path = at as unknown[];
    let container: unknown = message;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i];
      if (!isContainer(container) || (typeof key !== 'string' && typeof key !== 'number')) container = undefined;
      else container = container[key as string];
    }
    const last = path[path.length - 1];
    const validKey = typeof last === 'string' || (typeof last === 'number' && Number.isInteger(last) && last >= 0);
    if (!isContainer(container) || !validKey || container[last as string] !== null) fail(`the path ${JSON.stringify(at)} does not lead to a null in the head`);
    if (offset + (size as number) > bytes.length) fail('the sizes in "binary" add up to more than the bytes after the head');
    const value = bytes.subarray(offset, offset + (size as number));
    offset += size as number;
    // Put it in place at once: a later path into it (a repeat, or one it is a prefix of) then finds no null.
    (container as Record<string | number, unknown>)[last as string] = value;
  }
  if (offset !== bytes.length) fail(`the sizes in "binary" add up to ${offset - 4 - headLength} bytes, but ${bytes.length - 4 - headLength} follow the head`);
  return message;
}
