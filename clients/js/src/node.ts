/**
 * `igor-client/node`: start an Igor Python server as a child process of a
 * Node program (an Electron main process, a CLI, a test) and get a connected
 * client back.
 *
 * This module is Node-only (it uses `node:child_process`); the browser entry
 * `igor-client` does not import it, so bundlers for the renderer never see it.
 *
 * The contract with the Python side is small and documented in the Igor
 * README: the server prints exactly one line
 * `IGOR_READY {"url": ..., "port": ..., "token": ...}` to stdout once it
 * listens, and, with `exit_with_parent` on, shuts down when its stdin reaches
 * end-of-file. {@link launch} relies on nothing else, so it works with
 * `python -m igor module:api`, with the demo's `server_instance.py`, and with
 * any script that sets `ready_line: True`.
 *
 * @packageDocumentation
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess, ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

import { IgorClient } from './index.js';
import type { IgorClientOptions } from './index.js';

/** Where a stream of the child's output goes once {@link launch} has read it. */
export type OutputTarget =
  /** Write it to this process's own stream (`process.stderr` / `process.stdout`). */
  | 'inherit'
  /** Drop it (it is still kept for {@link LaunchError.output}). */
  | 'ignore'
  /** Hand each decoded chunk of text to a function (e.g. a logger). */
  | ((text: string) => void);

/** Options of {@link launch}. Every one is optional. */
export interface LaunchOptions {
  /** Working directory of the child. Default: this process's. */
  cwd?: string;
  /**
   * Environment of the child. Default: this process's environment. It is used
   * as given (not merged), except that `PYTHONUNBUFFERED=1` is added when the
   * key is absent, so that the child's `print`s and log lines reach
   * {@link LaunchOptions.stdout} / {@link LaunchOptions.stderr} when they are
   * written rather than when a 8 KiB buffer fills.
   */
  env?: NodeJS.ProcessEnv;
  /**
   * How long to wait for the `IGOR_READY` line, in milliseconds (default
   * 20000). A first start may compile `.pyc` files and import heavy modules,
   * so this is generous; a server that never prints the line is killed and
   * the launch rejects with {@link LaunchError} `reason: 'timeout'`.
   */
  timeout?: number;
  /**
   * Milliseconds {@link LaunchedServer.close} gives the child to exit by
   * itself before it is killed with SIGKILL (default 5000). On POSIX the
   * child's whole process group is signalled, so the Python started by a
   * wrapper (a shell script, `uv run`) goes too; on Windows the tree is
   * killed with `taskkill /T /F`.
   */
  gracePeriod?: number;
  /**
   * Milliseconds between closing the child's stdin and sending it SIGTERM in
   * {@link LaunchedServer.close} (default 1000, at most `gracePeriod`).
   * Closing stdin comes first because an Igor server started with
   * `exit_with_parent` shuts down cleanly on it (stops its processes, sends
   * close code 1001 to its clients) on every platform, while Python's default
   * SIGTERM action ends the interpreter without any cleanup. `0` sends
   * SIGTERM at once. Ignored on Windows, where SIGTERM would be as abrupt
   * as a kill: there the child gets the whole `gracePeriod` after its stdin
   * closes.
   */
  termDelay?: number;
  /**
   * Where the child's stderr goes (default `'inherit'`). Python tracebacks
   * and the server's log land here, so dropping it makes failures silent.
   * Whatever the target, it is also collected for {@link LaunchError.output}.
   */
  stderr?: OutputTarget;
  /**
   * Where the child's stdout goes, except the `IGOR_READY` line itself
   * (default `'inherit'`). It is always read, even when ignored: a child
   * whose stdout pipe is never drained blocks on its next `print`.
   */
  stdout?: OutputTarget;
  /**
   * Connect an {@link IgorClient} to the server before resolving (default
   * `true`). Set `false` when the connection is made elsewhere, e.g. by an
   * Electron renderer that receives the url and token from the main process.
   */
  connect?: boolean;
  /**
   * Options for the client when `connect` is on. The token from the
   * `IGOR_READY` line is filled in unless given here.
   */
  client?: IgorClientOptions;
  /**
   * Kill the child when this Node process exits (default `true`), through a
   * `process.on('exit')` hook. That hook does not run when Node itself is
   * killed by a signal: then the child's stdin pipe closes and a server with
   * `exit_with_parent` (the default of `python -m igor` when stdin is a pipe)
   * shuts down by itself.
   */
  killOnExit?: boolean;
}

