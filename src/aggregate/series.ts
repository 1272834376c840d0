// Per-interval series summed in the kernel (bpf/series.h): programs add to
// one of two maps; once per interval user space makes the other one active,
// waits for programs that may still hold the old index, then reads and
// empties the map left, so a read never races an update.
import type { BpfMap } from '../bpf/native';
import { quantiles } from './histogram';

/** struct latency_series: count, latency sum and maximum (ns), then the histogram. */
export const LATENCY_SERIES = { count: 0, latency_sum: 8, latency_max: 16, hist: 24 } as const;
/** struct series_control. */
export const SERIES_CONTROL = { active: 0, series_made: 8, size: 24 } as const;

/** Series read per batch. */
const READ_CHUNK = 1024;
/** After a switch, how long a program that read the old index may still add to the old map. */
const SETTLE_MS = 10;
const settle = new Int32Array(new SharedArrayBuffer(4));

/**
 * Blocks until SETTLE_MS after a switch made at `switchedAt` (Date.now()):
 * programs run for microseconds, so one that read the old index is done by then.
 */
export function settleAfterSwitch(switchedAt: number): void {
  const wait = SETTLE_MS - (Date.now() - switchedAt);
  if (wait > 0) Atomics.wait(settle, 0, 0, wait);
}

export interface LatencyStats {
  count: number;
  meanNs: number;
  maxNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
}

/** What a struct latency_series at `off` says. */
export function latencyStats(values: Buffer, off: number): LatencyStats {
  const count = Number(values.readBigUInt64LE(off + LATENCY_SERIES.count));
  const maxNs = Number(values.readBigUInt64LE(off + LATENCY_SERIES.latency_max));
  const [p50Ns, p90Ns, p99Ns] = quantiles(values, off + LATENCY_SERIES.hist, count, maxNs, [0.5, 0.9, 0.99]);
  const sum = Number(values.readBigUInt64LE(off + LATENCY_SERIES.latency_sum));
  return { count, meanNs: count ? Math.round(sum / count) : 0, maxNs, p50Ns, p90Ns, p99Ns };
}

export class SeriesTables {
  constructor(
    private readonly control: BpfMap,
    private readonly maps: readonly [BpfMap, BpfMap],
  ) {}

  /**
   * Makes the other map active, then reads and empties the one the programs
   * were adding to: `each` gets every series' key and value. Returns how many.
   */
  switchAndRead(each: (keys: Buffer, keyOff: number, values: Buffer, valueOff: number) => void): number {
    const zero = Buffer.alloc(4);
    const ctl = this.control.lookup(zero) ?? Buffer.alloc(SERIES_CONTROL.size);
    const old = ctl.readUInt32LE(SERIES_CONTROL.active) & 1;
    const next = 1 - old;
    ctl.writeUInt32LE(next, SERIES_CONTROL.active);
    ctl.writeBigUInt64LE(0n, SERIES_CONTROL.series_made + next * 8);
    this.control.update(zero, ctl);
    settleAfterSwitch(Date.now());
    const map = this.maps[old];
    return map.forEachChunk(
      READ_CHUNK,
      ({ count, keys, values }) => {
        for (let i = 0; i < count; i++) each(keys, i * map.keySize, values, i * map.valueSize);
      },
      { delete: true },
    );
  }
}
