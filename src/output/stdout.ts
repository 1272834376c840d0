// Line protocol on stdout (SPEC §3: the default output).
import type { Writable } from 'node:stream';
import { log } from '../log';
import { LineEncoder } from './lineprotocol';
import type { Category, Output, OutputStats, Point } from './point';

/** Lines queued before a write is forced, between the collector's regular flushes. */
const FLUSH_LINES = 4096;

export class StdoutOutput implements Output {
  private queued: string[] = [];
  private broken = false;
  written = 0;
  dropped = 0;

  constructor(
    private readonly encoder: LineEncoder = new LineEncoder({}),
    private readonly stream: Writable = process.stdout,
  ) {
    // A closed pipe (e.g. `| head`) must not crash the collector.
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.broken) log.warn(`stdout: ${err.code ?? err.message}: output stopped`);
      this.broken = true;
    });
  }

  write(_category: Category, points: Point[]): void {
    for (const p of points) {
      const line = this.encoder.tryEncode(p);
      if (line !== undefined) this.queued.push(line);
    }
    this.flushIfLarge();
  }

  /** Under heavy load, write in moderate chunks rather than one huge string a second. */
  private flushIfLarge(): void {
    if (this.queued.length >= FLUSH_LINES) void this.flush();
  }

  flush(): Promise<void> {
    const lines = this.queued;
    this.queued = [];
    if (!lines.length) return Promise.resolve();
    if (this.broken) {
      this.dropped += lines.length;
      return Promise.resolve();
    }
    this.written += lines.length;
    // one write per flush; resolve once the data is handed to the OS
    return new Promise((resolve) => this.stream.write(`${lines.join('\n')}\n`, () => resolve()));
  }

  close(): Promise<void> {
    return this.flush();
  }

  stats(): OutputStats {
    return { sent: this.written, failed: 0, dropped: this.dropped, dropped_full: 0, rejected: 0, corrupt: 0, unencodable: this.encoder.refused, buffered: this.queued.length };
  }
}
