// Must fail to compile (test/typed.test.mjs): each line after an `error:` comment
// has that error, and there is no other.
import { IgorClient } from 'igor-client';
import { stream$ } from 'igor-client/rxjs';
import type { Api } from './api.js';

const igor = new IgorClient<Api>('ws://127.0.0.1:5678');
export async function use(): Promise<void> {
  for await (const tick of igor.stream('jobs.count', 3)) {
    // error: TS2322 Type 'Unit' is not assignable to type '"hours"'.
    const unit: 'hours' = tick.unit;
    // error: TS2339 Property 'count' does not exist on type 'Tick'.
    console.log(unit, tick.count);
  }
  // error: TS2339 Property 'n' does not exist on type 'string'.
  stream$(igor, 'hello', { name: 'Ada', punctuation: null }).subscribe((greeting) => greeting.n);
}
