// Per-interval series summed in the kernel (bpf/series.h): programs add to
// one of two maps; once per interval user space makes the other one active,
// waits until no program that read the old index is still adding
// (bpf/in_progress.h), then reads and empties the map left, so a read never
// races an update.
import type { BpfMap } from '../bpf/native';
import { InProgress } from './in-progress';
import { quantiles } from './histogram';

/** struct latency_series: count, latency sum and maximum (ns), then the histogram. */
export const LATENCY_SERIES = { count: 0, latency_sum: 8, latency_max: 16, hist: 24 } as const;
/** struct series_control. */
export const SERIES_CONTROL = { active: 0, series_made: 8, size: 24 } as const;

/** Series read per batch. */
const READ_CHUNK = 1024;
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
  private readonly adding: InProgress;

  /** @param inProgress the programs' per-CPU count of adds running (IN_PROGRESS_MAP) */
  constructor(
    private readonly control: BpfMap,
    private readonly maps: readonly [BpfMap, BpfMap],
    inProgress: BpfMap,
  ) {
    this.adding = new InProgress(inProgress);
  }

  /** Reads of a map that an add may still have been running on (the wait for it gave up): what it added may be lost. */
  get readsBusy(): number {
    return this.adding.gaveUp;
  }

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
    this.adding.moved();
    this.adding.waitQuiet();
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
