// Line protocol on stdout (SPEC §3: the default output).
import type { Writable } from 'node:stream';
import { log } from '../log';
import { LineEncoder, LineWriter } from './lineprotocol';
import type { Category, Output, OutputStats, Point } from './point';

/**
 * Bytes queued before a write is forced, between the collector's regular
 * flushes. Small: under load a write every few hundred lines costs little,
 * and lines that wait long survive the young generation's collections, which
 * then copy them.
 */
const FLUSH_BYTES = 64 * 1024;

export class StdoutOutput implements Output {
  /** Lines encoded straight into bytes: no string per line. */
  private queued = new LineWriter(FLUSH_BYTES + 4096);
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
      this.encoder.encodeInto(p, this.queued);
      // under heavy load, write in moderate chunks rather than a large one a second
      if (this.queued.length >= FLUSH_BYTES) void this.flush();
    }
  }

  flush(): Promise<void> {
    if (!this.queued.lines) return Promise.resolve();
    // the stream keeps the chunk until written: the writer goes on in a fresh one
    const { bytes, lines } = this.queued.take();
    if (this.broken) {
      this.dropped += lines;
      return Promise.resolve();
    }
    this.written += lines;
    // one write per flush; resolve once the data is handed to the OS
    return new Promise((resolve) => this.stream.write(bytes, () => resolve()));
  }

  close(): Promise<void> {
    return this.flush();
  }

  stats(): OutputStats {
    return { sent: this.written, failed: 0, dropped: this.dropped, dropped_full: 0, rejected: 0, corrupt: 0, unencodable: this.encoder.refused, buffered: this.queued.lines };
  }
}
