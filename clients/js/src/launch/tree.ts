/**
 * The child and what it started, as one unit: signalling it, asking whether
 * any of it still runs, and ending it when this Node process exits.
 *
 * @packageDocumentation
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

export const WINDOWS = process.platform === 'win32';

/**
 * Send `signal` to the child and everything it started. On POSIX the child
 * leads its own process group (it is spawned `detached`), so a wrapper (a
 * shell script, `uv run`, `poetry run`) and the Python it runs are signalled
 * together; if the group is gone, the child itself. On Windows only a kill is
 * possible, of the whole tree, with `taskkill /T /F`.
 */
export function signalTree(child: ChildProcess, signal: NodeJS.Signals, sync = false): void {
  const pid = child.pid;
  if (pid === undefined) return;
  if (WINDOWS) {
    if (signal !== 'SIGKILL') return; // SIGTERM is TerminateProcess on Windows: no cleanup either
    const args = ['/T', '/F', '/PID', String(pid)];
    try {
      if (sync) spawnSync('taskkill', args, { stdio: 'ignore', windowsHide: true });
      else spawn('taskkill', args, { stdio: 'ignore', windowsHide: true }).on('error', () => child.kill('SIGKILL'));
    } catch {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
    return;
  }
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** Whether anything of the child's process group is still running (POSIX; on Windows: the child itself). */
export function treeAlive(child: ChildProcess): boolean {
  const pid = child.pid;
  if (pid === undefined) return false;
  if (WINDOWS) return child.exitCode === null && child.signalCode === null;
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Children still alive, killed by one shared `process.on('exit')` hook (one
 * hook rather than one per launch, so that many launches do not trip Node's
 * MaxListeners warning).
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function killLiveChildren(): void {
  for (const child of liveChildren) {
    // Only synchronous work is possible in an 'exit' hook, so there is no
    // grace period here. SIGTERM ends a Python that has no handler at once and
    // lets one that has a handler clean up; the stdin pipe closes with this
    // process anyway, which stops an `exit_with_parent` server too. On
    // Windows the tree is killed with `taskkill /T /F`.
    signalTree(child, WINDOWS ? 'SIGKILL' : 'SIGTERM', true);
  }
}

/**
 * End the child's tree when this process exits normally. A parent killed by
 * a signal runs no hook: then only the child's closed stdin can stop it.
 */
export function tieToParent(child: ChildProcess): void {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', killLiveChildren);
  }
  const untie = (): void => {
    liveChildren.delete(child);
  };
  child.once('exit', untie);
  // A program that cannot be started emits 'error' and never 'exit'.
  child.on('error', () => {
    if (child.pid === undefined) untie();
  });
}
