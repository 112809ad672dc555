// Compiled (never run) by test/bidi.test.mjs: the declarations of the
// bidirectional API type-check for a strict TypeScript consumer.
import { IgorClient, IgorError, IgorStream } from '../../dist/index.js';
import type { ExposedFunction } from '../../dist/index.js';
import { IgorService } from '../../dist/angular.js';
import { channel$ } from '../../dist/rxjs.js';
import { of } from 'rxjs';
import type { Observable } from 'rxjs';

const igor = new IgorClient('ws://127.0.0.1:5678');

const chat: IgorStream<{ n: number; upper: string }, string> = new IgorStream(
  { cancelStream: () => undefined, sendInput: () => undefined },
  1,
  'chat',
);
chat.send('a line');
// @ts-expect-error: this stream takes strings
chat.send(42);
chat.end();
const inputClosed: boolean = chat.inputClosed;

const untyped = igor.stream('chat');
untyped.send({ any: 'json' });
untyped.end();

const unexpose: () => void = igor.expose('confirm', async (data: { question: string }, signal: AbortSignal) => {
  if (signal.aborted) throw new IgorError('gone', 0, 'Cancelled');
  return data.question.length > 0;
});
unexpose();
const confirm: ExposedFunction<{ question: string }, boolean> = (data) => data.question === 'yes';
igor.expose('confirm', confirm);
igor.expose<number, number>('double', (n) => n * 2);

igor.sendToProcess('notifier', { text: 'hi' });

const answers: Observable<{ n: number }> = channel$<{ n: number }, string>(igor, 'chat', of('a', 'b'), { topic: 1 }, { timeout: 1000 });

// The Angular service offers the same three.
const service = new IgorService(igor);
const viaService: Observable<{ n: number }> = service.channel<{ n: number }, string>('chat', of('a'), { topic: 1 });
const unexposeViaService: () => void = service.expose<number, number>('double', (n) => n * 2);
service.sendToProcess('notifier', { text: 'hi' });
// @ts-expect-error: the process id is a string
service.sendToProcess(7);

export { inputClosed, answers, viaService, unexposeViaService };
