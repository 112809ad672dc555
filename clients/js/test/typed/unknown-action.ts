// Must fail to compile (test/typed.test.mjs): each line after an `error:` comment
// has that error, and there is no other.
import { IgorClient } from 'igor-client';
import { call$ } from 'igor-client/rxjs';
import type { Api } from './api.js';

const igor = new IgorClient<Api>('ws://127.0.0.1:5678');
// error: TS2345 Argument of type '"jobs.cont"' is not assignable to parameter of type
export const a = igor.call('jobs.cont', 3);
// error: TS2345 Argument of type '"goodbye"' is not assignable
export const b = call$(igor, 'goodbye');
