// igor-client/angular against the oldest Angular the README claims and the
// newest on the npm registry, each installed (from the lock files in
// test/angular-compat/<which>/) into a temporary folder with its own RxJS:
// `tsc --strict` over a consumer, then the service through that version's
// dependency injection against the real fixture server. The Angular of
// package.json (devDependencies) is tested by angular.test.mjs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { startServer } from './helpers.mjs';

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, '..');
const compat = path.join(here, 'angular-compat');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const tsc = require.resolve('typescript/bin/tsc');
const wsModule = import.meta.resolve('ws');

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

for (const which of ['oldest', 'newest']) {
  describe(`Angular ${which}`, { timeout: 240_000 }, () => {
    let dir;
    let version;
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), `igor-angular-${which}-`));
      for (const file of ['package.json', 'package-lock.json']) await copyFile(path.join(compat, which, file), path.join(dir, file));
      // From the lock file; --prefer-offline: the npm cache, after the first run.
      await run(npm, ['ci', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
        cwd: dir,
        timeout: 180_000,
        maxBuffer: 16 << 20,
      });
      version = JSON.parse(await readFile(path.join(dir, 'node_modules', '@angular', 'core', 'package.json'), 'utf8')).version;
      // This checkout's build, where imports of '@angular/core' and 'rxjs' resolve to the folder's.
      await cp(path.join(packageDir, 'dist'), path.join(dir, 'igor'), { recursive: true });
      for (const file of ['consumer.ts', 'run.mjs', 'resolve-like-a-bundler.mjs']) await copyFile(path.join(compat, file), path.join(dir, file));
    });
    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('installs the pinned version', () => {
      const pinned = JSON.parse(readFileSync(path.join(compat, which, 'package.json'), 'utf8'));
      assert.equal(version, pinned.dependencies['@angular/core']);
    });

    it('type-checks a strict consumer (tsc --strict, library checks on)', async () => {
      await run(
        process.execPath,
        [tsc, '--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
          '--target', 'ES2020', '--lib', 'ES2022,DOM', '--types', 'node', '--typeRoots', path.join(packageDir, 'node_modules', '@types'),
          'consumer.ts'],
        { cwd: dir, timeout: 120_000 },
      ).catch((error) => assert.fail(`tsc rejected the consumer under Angular ${version}:\n${error.stdout}${error.stderr}`));
    });

    it("works through the version's dependency injection", async () => {
      const { stdout } = await run(process.execPath, ['--import', './resolve-like-a-bundler.mjs', 'run.mjs', server.url, wsModule], { cwd: dir, timeout: 60_000 })
        .catch((error) => assert.fail(`run.mjs failed under Angular ${version}:\n${error.stdout}${error.stderr}`));
      const seen = JSON.parse(stdout.trim().split('\n').pop());
      assert.equal(seen.instance, true);
      assert.equal(seen.singleton, true, 'one service per injector');
      assert.equal(seen.hello, 'Hello compat');
      assert.deepEqual(seen.counted, [0, 1, 2]);
      assert.match(seen.clientId, /^ng-compat-\d+$/);
      assert.equal(seen.whoami, seen.clientId, 'provideIgor() takes the IGOR_CONFIG provided beside it');
      assert.equal(seen.wrapsClient, true);
      assert.equal(seen.wrappedHello, 'Hello literal');
      if (which === 'newest') assert.deepEqual(seen.afterDestroy, ['open', 'closed'], "destroying the injector closes the connection");
    });
  });
}
