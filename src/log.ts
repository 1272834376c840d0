// Minimal levelled logger writing one line per message to stderr or a file.
import * as fs from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold = ORDER.info;
let fd = 2;

export function configureLog(level: LogLevel, path?: string): void {
  threshold = ORDER[level];
  if (path) fd = fs.openSync(path, 'a');
}

function emit(level: LogLevel, msg: string): void {
  if (ORDER[level] < threshold) return;
  fs.writeSync(fd, `${new Date().toISOString()} ${level.toUpperCase()} ${msg}\n`);
}

export const log = {
  debug: (msg: string) => emit('debug', msg),
  info: (msg: string) => emit('info', msg),
  warn: (msg: string) => emit('warn', msg),
  error: (msg: string) => emit('error', msg),
};
