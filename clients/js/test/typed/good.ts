// Compiled (never run) by test/typed.test.mjs against api.d.ts, which the test
// generates from typed_api.py: correct typed use must compile.
import { IgorClient } from 'igor-client';
import { call$, stream$ } from 'igor-client/rxjs';
import { IgorService } from 'igor-client/angular';
import type { Observable } from 'rxjs';
import type { Api, Tick, Unit } from './api.js';

const igor = new IgorClient<Api>('ws://127.0.0.1:5678', { clientId: 'w' });

export async function use(): Promise<number> {
  const greeting: string = await igor.call('hello', { name: 'Ada', punctuation: '!' });
  const upper: string = greeting.toUpperCase();
  let total = 0;
  for await (const tick of igor.stream('jobs.count', 3, { timeout: 1000 })) {
    const unit: Unit = tick.unit;
    total += tick.n + unit.length;
  }
  const tags: string[] = await igor.call('tags'); // data may be left out: the handler takes None
  await igor.call('tags', ['b', 'a']);
  await igor.call('tags', null, { signal: new AbortController().signal });
  await igor.call('introduce_self', { client_id: 'w' }); // the built-in action stays callable
  return total + upper.length + tags.length;
}

// The adapters are typed the same way.
export const ticks: Observable<Tick> = stream$(igor, 'jobs.count', 2);
export const hello$: Observable<string> = call$(igor, 'hello', { name: 'Ada', punctuation: null });
const service = new IgorService<Api>(igor);
export const viaService: Observable<string[]> = service.call('tags', ['x']);
export const serviceTicks: Observable<Tick> = service.stream('jobs.count', 1);
