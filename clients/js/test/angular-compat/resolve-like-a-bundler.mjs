// Loaded with `node --import` before run.mjs. RxJS 6 has no "exports" map,
// so `import 'rxjs/operators'` is a folder import, which Node's ES module
// loader refuses and every bundler an Angular app is built with (webpack,
// esbuild) resolves to the folder's index.js. Resolve it the bundlers' way,
// so that the Angular 8 + RxJS 6 run sees what such an app sees.
import { register } from 'node:module';

const hooks = `
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (error.code === 'ERR_UNSUPPORTED_DIR_IMPORT') return next(specifier + '/index.js', context);
    throw error;
  }
}`;
register('data:text/javascript,' + encodeURIComponent(hooks));
