// Process helpers shared by the launching and freezing tests: is a pid
// still running, wait for it to end, read a child's first line and its stderr.
// Not a test file itself (npm test runs test/*.test.mjs).
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/**
 * Whether a process is still running. On Linux a zombie (exited, not yet
 * reaped by whoever adopted it) still answers kill(pid, 0), so /proc is
 * checked too: a zombie has ended.
 */
export async function isAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if (error.code === 'ESRCH') return false;
    throw error;
  }
  if (process.platform === 'linux') {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Polls until the process is gone; false if it is still there after `ms`. */
export async function waitGone(pid, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await isAlive(pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !(await isAlive(pid));
}

/** Keeps what a child writes to stderr (the parent fixture forwards the server's log there). */
export function collectStderr(child) {
  let text = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    text += chunk;
  });
  return () => text;
}

/** Reads the first line a child prints on stdout, within `ms`. */
export async function firstLine(child, ms) {
  child.stdout.setEncoding('utf8');
  let text = '';
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line within ${ms} ms; got ${JSON.stringify(text)}`)), ms);
    child.stdout.on('data', (chunk) => {
      text += chunk;
      const nl = text.indexOf('\n');
      if (nl !== -1) {
        clearTimeout(timer);
        resolve(text.slice(0, nl));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before printing a line; got ${JSON.stringify(text)}`));
    });
  });
}

/**
 * Why a freezing test must skip (PyInstaller missing for `python`), or false when it can run.
 */
export function freezeSkip(python) {
  const probe = spawnSync(python, ['-c', 'import PyInstaller'], { stdio: 'ignore' });
  return probe.status === 0
    ? false
    : `PyInstaller is not installed for ${python}: pip install -e '.[freeze]' (test/run_all.sh does)`;
}

/**
 * The environment a packaged app passes its frozen backend: no PYTHONPATH or PYTHONHOME, so nothing
 * but the frozen folder can supply the code.
 */
export function packagedAppEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PYTHON')));
}
