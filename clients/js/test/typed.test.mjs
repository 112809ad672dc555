// Typed actions end to end: `python -m igor types` writes declarations of a
// real Python API, and tsc accepts correct uses of `IgorClient<Api>` and
// rejects each kind of mistake, with the expected error on the expected line.
// Also: the demo page (plain JS, // @ts-check) type-checks against its
// committed api.d.ts, and stops doing so when it misuses an action.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';

import { PYTHON } from './helpers.mjs';

const require = createRequire(import.meta.url);
const TSC = require.resolve('typescript/bin/tsc');
const PACKAGE = fileURLToPath(new URL('../', import.meta.url));
const TYPED = fileURLToPath(new URL('./typed/', import.meta.url));
const DEMO = fileURLToPath(new URL('../../../examples/demo/', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MISTAKES = ['unknown-action.ts', 'wrong-data.ts', 'wrong-result.ts', 'wrong-stream-value.ts'];

/** Run tsc in `cwd` and return its exit code and the first line of each error, parsed. */
function tsc(cwd, args) {
  const result = spawnSync(process.execPath, [TSC, '--noEmit', '--pretty', 'false', ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 120000,
  });
  const errors = [];
  for (const line of result.stdout.split('\n')) {
    const m = /^(.+?)\((\d+),\d+\): error (TS\d+): (.*)$/.exec(line);
    if (m) errors.push({ file: m[1].split(/[\\/]/).pop(), line: Number(m[2]), code: m[3], message: m[4] });
  }
  return { status: result.status, errors, output: result.stdout + result.stderr };
}

// --skipLibCheck: checking the published declarations themselves is types.test.mjs's job.
const STRICT_NODE = ['--strict', '--skipLibCheck', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2020',
  '--lib', 'ES2022,DOM', '--types', 'node'];
// The demo page runs in a browser: no Node types.
const PAGE = ['--skipLibCheck', '--allowJs', '--checkJs', '--module', 'ESNext', '--moduleResolution', 'bundler', '--target', 'ES2022',
  '--lib', 'ES2022,DOM'];

/** The errors a mistake file declares: `// error: TSnnnn text` says the next line has that error. */
function expectedErrors(file) {
  const lines = readFileSync(join(TYPED, file), 'utf8').split('\n');
  const expected = [];
  lines.forEach((text, index) => {
    const m = /^\s*\/\/ error: (TS\d+) (.*)$/.exec(text);
    if (m) expected.push({ file, line: index + 2, code: m[1], message: m[2] });
  });
  assert.ok(expected.length > 0, `${file} declares no expected error`);
  return expected;
}

describe('python -m igor types + IgorClient<Api>', () => {
  before(() => {
    const env = { ...process.env, PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(delimiter) };
    // Run in test/typed/ so that `typed_api` is found, as `python -m igor` finds the current folder's modules.
    const result = spawnSync(PYTHON, ['-m', 'igor', 'types', 'typed_api:API', '-o', 'api.d.ts'], {
      cwd: TYPED,
      env,
      encoding: 'utf8',
      timeout: 60000,
    });
    assert.equal(result.status, 0, `python -m igor types failed:\n${result.stderr}`);
    assert.match(readFileSync(join(TYPED, 'api.d.ts'), 'utf8'), /^export interface Api \{$/m);
  });

  it('compiles correct typed use of the client, the RxJS functions and the Angular service', () => {
    const result = tsc(PACKAGE, [...STRICT_NODE, join(TYPED, 'good.ts')]);
    assert.equal(result.status, 0, `tsc failed on good.ts:\n${result.output}`);
  });

  it('rejects an unknown action, wrong data, a wrong use of the result and of a stream value', () => {
    const result = tsc(PACKAGE, [...STRICT_NODE, ...MISTAKES.map((file) => join(TYPED, file))]);
    assert.notEqual(result.status, 0, 'tsc accepted the mistakes');
    for (const file of MISTAKES) {
      const expected = expectedErrors(file);
      const actual = result.errors.filter((e) => e.file === file);
      assert.deepEqual(
        actual.map(({ line, code }) => `${file}:${line} ${code}`),
        expected.map(({ line, code }) => `${file}:${line} ${code}`),
        `${file}: not the expected errors:\n${result.output}`,
      );
      for (const [i, e] of expected.entries()) {
        assert.ok(actual[i].message.includes(e.message), `${file}:${e.line}: expected "${e.message}", got "${actual[i].message}"`);
      }
    }
    assert.deepEqual(result.errors.filter((e) => !MISTAKES.includes(e.file)), [], result.output);
  });
});

describe('the demo page', () => {
  it('type-checks against its generated api.d.ts', () => {
    const result = tsc(DEMO, [...PAGE, 'app.js']);
    assert.equal(result.status, 0, `tsc --checkJs failed on examples/demo/app.js:\n${result.output}`);
  });

  it('fails to type-check once it misuses an action', (t) => {
    // A copy beside the same api.d.ts and lib/, with two mistakes: an action
    // name off by one letter and a field whoami's value does not have.
    const dir = mkdtempSync(join(tmpdir(), 'igor-demo-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    for (const file of ['api.d.ts', 'ui.js', 'files.js']) copyFileSync(join(DEMO, file), join(dir, file));
    symlinkSync(join(DEMO, 'lib'), join(dir, 'lib'), 'dir');
    const app = readFileSync(join(DEMO, 'app.js'), 'utf8');
    const mutated = app.replace("igor.call('events.list')", "igor.call('events.lst')").replace('me.calls', 'me.visits');
    assert.notEqual(mutated, app);
    writeFileSync(join(dir, 'app.js'), mutated);
    const result = tsc(dir, [...PAGE, 'app.js']);
    assert.notEqual(result.status, 0, 'tsc accepted the misuses');
    assert.deepEqual(result.errors.map((e) => e.code).sort(), ['TS2339', 'TS2345'], result.output);
    assert.ok(result.errors.some((e) => e.message.includes(`'"events.lst"'`)), result.output);
    assert.ok(result.errors.some((e) => e.message.includes("'visits' does not exist on type 'Me'")), result.output);
  });
});
