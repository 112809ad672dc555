// igor-client as another project gets it, both ways the READMEs give: the
// `npm pack` tarball, and `npm install /path/to/clients/js`, each into a fresh
// folder outside the repository, where a script imports 'igor-client' and
// 'igor-client/node', launches a real Igor server and calls it.
//
// Both start from a copy of clients/js without dist/ (its node_modules linked,
// for tsc), so the `prepare` script must build it, and this checkout's dist/,
// which other test files load, is left alone.
import { after, before, test } from 'node:test';
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

const [python, apiDir, name] = process.argv.slice(2);
const server = await launch(python, ['-m', 'igor', 'consumer_api:API', '--port', '0'], { cwd: apiDir, stderr: 'inherit' });
const greeting = await server.client.call('hello', { name });
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

let scratch;
let source;
let pkg;

before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'igor-install-'));
  source = path.join(scratch, 'source');
  await cp(packageDir, source, {
    recursive: true,
    filter: (from) => !['node_modules', 'dist'].includes(path.relative(packageDir, from)),
  });
  await symlink(path.join(packageDir, 'node_modules'), path.join(source, 'node_modules'), 'junction');
  await writeFile(path.join(scratch, 'consumer_api.py'), API_MODULE);
  pkg = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8'));
});

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A new project folder with `spec` (a tarball or a folder) and ws installed from the registry's cache. */
async function freshProject(name, spec) {
  const app = path.join(scratch, name);
  await mkdir(app);
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  const wsVersion = pkg.devDependencies.ws; // the one npm ci put in the cache
  await run(npm, ['install', spec, `ws@${wsVersion}`, ...NPM_QUIET], { cwd: app, maxBuffer: 16 << 20 });
  await writeFile(path.join(app, 'consumer.mjs'), CONSUMER);
  return app;
}

/** Runs consumer.mjs in `app`; asserts its calls worked and returns where its imports resolved. */
async function runConsumer(app, name) {
  const { stdout } = await run(process.execPath, ['consumer.mjs', python, scratch, name], {
    cwd: app,
    timeout: 60_000,
    env: { ...process.env, PYTHONPATH: [repoRoot, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) },
  });
  const result = JSON.parse(stdout.trim().split('\n').pop());
  assert.equal(result.greeting, `Hello ${name}`);
  assert.deepEqual(result.counted, [0, 1, 2]);
  assert.equal(result.unknown, 'UnknownAction');
  assert.deepEqual(result.status, { code: 0, signal: null });
  return [result.main, result.node].map((url) => fileURLToPath(url));
}

test('the npm pack tarball has what consumers need, installs into a fresh project and works against a real server', { timeout: 180_000 }, async () => {
  const { stdout: packed } = await run(npm, ['pack', '--json', '--pack-destination', scratch, '--loglevel=error'], {
    cwd: source,
    maxBuffer: 16 << 20,
  });
  // npm prints the prepare script's output before the JSON.
  const [info] = JSON.parse(packed.slice(packed.indexOf('[')));
  const files = info.files.map((f) => f.path);

  // What consumers need, and nothing of the development tree.
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

  const app = await freshProject('from-tarball', path.join(scratch, info.filename));
  const installed = path.join(app, 'node_modules', 'igor-client') + path.sep;
  for (const file of await runConsumer(app, 'tarball')) {
    assert.ok(file.startsWith(installed), `${file} should be inside the installed copy ${installed}`);
  }

  // Its types resolve for a TypeScript consumer (NodeNext), through the exports map.
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

test('npm install of the checkout folder builds it (prepare) and works against a real server', { timeout: 180_000 }, async () => {
  await rm(path.join(source, 'dist'), { recursive: true, force: true });
  const app = await freshProject('from-folder', source);
  // A folder install is a link to the checkout: the imports resolve there, to the dist/ prepare built.
  const built = path.join(source, 'dist') + path.sep;
  for (const file of await runConsumer(app, 'folder')) {
    assert.ok(file.startsWith(built), `${file} should be inside ${built}`);
  }
});
