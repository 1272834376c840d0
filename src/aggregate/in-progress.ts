// Programs that read an index or a generation from a control map and then add
// to what it names count themselves in and out of a per-CPU count
// (bpf/in_progress.h). After user space moves the index on, a CPU seen at 0
// has no program left that read the old one: once every CPU has been seen so,
// what the old index named may be read for the last time and emptied.
import type { BpfMap } from '../bpf/native';

const ZERO_KEY = Buffer.alloc(4);
/** How often, and how long at most, waitQuiet() looks. */
const POLL_MS = 1;
const WAIT_MAX_MS = 200;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

export class InProgress {
  private readonly values: Buffer;
  /** CPUs not yet seen at 0 since the index last moved. */
  private readonly busy = new Set<number>();
  /** waitQuiet() calls that gave up: what the old index named was read while a program may still have been adding. */
  gaveUp = 0;

  constructor(private readonly map: BpfMap) {
    this.values = Buffer.alloc(map.valueSize); // a u64 per possible CPU
  }

  /** Call right after moving the index on: every CPU must be seen at 0 again. */
  moved(): void {
    for (let cpu = 0; cpu < this.values.length / 8; cpu++) this.busy.add(cpu);
  }

  /** Whether every CPU has been seen at 0 since the last move: one lookup while some have not, none after. */
  quiet(): boolean {
    if (!this.busy.size) return true;
    if (!this.map.lookup(ZERO_KEY, this.values)) return false;
    for (const cpu of this.busy) if (this.values.readBigUInt64LE(cpu * 8) === 0n) this.busy.delete(cpu);
    return this.busy.size === 0;
  }

  /**
   * Blocks until quiet(), looking every millisecond. A program runs for
   * microseconds, so the first look almost always does; after WAIT_MAX_MS it
   * gives up, counts it in gaveUp and returns false.
   */
  waitQuiet(): boolean {
    const until = Date.now() + WAIT_MAX_MS;
    while (!this.quiet()) {
      if (Date.now() >= until) {
        this.gaveUp++;
        this.busy.clear();
        return false;
      }
      Atomics.wait(sleeper, 0, 0, POLL_MS);
    }
    return true;
  }
}
