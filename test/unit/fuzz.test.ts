// The fuzzer's short run (`npm run fuzz` is the long one): 10,000 generated
// cases per parser with a fixed seed, and every regression seed in
// test/fuzz/seeds/<target>/, each input that once broke a parser.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { fuzz, mib, replaySeeds } from '../fuzz/harness';
import { removeConfigFile } from '../fuzz/targets/config';
import { TARGETS } from '../fuzz/targets';

const SEED = 20_240_601;
const CASES = 10_000;

after(() => removeConfigFile());

for (const t of TARGETS) {
  test(`${t.name}: regression seeds, then ${CASES} cases of seed ${SEED}`, () => {
    const seeds = replaySeeds(t);
    assert.deepEqual(seeds.failures, [], 'regression seeds');
    // generous bounds: this machine may be busy; `npm run fuzz` holds the strict ones
    const r = fuzz(t, { seed: SEED, cases: CASES, slowMs: 1000, heapGrowthBytes: 32 * 2 ** 20 });
    assert.deepEqual(r.failures.map((f) => `case ${f.index}: ${f.message}`), []);
    console.log(`${t.name}: ${seeds.files} seeds, ${CASES} cases in ${(r.ms / 1000).toFixed(1)} s, heap ${mib(r.heapBefore)} -> ${mib(r.heapAfter)} MiB`);
  });
}
