// igor-client as another project gets it: `npm pack` from a checkout, the
// tarball installed into a fresh folder outside the repository, and a script
// there that imports 'igor-client' and 'igor-client/node', launches a real
// Igor server and calls it.
//
// The package is packed from a copy of clients/js without dist/ (its
// node_modules linked, for tsc), so the `prepare` script must build it, and
// this checkout's dist/, which other test files load, is left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, '..');
const repoRoot = path.resolve(packageDir, '..', '..');
const python = process.env.PYTHON || 'python3';
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPM_QUIET = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

const API_MODULE = `
def hello(out, data, **kwargs):
    out.send('Hello ' + data['name'])

def count(out, data, **kwargs):
    yield from range(data['n'])

API = {'hello': hello, 'count': count}
`;

// Runs in the fresh project: everything it imports comes from its own node_modules.
const CONSUMER = `
import { IgorClient, IgorError } from 'igor-client';
import { launch } from 'igor-client/node';

const [python, apiDir] = process.argv.slice(2);
const server = await launch(python, ['-m', 'igor', 'consumer_api:API', '--port', '0'], { cwd: apiDir, stderr: 'inherit' });
const greeting = await server.client.call('hello', { name: 'tarball' });
const other = new IgorClient(server.url, { token: server.token });
const counted = [];
for await (const value of other.stream('count', { n: 3 })) counted.push(value);
const unknown = await other.call('no.such.action').catch((error) => error instanceof IgorError && error.type);
other.close();
const status = await server.close();
console.log(JSON.stringify({
  greeting, counted, unknown, status,
  main: import.meta.resolve('igor-client'),
  node: import.meta.resolve('igor-client/node'),
}));
`;

const CONSUMER_TS = `
import { IgorClient, IgorError } from 'igor-client';
import { launch, type LaunchedServer } from 'igor-client/node';

export async function greet(server: LaunchedServer<IgorClient>): Promise<string> {
  const text: string = await server.client.call<string>('hello', { name: 'types' });
  return text;
}
export const isIgorError = (e: unknown): e is IgorError => e instanceof IgorError;
export const start = () => launch('python3', ['-m', 'igor', 'consumer_api:API']);
`;

test('the npm pack tarball installs into a fresh project and works against a real server', { timeout: 180_000 }, async (t) => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'igor-install-'));
  t.after(() => rm(scratch, { recursive: true, force: true }));

  // --- pack a clean copy --------------------------------------------------
  const source = path.join(scratch, 'source');
  await cp(packageDir, source, {
    recursive: true,
    filter: (from) => {
      const rel = path.relative(packageDir, from);
      return rel !== 'node_modules' && rel !== 'dist';
    },
  });
  await symlink(path.join(packageDir, 'node_modules'), path.join(source, 'node_modules'), 'junction');
  const { stdout: packed } = await run(npm, ['pack', '--json', '--pack-destination', scratch, '--loglevel=error'], {
    cwd: source,
    maxBuffer: 16 << 20,
  });
  // npm prints the prepare script's output before the JSON.
  const [info] = JSON.parse(packed.slice(packed.indexOf('[')));
  const files = info.files.map((f) => f.path);

  // What consumers need, and nothing of the development tree.
  const pkg = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8'));
  const targets = Object.values(pkg.exports)
    .flatMap((entry) => (typeof entry === 'string' ? [entry] : Object.values(entry)))
    .map((target) => target.replace(/^\.\//, ''));
  for (const needed of ['README.md', 'package.json', ...targets]) {
    assert.ok(files.includes(needed), `the tarball lacks ${needed}; it has:\n${files.join('\n')}`);
  }
  for (const entry of ['index', 'node', 'rxjs', 'angular']) {
    assert.ok(files.includes(`dist/${entry}.d.ts`), `the tarball lacks the types dist/${entry}.d.ts`);
  }
  const stray = files.filter((f) => /^(test|node_modules|scripts)\//.test(f) || f.includes('/node_modules/') || f.endsWith('.tgz'));
  assert.deepEqual(stray, [], 'tests, scripts, node_modules and tarballs stay out of the package');

  // --- install it in a fresh project outside the repository ------------------
  const app = path.join(scratch, 'app');
  await mkdir(app);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  const tarball = path.join(scratch, info.filename);
  const wsVersion = pkg.devDependencies.ws; // the one npm ci put in the cache
  await run(npm, ['install', tarball, `ws@${wsVersion}`, ...NPM_QUIET], { cwd: app, maxBuffer: 16 << 20 });
  await writeFile(path.join(app, 'consumer.mjs'), CONSUMER);
  await writeFile(path.join(scratch, 'consumer_api.py'), API_MODULE);

  const { stdout } = await run(process.execPath, ['consumer.mjs', python, scratch], {
    cwd: app,
    timeout: 60_000,
    env: { ...process.env, PYTHONPATH: [repoRoot, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) },
  });
  const result = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(result.greeting, 'Hello tarball');
  assert.deepEqual(result.counted, [0, 1, 2]);
  assert.equal(result.unknown, 'UnknownAction');
  assert.deepEqual(result.status, { code: 0, signal: null });
  const installed = path.join(app, 'node_modules', 'igor-client') + path.sep;
  for (const resolved of [result.main, result.node]) {
    const file = fileURLToPath(resolved);
    assert.ok(file.startsWith(installed), `${resolved} should resolve inside the installed package ${installed}`);
  }

  // --- and its types resolve for a TypeScript consumer (NodeNext) -----------
  await writeFile(path.join(app, 'consumer.ts'), CONSUMER_TS);
  await writeFile(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        // @types/node from the checkout: a Node consumer has its own.
        typeRoots: [path.join(packageDir, 'node_modules', '@types')],
        types: ['node'],
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = path.join(packageDir, 'node_modules', 'typescript', 'bin', 'tsc');
  await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: app }).catch((error) => {
    assert.fail(`tsc rejected a consumer of the installed package:\n${error.stdout}${error.stderr}`);
  });
});
