// What the process does on signals and on errors nobody caught (SPEC §2).
//
// SIGINT, SIGTERM: flush what has been collected, detach, exit 0; the same
// signal or the other while that runs exits at once with 128 + the signal's
// number (130, 143), as a shell reports a process a signal ended. One during
// start-up stops the collector as soon as it has started.
// SIGHUP: reopens the --log file (log rotation); without --log, nothing.
//
// An uncaught exception or unhandled rejection is logged in one line and
// counted. The collector carries on while it is running: every callback that
// can throw (a timer, a ring-buffer drain, a socket's events) begins from the
// state the last one left, and data of one interval at most is at stake. It
// exits with status 1 instead, after detaching and flushing what the output
// already holds (within 2 s), when the state cannot be trusted:
//   - during start-up (what is attached and what is not is unknown),
//   - during shutdown (it is leaving anyway),
//   - when what was thrown is not an Error (no stack: nothing says where it came from),
//   - at the fifth within a minute (something keeps failing: a supervisor's
//     restart begins clean).
import { constants } from 'node:os';
import { inspect } from 'node:util';
import { log, reopenLog, toStderr } from './log';

export type Phase = 'starting' | 'running' | 'stopping';
export type UnexpectedKind = 'uncaught_exception' | 'unhandled_rejection';

/** Unexpected errors within REPEAT_WINDOW_MS that end the process. */
export const REPEAT_LIMIT = 5;
export const REPEAT_WINDOW_MS = 60_000;
/** How long detaching and flushing may take before an exit for an unexpected error. */
export const ABANDON_MS = 2000;

export interface RunningHandlers {
  /** The orderly shutdown of SIGINT and SIGTERM. */
  stop(signal: NodeJS.Signals): Promise<void>;
  /** Detach and flush what is queued, without collecting: before exiting on an unexpected error. */
  abandon(): Promise<void>;
}

export interface GuardOptions {
  exit?: (code: number) => void;
  /** For the repeat window. */
  nowMs?: () => number;
  /** Also say on stderr why the process exits (its log is a file). */
  echoToStderr?: boolean;
}

/** Message and where it was thrown, on one line. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return inspect(err, { breakLength: Infinity, depth: 2 }).slice(0, 300);
  const frame = err.stack
    ?.split('\n')
    .find((l) => l.startsWith('    at '))
    ?.trim();
  const first = `${err.name}: ${err.message.split('\n')[0]}`;
  return frame ? `${first} (${frame})` : first;
}

export class ProcessGuard {
  phase: Phase = 'starting';
  readonly errors: Record<UnexpectedKind, number> = { uncaught_exception: 0, unhandled_rejection: 0 };
  private handlers?: RunningHandlers;
  private pendingSignal?: NodeJS.Signals;
  private recent: number[] = [];
  private readonly exit: (code: number) => void;
  private readonly nowMs: () => number;

  constructor(private readonly opts: GuardOptions = {}) {
    this.exit = opts.exit ?? ((code) => process.exit(code));
    this.nowMs = opts.nowMs ?? Date.now;
  }

  /** Takes over the signals and Node's last-resort error events for this process. */
  install(): void {
    process.on('uncaughtException', (err) => this.unexpected('uncaught_exception', err));
    process.on('unhandledRejection', (reason) => this.unexpected('unhandled_rejection', reason));
    process.on('SIGINT', () => this.signal('SIGINT'));
    process.on('SIGTERM', () => this.signal('SIGTERM'));
    process.on('SIGHUP', () => this.hangup());
  }

  /** Start-up is over: signals now stop the collector through `handlers`. */
  running(handlers: RunningHandlers): void {
    this.handlers = handlers;
    this.phase = 'running';
    const pending = this.pendingSignal;
    this.pendingSignal = undefined;
    if (pending) this.signal(pending);
  }

  signal(signal: NodeJS.Signals): void {
    if (this.phase === 'stopping' || this.pendingSignal) {
      const code = 128 + (constants.signals[signal] ?? 0);
      log.warn(`${signal} again: exiting at once (status ${code})`);
      this.exit(code);
      return;
    }
    if (this.phase === 'starting' || !this.handlers) {
      log.info(`${signal}: stopping as soon as start-up is done`);
      this.pendingSignal = signal;
      return;
    }
    this.phase = 'stopping';
    log.info(`${signal}: flushing and detaching`);
    this.handlers.stop(signal).then(
      () => this.exit(0),
      (err) => {
        log.error(`shutdown failed: ${describeError(err)}`);
        this.exit(1);
      },
    );
  }

  hangup(): void {
    if (reopenLog()) log.info('SIGHUP: log file reopened');
    else log.info('SIGHUP: no --log file to reopen: ignored');
  }

  unexpected(kind: UnexpectedKind, err: unknown): void {
    this.errors[kind]++;
    const now = this.nowMs();
    this.recent = this.recent.filter((t) => now - t < REPEAT_WINDOW_MS);
    this.recent.push(now);
    const what = `unexpected error (${kind.replace('_', ' ')}): ${describeError(err)}`;
    const why =
      this.phase === 'starting'
        ? 'during start-up'
        : this.phase === 'stopping'
          ? 'during shutdown'
          : !(err instanceof Error)
            ? 'not an Error: nothing says where it came from'
            : this.recent.length >= REPEAT_LIMIT
              ? `${this.recent.length} within a minute`
              : undefined;
    if (!why) {
      log.error(`${what}; carrying on`);
      return;
    }
    log.error(`${what}; ${why}: exiting`);
    if (this.opts.echoToStderr) toStderr(`datakit-ebpf: ${what}; ${why}: exiting`);
    this.leave();
  }

  /** Exits 1, after detaching and flushing within ABANDON_MS when the collector is running. */
  private leave(): void {
    const handlers = this.phase === 'running' ? this.handlers : undefined;
    this.phase = 'stopping';
    if (!handlers) {
      this.exit(1);
      return;
    }
    const timer = setTimeout(() => this.exit(1), ABANDON_MS);
    let abandoned: Promise<void>;
    try {
      abandoned = handlers.abandon();
    } catch (err) {
      abandoned = Promise.reject(err);
    }
    abandoned.then(
      () => undefined,
      (err) => log.error(`detaching failed: ${describeError(err)}`),
    ).finally(() => {
      clearTimeout(timer);
      this.exit(1);
    });
  }
}
