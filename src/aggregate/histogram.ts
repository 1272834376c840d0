// The kernel's log-linear latency histogram (HIST_* in bpf/httpflow.h):
// bucket 0 below 2^MIN_SHIFT ns; then SUB buckets per power of two up to
// 2^(MIN_SHIFT + OCTAVES) ns; the last bucket for everything longer. A
// bucket is 1/SUB of its power of two wide, so its midpoint is within
// 1/(2·SUB) = 3.2% of any value in it: percentiles within 5%.

export const HIST_MIN_SHIFT = 10;
export const HIST_SUB_BITS = 4;
export const HIST_SUB = 1 << HIST_SUB_BITS;
export const HIST_OCTAVES = 27;
export const HIST_BUCKETS = HIST_OCTAVES * HIST_SUB + 2;

/** The bucket of a latency, as the kernel computes it (for tests). */
export function bucketOf(ns: number): number {
  if (ns < 2 ** HIST_MIN_SHIFT) return 0;
  const msb = Math.floor(Math.log2(ns));
  // Math.log2 can be off by one next to a power of two: settle it exactly
  const m = 2 ** (msb + 1) <= ns ? msb + 1 : 2 ** msb > ns ? msb - 1 : msb;
  if (m >= HIST_MIN_SHIFT + HIST_OCTAVES) return HIST_BUCKETS - 1;
  const sub = Math.floor(ns / 2 ** (m - HIST_SUB_BITS)) & (HIST_SUB - 1);
  return 1 + (m - HIST_MIN_SHIFT) * HIST_SUB + sub;
}

/** [low, high) of a bucket, in ns (the last one is open-ended: high is Infinity). */
export function bucketBounds(b: number): [number, number] {
  if (b === 0) return [0, 2 ** HIST_MIN_SHIFT];
  if (b >= HIST_BUCKETS - 1) return [2 ** (HIST_MIN_SHIFT + HIST_OCTAVES), Infinity];
  const octave = Math.floor((b - 1) / HIST_SUB);
  const sub = (b - 1) % HIST_SUB;
  const base = 2 ** (HIST_MIN_SHIFT + octave);
  return [base + (sub * base) / HIST_SUB, base + ((sub + 1) * base) / HIST_SUB];
}

/**
 * The q-quantiles (nearest rank) of a histogram of `count` values whose
 * maximum is `max`, each as the midpoint of the bucket that holds it, never
 * above the maximum. `counts` is read at `off`, HIST_BUCKETS u32 values.
 */
export function quantiles(buf: Buffer, off: number, count: number, max: number, qs: readonly number[]): number[] {
  const out: number[] = [];
  if (!count) return qs.map(() => 0);
  let b = 0;
  let seen = buf.readUInt32LE(off);
  for (const q of qs) {
    const rank = Math.max(1, Math.ceil(q * count));
    while (seen < rank && b < HIST_BUCKETS - 1) {
      b++;
      seen += buf.readUInt32LE(off + b * 4);
    }
    const [lo, hi] = bucketBounds(b);
    out.push(Math.round(Math.min(max, hi === Infinity ? max : (lo + hi) / 2)));
  }
  return out;
}