/** The exit status of the child. */
export interface ExitStatus {
  /** The exit code, or `null` when the child was ended by a signal. */
  code: number | null;
  /** The signal that ended the child, or `null`. */
  signal: NodeJS.Signals | null;
}

/** A running server started by {@link launch}. */
export interface LaunchedServer<C extends IgorClient | null = IgorClient> {
  /** The WebSocket URL from the `IGOR_READY` line, e.g. `ws://127.0.0.1:49152/`. */
  readonly url: string;
  /** The port the server listens on (useful with `--port 0`). */
  readonly port: number;
  /** The server's token, or `null` when it has none. */
  readonly token: string | null;
  /** Every field of the `IGOR_READY` line, including any this module does not know. */
  readonly ready: Readonly<Record<string, unknown>>;
  /** The child process. Its stdio streams are owned by this module. */
  readonly process: ChildProcess;
  /** The connected client, or `null` when launched with `connect: false`. */
  readonly client: C;
  /**
   * Resolves once the child has exited, for whatever reason (never rejects).
   * An app can watch it to notice a backend that died on its own.
   */
  readonly exited: Promise<ExitStatus>;
  /**
   * Close the client, then end the child and whatever it started (its
   * process group on POSIX, its tree on Windows): close its stdin, SIGTERM
   * after `termDelay` (not on Windows), SIGKILL after `gracePeriod`.
   * Resolves with the child's exit status once all of it is gone. Safe to
   * call more than once.
   */
  close(): Promise<ExitStatus>;
}

/** Why {@link launch} failed. */
export type LaunchFailure =
  /** The command could not be started at all (not found, not executable). */
  | 'spawn'
  /** The child exited before printing the `IGOR_READY` line. */
  | 'exit'
  /** The child printed nothing usable within `timeout`. */
  | 'timeout'
  /** The `IGOR_READY` line was not valid JSON or lacked `url` / `port`. */
  | 'ready-line'
  /** The server started but the client could not connect. */
  | 'connect';

/**
 * The error {@link launch} rejects with. Its message ends with the child's own
 * output, so a Python traceback (a bad import, a syntax error, a port already
 * in use) shows up in the error a developer sees instead of being lost.
 */
export class LaunchError extends Error {
  /** What went wrong. */
  readonly reason: LaunchFailure;
  /** Everything the child wrote to stderr and stdout, in arrival order (the last 64 KiB). */
  readonly output: string;
  /** The child's exit code, when it exited. */
  readonly exitCode: number | null;
  /** The signal that ended the child, when one did. */
  readonly signal: NodeJS.Signals | null;

  constructor(
    message: string,
    details: {
      reason: LaunchFailure;
      output: string;
      exitCode?: number | null;
      signal?: NodeJS.Signals | null;
      cause?: unknown;
    },
  ) {
    const tail = details.output.trim();
    super(tail ? `${message}\n--- server output ---\n${tail}` : message, { cause: details.cause });
    this.name = 'LaunchError';
    this.reason = details.reason;
    this.output = details.output;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
  }
}

const READY_PREFIX = 'IGOR_READY ';
const OUTPUT_LIMIT = 64 * 1024;
/** How long to wait after 'exit' for the pipes to deliver their last bytes. */
const DRAIN_LIMIT_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Children still alive, killed by one shared `process.on('exit')` hook (one
 * hook rather than one per launch, so that many launches do not trip Node's
 * MaxListeners warning).
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
const WINDOWS = process.platform === 'win32';

