/**
 * igor-client: use an Igor Python backend from a browser page, an Electron
 * renderer or Node, over one WebSocket.
 *
 * ```ts
 * import { IgorClient, IgorError } from 'igor-client';
 * const igor = new IgorClient('ws://127.0.0.1:5678', { token });
 * console.log(await igor.call('hello', { name: 'Ada' }));
 * ```
 *
 * This entry has no dependency: it uses the platform's WebSocket (or the `ws`
 * package in Node versions without one). RxJS support is in
 * `igor-client/rxjs`, Angular in `igor-client/angular`, launching the Python
 * server from Node in `igor-client/node`.
 *
 * @packageDocumentation
 */

export { IgorClient } from './client.js';
export type {
  CallOptions,
  ConnectionStatus,
  ExposedFunction,
  IgorClientOptions,
  Push,
  PushListener,
  PushObserver,
  ReconnectOptions,
  StatusEvent,
  WebSocketConstructor,
  WebSocketLike,
} from './options.js';
export { IgorError } from './errors.js';
export type { ClientErrorType, WireError } from './errors.js';
export { IgorStream } from './stream.js';
export type { BinaryInput } from './binary.js';
export type { DownloadOptions, DownloadResult, TransferInfo, UploadChunk, UploadOptions, UploadSource } from './transfer.js';
export type { ActionData, ActionName, ActionResult, ActionTypes, ActionValue, BuiltinActions, CallArgs, IsUntyped } from './typed.js';
export type { StreamObserver, Unsubscribable } from './stream.js';
