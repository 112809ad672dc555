/**
 * Ending the child and what it started: gracefully for close(), at once for
 * a failed launch.
 *
 * @packageDocumentation
 */
import type { Child, ChildEnd, ExitStatus } from './child.js';
import { signalTree, treeAlive, WINDOWS } from './tree.js';

/** How long to wait after 'exit' for the pipes to deliver their last bytes, or for a killed group to go. */
export const DRAIN_LIMIT_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Close the child's stdin, SIGTERM its group after `termDelay` (not on
 * Windows), SIGKILL after `gracePeriod`; resolve with its exit status once
 * the whole group is gone.
 */
export async function stopGracefully(
  child: Child,
  end: ChildEnd,
  timing: { gracePeriod: number; termDelay: number },
): Promise<ExitStatus> {
  if (end.status && !treeAlive(child)) return end.status;
  const deadline = Date.now() + timing.gracePeriod;
  child.stdin.end();
  const signal = (name: NodeJS.Signals) => () => signalTree(child, name);
  let termTimer: NodeJS.Timeout | undefined;
  // On Windows "SIGTERM" is TerminateProcess, as abrupt as a kill: only
  // closing stdin is graceful there, so it gets the whole grace period.
  if (!WINDOWS) {
    if (timing.termDelay === 0) signal('SIGTERM')();
    else termTimer = setTimeout(signal('SIGTERM'), timing.termDelay);
  }
  const killTimer = setTimeout(signal('SIGKILL'), timing.gracePeriod);
  const status = await end.exited;
  clearTimeout(termTimer);
  clearTimeout(killTimer);
  // The child (a wrapper) may be gone while what it started still runs: a
  // group has no exit event, so poll it for the rest of the grace period,
  // then kill it too.
  while (treeAlive(child) && Date.now() < deadline) await sleep(25);
  if (treeAlive(child)) {
    signalTree(child, 'SIGKILL');
    const killedAt = Date.now();
    while (treeAlive(child) && Date.now() - killedAt < DRAIN_LIMIT_MS) await sleep(25);
  }
  return status;
}

/**
 * Kill the child's group at once (no point waiting for a graceful exit of a
 * server that is not working), then wait, bounded, for its pipes, so that
 * what it said last is read.
 */
export async function killAtOnce(child: Child, end: ChildEnd): Promise<ExitStatus> {
  if (!end.status) {
    child.stdin.end();
    signalTree(child, 'SIGKILL');
  }
  const status = await end.exited;
  // A wrapper's children are in the same group: make sure none survives.
  if (treeAlive(child)) signalTree(child, 'SIGKILL');
  await Promise.race([end.drained, new Promise((resolve) => setTimeout(resolve, DRAIN_LIMIT_MS).unref())]);
  return status;
}
