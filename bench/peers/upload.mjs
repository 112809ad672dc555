// Row 11 of bench.peers: MIB MiB uploaded from Node in 1 MiB chunks into a handler that writes them to disk.
// Igor: its JS client's upload() (clients/js/dist, paced by the server's read acknowledgements);
// websockets: the `ws` package's binary frames, at most 4 sends (4 MiB) not yet written out.
// Run by bench/peers/binary.py: node upload.mjs '{"peer": "igor", "port": N, "mib": 1024}'; prints JSON.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const { peer, port, mib } = JSON.parse(process.argv[2]);
const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'clients', 'js');
const WebSocket = createRequire(path.join(JS, 'package.json'))('ws');
const MiB = 1024 * 1024;
const chunk = new Uint8Array(MiB).map((_, i) => i & 0xff);

async function igor() {
  const { IgorClient } = await import(pathToFileURL(path.join(JS, 'dist', 'index.js')).href);
  const client = new IgorClient(`ws://127.0.0.1:${port}/`, { WebSocket });
  try {
    await client.ready;
    async function* source() {
      for (let i = 0; i < mib; i++) yield chunk;
    }
    const began = performance.now();
    const bytes = await client.upload('upload_file', source(), { size: mib * MiB });
    return { bytes, seconds: (performance.now() - began) / 1000 };
  } finally {
    client.close();
  }
}

async function raw() {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const answer = new Promise((resolve) => ws.once('message', (data) => resolve(Number(String(data)))));
  const began = performance.now();
  ws.send('!upload file');
  const pending = [];
  for (let i = 0; i < mib; i++) {
    if (pending.length >= 4) await pending.shift();
    pending.push(new Promise((resolve, reject) => ws.send(chunk, { binary: true }, (e) => (e ? reject(e) : resolve()))));
  }
  await Promise.all(pending);
  ws.send('!end');
  const bytes = await answer;
  const seconds = (performance.now() - began) / 1000;
  ws.close();
  return { bytes, seconds };
}

const result = peer === 'igor' ? await igor() : await raw();
console.log(JSON.stringify(result));
