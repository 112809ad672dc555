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
import type { ChildProcess } from 'node:child_process';

import { IgorClient, IgorError } from './index.js';
import type { IgorClientOptions } from './index.js';
import { spawnServer, watchEnd } from './launch/child.js';
import type { Child, ChildEnd, ExitStatus } from './launch/child.js';
import { OutputLog, ReadyLineReader, sink } from './launch/output.js';
import type { OutputTarget } from './launch/output.js';
import { killAtOnce, stopGracefully } from './launch/stop.js';
import { tieToParent } from './launch/tree.js';

export type { ExitStatus, OutputTarget };

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
 *
 * It is an {@link IgorError} (`code` `0`, `type` `'LaunchFailed'`), so one
 * `instanceof IgorError` check covers a failed launch and a failed call.
 */
export class LaunchError extends IgorError {
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
    super(tail ? `${message}\n--- server output ---\n${tail}` : message, 0, 'LaunchFailed', { cause: details.cause });
    this.name = 'LaunchError';
    this.reason = details.reason;
    this.output = details.output;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
  }
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
  const settings = settingsOf(options);
  const commandLine = describe(command, args);
  let child: Child;
  try {
    child = spawnServer(command, args, { cwd: options.cwd, env: childEnv(options.env) });
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
  if (settings.killOnExit) tieToParent(child);
  const end = watchEnd(child);
  const log = new OutputLog();
  const reader = readOutput(child, log, settings);
  return startUp({ child, end, log, reader, commandLine, settings });
}

/** The options of {@link launch} with their defaults applied. */
interface Settings {
  timeout: number;
  gracePeriod: number;
  termDelay: number;
  connect: boolean;
  killOnExit: boolean;
  client: IgorClientOptions | undefined;
  toStderr: (text: string) => void;
  toStdout: (text: string) => void;
}

function settingsOf(options: LaunchOptions): Settings {
  const gracePeriod = Math.max(0, options.gracePeriod ?? 5_000);
  return {
    timeout: options.timeout ?? 20_000,
    gracePeriod,
    termDelay: Math.min(Math.max(0, options.termDelay ?? 1_000), gracePeriod),
    connect: options.connect ?? true,
    killOnExit: options.killOnExit ?? true,
    client: options.client,
    toStderr: sink(options.stderr ?? 'inherit', process.stderr),
    toStdout: sink(options.stdout ?? 'inherit', process.stdout),
  };
}

/** The environment as given, unbuffered unless it says otherwise, so that log lines arrive when written. */
function childEnv(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = { ...(env ?? process.env) };
  if (!('PYTHONUNBUFFERED' in result)) result.PYTHONUNBUFFERED = '1';
  return result;
}

function describe(command: string, args: readonly string[]): string {
  return [command, ...args].map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(' ');
}

/**
 * Drain both pipes from the start (a child whose pipe is never read blocks on
 * its next write), keep everything for a LaunchError, forward it, and pick
 * the ready line out of stdout.
 */
function readOutput(child: Child, log: OutputLog, settings: Settings): ReadyLineReader {
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    log.add(text);
    settings.toStderr(text);
  });
  const reader = new ReadyLineReader((text) => {
    log.add(text);
    settings.toStdout(text);
  });
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => reader.feed(text));
  return reader;
}

/** Why a launch failed, before the child is ended and its output gathered into a LaunchError. */
class Failure {
  constructor(
    readonly reason: LaunchFailure,
    readonly message: string,
    readonly cause?: unknown,
  ) {}
}

/** One timer for the whole launch, the ready line and the connection together. */
function startupDeadline(ms: number): { expired: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { expired, cancel: () => clearTimeout(timer) };
}

interface Startup {
  child: Child;
  end: ChildEnd;
  log: OutputLog;
  reader: ReadyLineReader;
  commandLine: string;
  settings: Settings;
}

type Deadline = ReturnType<typeof startupDeadline>;

/**
 * Wait for the ready line, then for the connection; whatever comes first of
 * those, the child's end and the deadline decides. A failure ends the child
 * before the LaunchError is thrown, so a failed launch leaves nothing running.
 */
