// Levelled logger: one line per message to stderr or the --log file, written
// synchronously. A line that cannot be written (full disk, stderr a full
// non-blocking pipe, a closed pipe or descriptor) is lost and counted: the
// log never stops the collector.
import * as fs from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold = ORDER.info;
let fd = 2;
let logPath: string | undefined;
let written = 0;
let failed = 0;
/** Set from a failed write until the next one that works; `failed` when it began. */
let failing: { code: string; failedBefore: number } | undefined;
/** A write stopped within a line: the next line starts on a line of its own. */
let midLine = false;

export interface LogStats {
  /** Lines written whole. */
  written: number;
  /** Lines lost, wholly or in part, to a failed write. */
  failed: number;
}

export function configureLog(level: LogLevel, path?: string): void {
  threshold = ORDER[level];
  if (path) {
    fd = fs.openSync(path, 'a');
    logPath = path;
  }
}

/**
 * Log rotation (SIGHUP): opens the --log path anew, so that after `mv log
 * log.1` lines go to a new `log`. False without --log. When the path cannot be
 * opened, lines keep going to the old file and the reason is logged there.
 */
export function reopenLog(): boolean {
  if (!logPath) return false;
  let next: number;
  try {
    next = fs.openSync(logPath, 'a');
  } catch (err) {
    log.warn(`log: cannot reopen ${logPath}: ${(err as Error).message}; still writing to the file open before`);
    return true;
  }
  const old = fd;
  fd = next;
  midLine = false;
  try {
    fs.closeSync(old);
  } catch {
    /* already unusable: nothing to release */
  }
  return true;
}

export function logStats(): LogStats {
  return { written, failed };
}

/** One line on stderr that must not throw (stderr may be closed or a full pipe). */
export function toStderr(line: string): void {
  try {
    fs.writeSync(2, `${line}\n`);
  } catch {
    /* nowhere left to say it */
  }
}

/** Writes all of `text`; false, counting the line as lost, if a write fails. */
function writeAll(text: string): boolean {
  let done = 0;
  try {
    done = fs.writeSync(fd, text);
    const size = Buffer.byteLength(text);
    if (done === size) return true;
    // a short write (a pipe or a disk nearly full): carry on with the rest
    const bytes = Buffer.from(text);
    while (done < size) {
      const n = fs.writeSync(fd, bytes, done);
      if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      done += n;
    }
    return true;
  } catch (err) {
    if (done > 0) midLine = true;
    lost((err as NodeJS.ErrnoException).code ?? (err as Error).message);
    return false;
  }
}

function lost(code: string): void {
  failed++;
  if (failing) return;
  failing = { code, failedBefore: failed - 1 };
  // once per failure streak; on stderr, where a full disk or a vanished file does not reach
  if (logPath) toStderr(`datakit-ebpf: cannot write to the log ${logPath}: ${code}; lines are lost (and counted) until writing works again`);
}

function line(level: LogLevel, msg: string): string {
  return `${new Date().toISOString()} ${level.toUpperCase()} ${msg}\n`;
}

function emit(level: LogLevel, msg: string): void {
  if (ORDER[level] < threshold) return;
  let text = line(level, msg);
  let lines = 1;
  if (failing) {
    // the first line written after a streak says how many were lost, in the same write
    if (ORDER.warn >= threshold) {
      text = line('warn', `log: ${failed - failing.failedBefore} lines could not be written (${failing.code})`) + text;
      lines++;
    }
  }
  if (midLine) text = `\n${text}`;
  if (!writeAll(text)) return;
  midLine = false;
  failing = undefined;
  written += lines;
}

export const log = {
  debug: (msg: string) => emit('debug', msg),
  info: (msg: string) => emit('info', msg),
  warn: (msg: string) => emit('warn', msg),
  error: (msg: string) => emit('error', msg),
};
