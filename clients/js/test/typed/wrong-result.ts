// Must fail to compile (test/typed.test.mjs): each line after an `error:` comment
// has that error, and there is no other.
import { IgorClient } from 'igor-client';
import type { Api } from './api.js';

const igor = new IgorClient<Api>('ws://127.0.0.1:5678');
export async function use(): Promise<void> {
  // error: TS2322 Type 'string' is not assignable to type 'number'.
  const n: number = await igor.call('hello', { name: 'Ada', punctuation: null });
  const tags = await igor.call('tags');
  // error: TS2339 Property 'toUpperCase' does not exist on type 'string[]'.
  tags.toUpperCase();
  void n;
}
