// The published .d.ts files type-check for a strict consumer (skipLibCheck off).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const consumer = fileURLToPath(new URL('./types/consumer.ts', import.meta.url));

it('dist/*.d.ts compile for a strict TypeScript consumer', () => {
  const result = spawnSync(
    process.execPath,
    [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
      '--target', 'ES2020', '--lib', 'ES2022,DOM', '--types', 'node', consumer],
    { encoding: 'utf8', timeout: 120000 },
  );
  assert.equal(result.status, 0, `tsc failed:\n${result.stdout}\n${result.stderr}`);
});
