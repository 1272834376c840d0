// The kernel's latency histogram as user space reads it (src/aggregate/histogram.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bucketBounds, bucketOf, HIST_BUCKETS, quantiles } from '../../src/aggregate/histogram';

test('every value falls in the bucket whose bounds hold it; buckets tile the range', () => {
  for (const ns of [0, 1, 1023, 1024, 1087, 1088, 2047, 2048, 999_999, 1e6, 3.7e9, 2 ** 37 - 1, 2 ** 37, 1e12]) {
    const [lo, hi] = bucketBounds(bucketOf(ns));
    assert.ok(lo <= ns && ns < hi, `${ns} in [${lo}, ${hi})`);
  }
  for (let b = 0; b < HIST_BUCKETS - 1; b++) assert.equal(bucketBounds(b)[1], bucketBounds(b + 1)[0], `bucket ${b} meets ${b + 1}`);
  assert.equal(bucketOf(1e15), HIST_BUCKETS - 1);
});

test('a bucket midpoint is within 3.2% of any value in it (from 1 µs up)', () => {
  let worst = 0;
  for (let ns = 1024; ns < 2 ** 37; ns = Math.ceil(ns * 1.013)) {
    const [lo, hi] = bucketBounds(bucketOf(ns));
    worst = Math.max(worst, Math.abs((lo + hi) / 2 - ns) / ns);
  }
  assert.ok(worst <= 0.0321, `worst relative error ${worst}`);
});

/** A histogram as the kernel lays it out, from values. */
function histogram(values: number[]): Buffer {
  const b = Buffer.alloc(HIST_BUCKETS * 4);
  for (const v of values) b.writeUInt32LE(b.readUInt32LE(bucketOf(v) * 4) + 1, bucketOf(v) * 4);
  return b;
}

test('nearest-rank quantiles within 5%, never above the maximum', () => {
  // a fixed pseudo-random spread over five decades
  let x = 12345;
  const values = Array.from({ length: 5000 }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return Math.round(10 ** (3 + (5 * x) / 2 ** 31));
  });
  const sorted = [...values].sort((a, b) => a - b);
  const max = sorted[sorted.length - 1];
  const qs = [0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1];
  const got = quantiles(histogram(values), 0, values.length, max, qs);
  qs.forEach((q, i) => {
    const exact = sorted[Math.ceil(q * sorted.length) - 1];
    assert.ok(Math.abs(got[i] - exact) <= 0.05 * exact, `q${q}: ${got[i]} vs ${exact}`);
    assert.ok(got[i] <= max);
  });
  assert.deepEqual(quantiles(histogram([]), 0, 0, 0, [0.5]), [0]);
  // one value: every quantile is its bucket's midpoint, or the value itself if that is lower
  const [lo, hi] = bucketBounds(bucketOf(5e6));
  assert.deepEqual(quantiles(histogram([5e6]), 0, 1, 5e6, [0.5, 0.99]), Array(2).fill(Math.round(Math.min(5e6, (lo + hi) / 2))));
});
