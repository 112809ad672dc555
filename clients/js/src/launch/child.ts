/**
 * Starting the child and keeping track of it: its exit, and the end of its
 * output pipes.
 *
 * @packageDocumentation
 */
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

import { WINDOWS } from './tree.js';

export type Child = ChildProcessByStdio<Writable, Readable, Readable>;

/** The exit status of the child. */
export interface ExitStatus {
  /** The exit code, or `null` when the child was ended by a signal. */
  code: number | null;
  /** The signal that ended the child, or `null`. */
  signal: NodeJS.Signals | null;
}

/**
 * Spawn `command` with three pipes. Throws what `spawn` throws synchronously
 * (bad arguments); a program that is not found is reported later, through
 * the child's 'error' event.
 */
export function spawnServer(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env: NodeJS.ProcessEnv },
): Child {
  const child = spawn(command, [...args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    windowsHide: true,
    // Its own process group on POSIX, so that close() and a failed launch
    // can signal a wrapper and the Python it started together. It no
    // longer gets the terminal's Ctrl-C, but it sees EOF on its stdin when
    // this process dies, however it dies (and the exit hook kills it).
    detached: !WINDOWS,
  });
  // The stdin pipe is only there to close; a child that exits first makes
  // writes and ends fail with EPIPE, which is expected and harmless.
  child.stdin.on('error', () => {});
  return child;
}

/** What is known about the child's end, as it happens. */
export interface ChildEnd {
  /** Resolves once the child has exited or failed to start; never rejects. */
  readonly exited: Promise<ExitStatus>;
  /** The exit status, once `exited` has resolved. */
  readonly status: ExitStatus | null;
  /** Why the child never started (then `status` is `{ code: null, signal: null }`). */
  readonly startError: Error | null;
  /**
   * Resolves when both output pipes have closed, so that an early exit can be
   * reported with its last lines (the traceback comes last).
   */
  readonly drained: Promise<void>;
}

export function watchEnd(child: Child): ChildEnd {
  let resolveExited!: (status: ExitStatus) => void;
  let resolveDrained!: () => void;
  const end = {
    exited: new Promise<ExitStatus>((resolve) => {
      resolveExited = resolve;
    }),
    status: null as ExitStatus | null,
    startError: null as Error | null,
    drained: new Promise<void>((resolve) => {
      resolveDrained = resolve;
    }),
  };
  const ended = (status: ExitStatus): void => {
    if (end.status) return;
    end.status = status;
    resolveExited(status);
  };
  child.on('exit', (code, signal) => ended({ code, signal }));
  child.on('error', (error) => {
    // A program that cannot be started emits 'error' and never 'exit'; an
    // 'error' of a started child is a failed kill(), which changes nothing.
    if (child.pid !== undefined) return;
    end.startError ??= error;
    ended({ code: null, signal: null });
  });
  let pipesOpen = 2;
  const pipeClosed = (): void => {
    pipesOpen -= 1;
    if (pipesOpen === 0) resolveDrained();
  };
  child.stdout.on('close', pipeClosed);
  child.stderr.on('close', pipeClosed);
  return end;
}
