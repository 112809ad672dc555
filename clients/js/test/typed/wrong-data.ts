// Must fail to compile (test/typed.test.mjs): each line after an `error:` comment
// has that error, and there is no other.
import { IgorClient } from 'igor-client';
import type { Api } from './api.js';

const igor = new IgorClient<Api>('ws://127.0.0.1:5678');
// error: TS2322 Type 'number' is not assignable to type 'string'.
export const a = igor.call('hello', { name: 42, punctuation: null });
// error: TS2322 Type '"."' is not assignable to type '"!" | "?" | null'.
export const b = igor.call('hello', { name: 'Ada', punctuation: '.' });
// error: TS2345 Argument of type 'string' is not assignable to parameter of type 'number'.
export const c = igor.stream('jobs.count', 'three');
// error: TS2554 Expected 2-3 arguments, but got 1.
export const d = igor.call('hello');
