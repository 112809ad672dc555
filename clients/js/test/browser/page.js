// Runs in headless Chromium against the real server, with the built library
// loaded as plain ES modules (no bundler). Results go to window.__igorResults.
import { IgorClient, IgorError } from './lib/index.js';

async function run() {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  const url = `ws://${location.host}/`;
  const results = { nativeWebSocket: typeof WebSocket === 'function' };

  // Without the token the server refuses the handshake; the browser cannot see the 401 itself.
  // token: null is "no token"; left out, the client would take the one in location.hash.
  const refused = new IgorClient(url, { token: null });
  results.refused = await refused.ready.then(
    () => 'connected?!',
    (e) => ({ isIgorError: e instanceof IgorError, type: e.type, code: e.code, message: e.message }),
  );
  // A token given wins over the one in the address.
  const wrong = new IgorClient(url, { token: 'wrong' });
  results.wrongToken = await wrong.ready.then(() => 'connected?!', (e) => e.type);

  // No token option: the client reads #token= from the page's address itself.
  const fromHash = new IgorClient(url);
  results.fromHash = await fromHash.call('hello', { name: 'fragment' });
  fromHash.close();

  const igor = new IgorClient(url, { token, clientId: 'browser-window' });
  await igor.ready;
  results.status = igor.status;
  results.hello = await igor.call('hello', { name: 'Chromium' });
  results.whoami = await igor.call('whoami');

  results.stream = [];
  for await (const value of igor.stream('jobs.count', { n: 5 })) results.stream.push(value);

  const tick = new Promise((resolve) => {
    const off = igor.on('tick', (data, push) => {
      off();
      resolve({ data, push });
    });
  });
  results.tick = await tick;

  const targeted = new Promise((resolve) => {
    const off = igor.on('to-browser', (data) => {
      off();
      resolve(data);
    });
  });
  await igor.call('notify', { action: 'to-browser', data: { hello: 'browser' } });
  results.targeted = await targeted;

  try {
    await igor.call('boom', 'browser');
    results.error = 'no error?!';
  } catch (e) {
    results.error = { isIgorError: e instanceof IgorError, code: e.code, type: e.type, message: e.message };
  }

  const slow = igor.stream('jobs.slow', { tag: 'browser', delay: 0.02 });
  const seen = [];
  for await (const value of slow) {
    seen.push(value);
    if (seen.length === 2) slow.cancel();
  }
  results.cancelled = { seen, serverSaw: await igor.call('was_cancelled', { tag: 'browser' }) };

  results.bigEcho = (await igor.call('echo', 'b'.repeat(1024 * 1024))).length;

  igor.close();
  return results;
}

run().then(
  (results) => {
    window.__igorResults = results;
    document.getElementById('out').textContent = JSON.stringify(results, null, 2);
  },
  (error) => {
    window.__igorResults = { failed: String(error && error.stack ? error.stack : error) };
    document.getElementById('out').textContent = 'FAILED ' + error;
  },
);