/**
 * Send `signal` to the child and everything it started. On POSIX the child
 * leads its own process group (it is spawned `detached`), so a wrapper (a
 * shell script, `uv run`, `poetry run`) and the Python it runs are signalled
 * together; if the group is gone, the child itself. On Windows only a kill is
 * possible, of the whole tree, with `taskkill /T /F`.
 */
function signalTree(child: ChildProcess, signal: NodeJS.Signals, sync = false): void {
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
function treeAlive(child: ChildProcess): boolean {
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

function track(child: ChildProcess): void {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', killLiveChildren);
  }
}

function sink(target: OutputTarget, own: NodeJS.WriteStream): (text: string) => void {
  if (target === 'ignore') return () => {};
  if (target === 'inherit') {
    return (text) => {
      own.write(text);
    };
  }
  return (text) => {
    try {
      target(text);
    } catch {
      // A throwing logger must not break the pipe reading.
    }
  };
}

function describe(command: string, args: readonly string[]): string {
  return [command, ...args].map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(' ');
}

/**
 * Start an Igor Python server and wait until it listens.
 *
 * ```ts
 * import { launch } from 'igor-client/node';
 * const server = await launch('python3', ['-m', 'igor', 'app:API', '--port', '0']);
 * console.log(await server.client.call('hello', { name: 'Ada' }));
 * await server.close();
 * ```
 *
 * The child gets a stdin pipe (never written to), so that it sees end-of-file
 * when this process dies, however it dies; its stdout is read until the
 * `IGOR_READY {json}` line; its stderr is forwarded. The promise rejects with a
 * {@link LaunchError} carrying the child's output when the command cannot
 * start, exits early, prints no ready line within `timeout`, or cannot be
 * connected to; the child is ended in each case, so a failed launch leaves
 * nothing running.
 *
 * @param command The program, e.g. `'python3'` or the path of a virtualenv's python.
 * @param args Its arguments, e.g. `['server_instance.py']`. Pass `--port 0` (or
 *   the script's equivalent) so that two apps never fight over a port.
 * @param options See {@link LaunchOptions}.
 */
export function launch(
  command: string,
  args: readonly string[],
  options: LaunchOptions & { connect: false },
): Promise<LaunchedServer<null>>;
export function launch(
  command: string,
  args?: readonly string[],
  options?: LaunchOptions & { connect?: true },
): Promise<LaunchedServer<IgorClient>>;
export function launch(
  command: string,
  args?: readonly string[],
  options?: LaunchOptions,
): Promise<LaunchedServer<IgorClient | null>>;
export function launch(
  command: string,
  args: readonly string[] = [],
  options: LaunchOptions = {},
): Promise<LaunchedServer<IgorClient | null>> {
  const timeout = options.timeout ?? 20_000;
  const gracePeriod = Math.max(0, options.gracePeriod ?? 5_000);
  const termDelay = Math.min(Math.max(0, options.termDelay ?? 1_000), gracePeriod);
  const connect = options.connect ?? true;
  const killOnExit = options.killOnExit ?? true;
  const toStderr = sink(options.stderr ?? 'inherit', process.stderr);
  const toStdout = sink(options.stdout ?? 'inherit', process.stdout);
  const commandLine = describe(command, args);

  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  if (!('PYTHONUNBUFFERED' in env)) env.PYTHONUNBUFFERED = '1';

  let output = '';
  const collect = (text: string): void => {
    output += text;
    if (output.length > OUTPUT_LIMIT) output = output.slice(output.length - OUTPUT_LIMIT);
  };

  let child: ChildProcessByStdio<Writable, Readable, Readable>;
  try {
    child = spawn(command, [...args], {
      cwd: options.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
      // Its own process group on POSIX, so that close() and a failed launch
      // can signal a wrapper and the Python it started together. It no
      // longer gets the terminal's Ctrl-C, but it sees EOF on its stdin when
      // this process dies, however it dies (and the exit hook kills it).
      detached: !WINDOWS,
    });
  } catch (error) {
    // spawn throws synchronously for bad arguments (e.g. a missing cwd on some platforms).
    return Promise.reject(
      new LaunchError(`could not start ${commandLine}: ${(error as Error).message}`, {
        reason: 'spawn',
        output: '',
        cause: error,
      }),
    );
  }

  if (killOnExit) track(child);

  // The stdin pipe is only there to close; a child that exits first makes
  // writes and ends fail with EPIPE, which is expected and harmless.
  child.stdin.on('error', () => {});

  // --- exit bookkeeping -------------------------------------------------
  let exitStatus: ExitStatus | null = null;
  let resolveExited!: (status: ExitStatus) => void;
  const exited = new Promise<ExitStatus>((resolve) => {
    resolveExited = resolve;
  });
  // Resolves when both output pipes have ended, so that an early exit is
  // reported with its last lines (the traceback comes last).
  let pipesOpen = 2;
  let resolveDrained!: () => void;
  const drained = new Promise<void>((resolve) => {
    resolveDrained = resolve;
  });
  const pipeEnded = (): void => {
    pipesOpen -= 1;
    if (pipesOpen === 0) resolveDrained();
  };
  child.stdout.on('close', pipeEnded);
  child.stderr.on('close', pipeEnded);

  let killTimer: NodeJS.Timeout | undefined;
  let termTimer: NodeJS.Timeout | undefined;
  const markExited = (code: number | null, signal: NodeJS.Signals | null): void => {
    if (exitStatus) return;
    exitStatus = { code, signal };
    liveChildren.delete(child);
    clearTimeout(termTimer);
    clearTimeout(killTimer);
    resolveExited(exitStatus);
  };
  child.on('exit', markExited);
  // A program that cannot be started emits 'error' and never 'exit'.
  child.on('error', () => {
    if (child.pid === undefined) markExited(null, null);
  });

  // --- stderr: forward and collect ---------------------------------------
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    collect(text);
    toStderr(text);
  });

  // --- stdout: find the ready line, forward everything else ---------------
  let ready: Record<string, unknown> | null = null;
  let readyError: string | null = null;
  let pending = '';
  let resolveReadyLine!: () => void;
  const readyLine = new Promise<void>((resolve) => {
    resolveReadyLine = resolve;
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    if (ready || readyError) {
      collect(text);
      toStdout(text);
      return;
    }
    pending += text;
    let newline: number;
    while (!ready && !readyError && (newline = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, newline + 1);
      pending = pending.slice(newline + 1);
      const trimmed = line.trim();
      if (trimmed.startsWith(READY_PREFIX)) {
        try {
          const parsed: unknown = JSON.parse(trimmed.slice(READY_PREFIX.length));
          if (
            parsed === null ||
            typeof parsed !== 'object' ||
            typeof (parsed as Record<string, unknown>).url !== 'string' ||
            typeof (parsed as Record<string, unknown>).port !== 'number'
          ) {
            readyError = `the IGOR_READY line lacks "url" or "port": ${trimmed}`;
          } else {
            ready = parsed as Record<string, unknown>;
          }
        } catch {
          readyError = `the IGOR_READY line is not valid JSON: ${trimmed}`;
        }
        resolveReadyLine();
      } else {
        collect(line);
        toStdout(line);
      }
    }
    if ((ready || readyError) && pending) {
      collect(pending);
      toStdout(pending);
      pending = '';
    }
  });

  // --- close(): the graceful-then-forceful stop -----------------------------
  let client: IgorClient | null = null;
  let closing: Promise<ExitStatus> | null = null;
  const stopChild = (): Promise<ExitStatus> => {
    if (closing) return closing;
    closing = (async () => {
      if (client) {
        try {
          client.close();
        } catch {
          // The connection may already be gone.
        }
      }
      if (exitStatus && !treeAlive(child)) return exitStatus;
      const deadline = Date.now() + gracePeriod;
      child.stdin.end();
      const signal = (name: NodeJS.Signals) => () => signalTree(child, name);
      // On Windows "SIGTERM" is TerminateProcess, as abrupt as a kill: only
      // closing stdin is graceful there, so it gets the whole grace period.
      if (!WINDOWS) {
        if (termDelay === 0) signal('SIGTERM')();
        else termTimer = setTimeout(signal('SIGTERM'), termDelay);
      }
      killTimer = setTimeout(signal('SIGKILL'), gracePeriod);
      const status = await exited;
      // The child (a wrapper) may be gone while what it started still runs:
      // give that the rest of the grace period, then kill it too.
      while (treeAlive(child) && Date.now() < deadline) await sleep(25);
      if (treeAlive(child)) {
        signalTree(child, 'SIGKILL');
        const killedAt = Date.now();
        while (treeAlive(child) && Date.now() - killedAt < DRAIN_LIMIT_MS) await sleep(25);
      }
      clearTimeout(termTimer);
      clearTimeout(killTimer);
      return status;
    })();
    return closing;
  };

  const failure = async (
    reason: LaunchFailure,
    message: string,
    cause?: unknown,
  ): Promise<never> => {
    // Stop the child, then wait (bounded) for its pipes so that the error
    // carries its last words.
    if (!exitStatus) {
      // No point waiting for a graceful exit of a server that is not working.
      child.stdin.end();
      signalTree(child, 'SIGKILL');
    }
    const status = await exited;
    // A wrapper's children are in the same group: make sure none survives.
    if (treeAlive(child)) signalTree(child, 'SIGKILL');
    await Promise.race([drained, new Promise((r) => setTimeout(r, DRAIN_LIMIT_MS).unref())]);
    if (pending) {
      collect(pending);
      pending = '';
    }
    throw new LaunchError(message, {
      reason,
      output,
      exitCode: status.code,
      signal: status.signal,
      cause,
    });
  };

  return new Promise<LaunchedServer<IgorClient | null>>((resolve, reject) => {
    // Exactly one of fail() and the final resolve() wins; later events are ignored.
    let settled = false;
    const fail = (reason: LaunchFailure, message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        client?.close();
      } catch {
        // Nothing to close.
      }
      failure(reason, message, cause).catch(reject);
    };

    // One deadline for the whole launch: the ready line and the connection.
    const timer = setTimeout(() => {
      if (ready) {
        fail('connect', `could not connect to ${String(ready.url)} within ${timeout} ms (the server was killed)`);
      } else {
        fail('timeout', `${commandLine} printed no IGOR_READY line within ${timeout} ms (it was killed)`);
      }
    }, timeout);

    child.once('error', (error) => {
      if (child.pid !== undefined) return; // a failed kill(), not a failed start
      fail('spawn', `could not start ${commandLine}: ${error.message}`, error);
    });

    void exited.then((status) => {
      const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
      const when = ready ? 'before it could be connected to' : 'before printing its IGOR_READY line';
      fail('exit', `${commandLine} ${how} ${when}`);
    });

    void readyLine.then(async () => {
      if (settled) return;
      if (readyError || !ready) {
        fail('ready-line', readyError ?? 'no IGOR_READY line');
        return;
      }
      const info = ready;
      const url = info.url as string;
      const port = info.port as number;
      const token = typeof info.token === 'string' ? info.token : null;
      if (connect) {
        const clientOptions: IgorClientOptions = { ...options.client };
        if (clientOptions.token === undefined && token !== null) clientOptions.token = token;
        try {
          client = new IgorClient(url, clientOptions);
          await client.ready;
        } catch (error) {
          const why = error instanceof Error ? error.message : String(error);
          fail('connect', `could not connect to ${url}: ${why}`, error);
          return;
        }
      }
      if (settled) return; // the deadline or an exit came first; fail() closed the client
      settled = true;
      clearTimeout(timer);
      resolve({
        url,
        port,
        token,
        ready: info,
        process: child,
        client,
        exited,
        close: stopChild,
      });
    });
  });
}
