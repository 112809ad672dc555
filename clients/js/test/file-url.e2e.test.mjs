// server.file_url() in a real Chromium: an <img> shows a signed file URL, fetch() reads it (with
// Range, same-origin and cross-origin), and a tampered URL does not load.
//
// Run from clients/js: node --test test/file-url.e2e.test.mjs (needs Chromium, as demo.e2e does).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchChromium, PYTHON, within } from './helpers.mjs';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

// A server with a static page and one file root holding a 2x3 PNG; prints the URLs, ends on stdin EOF.
const SERVER = `
import json, os, struct, sys, tempfile, zlib
from igor import IgorServer

def png(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\\x00" + b"\\xff\\x00\\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")

top = tempfile.mkdtemp()
os.makedirs(os.path.join(top, "ui"))
os.makedirs(os.path.join(top, "media"))
with open(os.path.join(top, "ui", "index.html"), "w") as f:
    f.write("<!doctype html><title>files</title>")
with open(os.path.join(top, "media", "dot.png"), "wb") as f:
    f.write(png(2, 3))
server = IgorServer(port=0, static_dir=os.path.join(top, "ui"), file_roots=[os.path.join(top, "media")]).start()
url = server.file_url(os.path.join(top, "media", "dot.png"))
print(json.dumps({"port": server.port, "png": url, "size": os.path.getsize(os.path.join(top, "media", "dot.png"))}),
      flush=True)
sys.stdin.read()
server.shutdown()
`;

function startServer() {
  const child = spawn(PYTHON, ['-c', SERVER], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(delimiter) },
  });
  const line = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (text) => resolve(JSON.parse(text)));
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
  });
  return { child, info: within(20000, line, 'the server to print its URLs') };
}

test('a file_url loads in <img> and fetch() in Chromium', { timeout: 90_000 }, async (t) => {
  const { child, info } = startServer();
  t.after(() => child.stdin.end());
  const { port, png, size } = await info;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();

  const show = (src) =>
    page.evaluate(
      (src) =>
        new Promise((resolve) => {
          const img = document.createElement('img');
          img.onload = () => resolve({ loaded: true, width: img.naturalWidth, height: img.naturalHeight });
          img.onerror = () => resolve({ loaded: false });
          img.src = src;
          document.body.append(img);
        }),
      src,
    );
  const read = (url, headers) =>
    page.evaluate(
      async ([url, headers]) => {
        try {
          const response = await fetch(url, { headers });
          const bytes = [...new Uint8Array(await response.arrayBuffer())];
          return { status: response.status, bytes, range: response.headers.get('content-range') };
        } catch (error) {
          return { error: String(error) };
        }
      },
      [url, headers],
    );

  // The page the server serves, and the file URL on the same origin.
  await page.goto(`http://127.0.0.1:${port}/`);
  assert.deepEqual(await show(png), { loaded: true, width: 2, height: 3 });
  const whole = await read(png, {});
  assert.equal(whole.status, 200);
  assert.equal(whole.bytes.length, size);
  assert.deepEqual(whole.bytes.slice(0, 4), [0x89, 0x50, 0x4e, 0x47]);
  const part = await read(png, { Range: 'bytes=1-3' });
  assert.deepEqual(part, { status: 206, bytes: [0x50, 0x4e, 0x47], range: `bytes 1-3/${size}` });

  // A tampered signature does not load.
  assert.deepEqual(await show(png.replace(/sig=./, (s) => (s.endsWith('A') ? 'sig=B' : 'sig=A'))), { loaded: false });

  // The same page under another loopback name: cross-origin, its Origin echoed (never *).
  await page.goto(`http://localhost:${port}/`);
  assert.deepEqual(await show(png), { loaded: true, width: 2, height: 3 });
  const cross = await read(png, {});
  assert.equal(cross.status, 200, JSON.stringify(cross));
  assert.equal(cross.bytes.length, size);
  const crossPart = await read(png, { Range: 'bytes=0-1' });
  assert.deepEqual(crossPart, { status: 206, bytes: [0x89, 0x50], range: `bytes 0-1/${size}` });
});