async function startUp(startup: Startup): Promise<LaunchedServer<IgorClient | null>> {
  const { child, end, log, reader, settings } = startup;
  const deadline = startupDeadline(settings.timeout);
  const attempt: { client: IgorClient | null } = { client: null };
  let outcome: Record<string, unknown> | Failure;
  try {
    outcome = await readyLine(startup, deadline);
    if (!(outcome instanceof Failure) && settings.connect) {
      const connected = await connectClient(startup, deadline, outcome, attempt);
      if (connected instanceof Failure) outcome = connected;
    }
  } finally {
    deadline.cancel();
  }
  if (outcome instanceof Failure) {
    closeQuietly(attempt.client);
    const status = await killAtOnce(child, end);
    const unfinished = reader.takePending();
    if (unfinished) log.add(unfinished);
    throw new LaunchError(outcome.message, {
      reason: outcome.reason,
      output: log.text,
      exitCode: status.code,
      signal: status.signal,
      cause: outcome.cause,
    });
  }
  return launchedServer(child, end, outcome, attempt.client, settings);
}

async function readyLine(startup: Startup, deadline: Deadline): Promise<Record<string, unknown> | Failure> {
  const { commandLine, settings } = startup;
  const first = await Promise.race([
    startup.reader.line,
    startup.end.exited.then(() => endedEarly(startup, 'before printing its IGOR_READY line')),
    deadline.expired.then(
      () => new Failure('timeout', `${commandLine} printed no IGOR_READY line within ${settings.timeout} ms (it was killed)`),
    ),
  ]);
  if (first instanceof Failure) return first;
  return first.ok ? first.fields : new Failure('ready-line', first.problem);
}

/** Connect with the token of the ready line unless the client options have one. */
async function connectClient(
  startup: Startup,
  deadline: Deadline,
  fields: Record<string, unknown>,
  attempt: { client: IgorClient | null },
): Promise<IgorClient | Failure> {
  const { settings } = startup;
  const url = fields.url as string;
  const token = tokenOf(fields);
  const clientOptions: IgorClientOptions = { ...settings.client };
  if (clientOptions.token === undefined && token !== null) clientOptions.token = token;
  const refused = (error: unknown): Failure => {
    const why = error instanceof Error ? error.message : String(error);
    return new Failure('connect', `could not connect to ${url}: ${why}`, error);
  };
  let client: IgorClient;
  try {
    client = new IgorClient(url, clientOptions);
  } catch (error) {
    return refused(error);
  }
  // Kept where startUp sees it, so that a failure closes the half-made connection.
  attempt.client = client;
  return Promise.race([
    client.ready.then(() => client, refused),
    startup.end.exited.then(() => endedEarly(startup, 'before it could be connected to')),
    deadline.expired.then(
      () => new Failure('connect', `could not connect to ${url} within ${settings.timeout} ms (the server was killed)`),
    ),
  ]);
}

function endedEarly(startup: Startup, when: string): Failure {
  const { end, commandLine } = startup;
  if (end.startError) {
    return new Failure('spawn', `could not start ${commandLine}: ${end.startError.message}`, end.startError);
  }
  const status = end.status as ExitStatus;
  const how = status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
  return new Failure('exit', `${commandLine} ${how} ${when}`);
}

function tokenOf(fields: Record<string, unknown>): string | null {
  return typeof fields.token === 'string' ? fields.token : null;
}

function closeQuietly(client: IgorClient | null): void {
  try {
    client?.close();
  } catch {
    // The connection may already be gone.
  }
}

function launchedServer(
  child: Child,
  end: ChildEnd,
  fields: Record<string, unknown>,
  client: IgorClient | null,
  settings: Settings,
): LaunchedServer<IgorClient | null> {
  let closing: Promise<ExitStatus> | null = null;
  const close = async (): Promise<ExitStatus> => {
    closeQuietly(client);
    return stopGracefully(child, end, settings);
  };
  return {
    url: fields.url as string,
    port: fields.port as number,
    token: tokenOf(fields),
    ready: fields,
    process: child as ChildProcess,
    client,
    exited: end.exited,
    close: () => (closing ??= close()),
  };
}
