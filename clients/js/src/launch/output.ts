/**
 * The child's output: where it is forwarded, what is kept of it for a
 * LaunchError, and how the `IGOR_READY` line is picked out of stdout.
 *
 * @packageDocumentation
 */

/** Where a stream of the child's output goes once {@link launch} has read it. */
export type OutputTarget =
  /** Write it to this process's own stream (`process.stderr` / `process.stdout`). */
  | 'inherit'
  /** Drop it (it is still kept for {@link LaunchError.output}). */
  | 'ignore'
  /** Hand each decoded chunk of text to a function (e.g. a logger). */
  | ((text: string) => void);

const READY_PREFIX = 'IGOR_READY ';
const OUTPUT_LIMIT = 64 * 1024;

/** A function that forwards text to `target`. */
export function sink(target: OutputTarget, own: NodeJS.WriteStream): (text: string) => void {
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

/**
 * The child's stderr and stdout in arrival order, the last 64 KiB only: the
 * end is what explains a failure (a traceback comes last), and a chatty
 * server must not grow this without bound.
 */
export class OutputLog {
  private kept = '';

  get text(): string {
    return this.kept;
  }

  add(text: string): void {
    this.kept += text;
    if (this.kept.length > OUTPUT_LIMIT) this.kept = this.kept.slice(this.kept.length - OUTPUT_LIMIT);
  }
}

/** The verdict on the first `IGOR_READY` line: its fields, or what is wrong with it. */
export type ReadyLine =
  | { ok: true; fields: Record<string, unknown> }
  | { ok: false; problem: string };

/** Judge one (trimmed) line that starts with `IGOR_READY `. */
export function parseReadyLine(line: string): ReadyLine {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.slice(READY_PREFIX.length));
  } catch {
    return { ok: false, problem: `the IGOR_READY line is not valid JSON: ${line}` };
  }
  if (
    parsed === null ||
    typeof parsed !== 'object' ||
    typeof (parsed as Record<string, unknown>).url !== 'string' ||
    typeof (parsed as Record<string, unknown>).port !== 'number'
  ) {
    return { ok: false, problem: `the IGOR_READY line lacks "url" or "port": ${line}` };
  }
  return { ok: true, fields: parsed as Record<string, unknown> };
}

/**
 * Reads stdout line by line until the first `IGOR_READY` line, hands every
 * other line to `forward`, and from then on forwards the text as it comes
 * (no more line splitting: nothing else in it matters).
 */
export class ReadyLineReader {
  /** Resolves with the verdict on the first `IGOR_READY` line; never if there is none. */
  readonly line: Promise<ReadyLine>;
  private verdict: ReadyLine | null = null;
  private pending = '';
  private settle!: (line: ReadyLine) => void;

  constructor(private readonly forward: (text: string) => void) {
    this.line = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  feed(text: string): void {
    if (this.verdict) {
      this.forward(text);
      return;
    }
    this.pending += text;
    let newline: number;
    while (!this.verdict && (newline = this.pending.indexOf('\n')) !== -1) {
      const line = this.pending.slice(0, newline + 1);
      this.pending = this.pending.slice(newline + 1);
      const trimmed = line.trim();
      if (trimmed.startsWith(READY_PREFIX)) {
        this.verdict = parseReadyLine(trimmed);
        this.settle(this.verdict);
      } else {
        this.forward(line);
      }
    }
    if (this.verdict) this.flush();
  }

  /** An unfinished last line: what a child that died mid-line last said. */
  takePending(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  private flush(): void {
    const rest = this.takePending();
    if (rest) this.forward(rest);
  }
}
