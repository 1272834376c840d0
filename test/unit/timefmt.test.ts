// Kernel monotonic times to wall clock, after the wall clock is set.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Collector } from '../../src/collector';
import type { Config } from '../../src/config';
import { configureLog } from '../../src/log';
import { unixNs, type Output, type Point } from '../../src/output/point';
import type { Plugin } from '../../src/plugins/plugin';
import { EventClock, WallClock } from '../../src/timefmt';

/** A wall clock and a monotonic clock the test moves by hand. */
function fakeClocks(wallMs: number, monotonicNs: bigint) {
  const clocks = { wallMs, monotonicNs };
  const wall = new WallClock(
    () => clocks.wallMs,
    () => clocks.monotonicNs,
  );
  return { clocks, wall };
}

const HOUR_MS = 3_600_000;

test('wall clock: a step is taken up on refresh, measurement noise is not', () => {
  const { clocks, wall } = fakeClocks(1_700_000_000_000, 5_000_000_000n);
  assert.equal(wall.offsetNs, 1_700_000_000_000_000_000n - 5_000_000_000n);
  assert.equal(wall.toWallNs(6_000_000_000n), 1_700_000_001_000_000_000n);

  // both clocks advance together, with the wall clock's ms rounding: no step
  clocks.monotonicNs += 10_000_999_999n;
  clocks.wallMs += 10_000;
  assert.equal(wall.refresh(), 0n);
  assert.equal(wall.generation, 0);

  // the wall clock is set back an hour (an NTP step): kernel times map to the new time once refreshed
  clocks.wallMs -= HOUR_MS;
  const event = clocks.monotonicNs + 1_000n;
  assert.equal(wall.toWallNs(event), 1_700_000_010_000_000_000n + 1_000n + 999_999n, 'until the refresh, the old offset');
  assert.equal(wall.refresh(), -3_600_000_999_999n);
  assert.equal(wall.generation, 1);
  assert.equal(wall.toWallNs(event), 1_699_996_410_000_000_000n + 1_000n);
});

test('event clock: relative times stay comparable across a step, printed times follow it', () => {
  const { clocks, wall } = fakeClocks(1_700_000_000_000, 5_000_000_000n);
  const clock = new EventClock(wall);
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(5_250_000_007n, 0);
  const rel = clock.read(buf, 0);
  assert.equal(rel, 250_000_007);
  assert.equal(clock.wallText(rel), '1700000000250000007');

  clocks.monotonicNs += 2_000_000_000n;
  clocks.wallMs += 2000 + 30 * HOUR_MS / 60; // set 30 minutes ahead
  assert.equal(clock.now(), 2_000_000_000, 'the base is kept');
  assert.equal(wall.refresh(), 1_800_000_000_000n);
  assert.equal(clock.read(buf, 0), rel);
  assert.equal(clock.wallText(rel), '1700001800250000007');
  assert.equal(unixNs(clock.wallTime(rel + 999_999_999)), 1_700_001_801_250_000_006n, 'carries into the next second');
});

test('collector: points stamped after the next report carry the stepped time', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-clock-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  configureLog('info', path.join(dir, 'log'));
  const { clocks, wall } = fakeClocks(1_700_000_000_000, 5_000_000_000n);
  // a plugin that stamps a kernel event seen 1 ms before each report, as bash and dnsflow do
  const plugin: Plugin = {
    name: 'stamps',
    category: 'logging',
    start: () => {},
    collect: (): Point[] => [{ measurement: 'm', tags: {}, fields: { n: 1 }, time: wall.toWallNs(clocks.monotonicNs - 1_000_000n) }],
    stats: () => ({}),
    stop: () => {},
  };
  const written: bigint[] = [];
  const output: Output = {
    write: (_c, points) => written.push(...points.map((p) => unixNs(p.time))),
    flush: async () => {},
    close: async () => {},
    stats: () => ({ sent: 0, failed: 0, dropped: 0, dropped_full: 0, rejected: 0, corrupt: 0, unencodable: 0, buffered: 0 }),
  };
  const collector = new Collector({ intervalMs: 3_600_000 } as Config, [plugin], output, wall);
  collector.start();
  try {
    await collector.report();
    clocks.monotonicNs += 60_000_000_000n;
    clocks.wallMs += 60_000 + 2 * HOUR_MS; // a minute later, and the wall clock is set 2 h ahead
    await collector.report();
  } finally {
    await collector.stop();
  }
  assert.deepEqual(written.slice(0, 2), [1_699_999_999_999_000_000n, 1_700_007_259_999_000_000n]);
  const log = fs.readFileSync(path.join(dir, 'log'), 'utf8');
  assert.match(log, /INFO wall clock stepped by 7200000 ms: timestamps follow it\n/);
});
