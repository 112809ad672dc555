// Copy the built library to examples/demo/lib/ so the demo page can do
// `import { IgorClient } from './lib/index.js'` with no bundler.
// The copy is a build product: a `.gitignore` holding `*` keeps it out of git.
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const lib = fileURLToPath(new URL('../../../examples/demo/lib/', import.meta.url));

rmSync(lib, { recursive: true, force: true });
mkdirSync(lib, { recursive: true });
cpSync(dist, lib, { recursive: true });
writeFileSync(lib + '.gitignore', '# Build output of clients/js (npm run build): not committed.\n*\n');
console.log('copied dist/ to ' + lib);
