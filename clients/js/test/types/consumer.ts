// Compiled (never run) by test/types.test.mjs: the published declarations
// must type-check for a strict TypeScript consumer, library checks included.
import { IgorClient, IgorError } from '../../dist/index.js';
import type { ConnectionStatus, IgorStream, Push, StatusEvent } from '../../dist/index.js';
import { call$, on$, pushes$, status$, stream$ } from '../../dist/rxjs.js';
import { IGOR_CONFIG, IgorService, provideIgor } from '../../dist/angular.js';
import type { Observable } from 'rxjs';

const igor = new IgorClient('ws://127.0.0.1:5678', {
  token: 't',
  tokenIn: 'query',
  clientId: 'main-window',
  reconnect: { initialDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5, maxAttempts: 5 },
  timeout: 1000,
  maxQueuedBytes: 1 << 20,
  maxStreamBuffer: 4 << 20,
  connectTimeout: 5000,
  autoConnect: false,
});
const ready: Promise<void> = igor.ready;
const opened: Promise<void> = igor.connect();
const greeting: Promise<string> = igor.call<string>('hello', { name: 'Ada' }, { timeout: 5, signal: new AbortController().signal });
const numbers: IgorStream<number> = igor.stream<number>('jobs.count', { n: 3 });
const subscription = numbers.subscribe({ next: (n: number) => n + 1, error: (e: IgorError) => e.code, complete: () => undefined });
subscription.unsubscribe();
numbers.maxBuffer = 1 << 20;
const waiting: number = numbers.buffered + numbers.maxBuffered;
numbers.cancel();
async function iterate(): Promise<number> {
  let sum = 0;
  for await (const n of igor.stream<number>('jobs.count')) sum += n;
  return sum;
}
const off: () => void = igor.on<{ counter: number }>('counter_increment', (data, push: Push<{ counter: number }>) => data.counter + push.data.counter);
igor.on('counter_process', { next: () => undefined, error: (e: IgorError) => e.type, complete: () => undefined });
const offStatus: () => void = igor.onStatus((event: StatusEvent) => event.delay);
const status: ConnectionStatus = igor.status;
igor.onError((e) => e.message);

const a: Observable<string> = call$<string>(igor, 'hello');
const b: Observable<number> = stream$<number>(igor, 'jobs.count');
const c: Observable<{ n: number }> = on$<{ n: number }>(igor, 'tick');
const d: Observable<Push<number>> = pushes$<number>(igor, 'ticker');
const e: Observable<ConnectionStatus> = status$(igor);

const service = new IgorService({ url: 'ws://127.0.0.1:5678', token: 't' });
const f: Observable<string> = service.call<string>('hello');
const g: Observable<number> = service.stream<number>('jobs.count');
const h: Observable<unknown> = service.on('tick');
const providers = [provideIgor({ url: 'ws://x' }), { provide: IGOR_CONFIG, useValue: igor }];
const err = new IgorError('m', 0, 'Timeout');
const isError: boolean = err instanceof Error && err.code === 0 && err.type === 'Timeout';

export { ready, opened, greeting, iterate, off, offStatus, status, a, b, c, d, e, f, g, h, providers, isError };

// Protocol 3: where a typed action takes `Uint8Array` (Python's bytes), any binary goes;
// what comes back is a Uint8Array. Uploads and downloads are typed too.
interface BinaryApi {
  'files.save': { data: { name: string; body: Uint8Array; parts: Uint8Array[] }; value: { bytes: number; echo: Uint8Array } };
}
export async function binary(): Promise<number> {
  const typedBinary = new IgorClient<BinaryApi>('ws://127.0.0.1:5678');
  const saved = await typedBinary.call('files.save', {
    name: 'a', body: new Blob(['x']), parts: [new Uint8Array(1), new ArrayBuffer(2), new DataView(new ArrayBuffer(4), 1, 2)],
  });
  const echo: Uint8Array = saved.echo;
  const stream = igor.stream<number>('x');
  stream.send(new Float32Array(2));
  const done: { bytes: number } = await igor.upload<{ bytes: number }>('x', new Blob([]), {
    data: { name: 'n' }, chunkSize: 1024, onProgress: (d: number, t: number | null) => void [d, t], signal: new AbortController().signal,
  });
  const bytes: Uint8Array = await igor.download('x', null, { onProgress: (d, t, info) => void [d, t, info.name] });
  const streamed = await igor.download('x', null, { onChunk: (chunk: Uint8Array) => void chunk });
  const received: number = streamed.received;
  return saved.bytes + echo.length + done.bytes + bytes.length + received;
}
