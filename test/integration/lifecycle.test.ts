// Nothing the collector attaches may outlive it: not after SIGTERM, not after SIGKILL.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startCollector } from '../helpers/collector';
import { loadedProgramIds, programsGone, skip } from '../helpers/privileged';

describe('collector lifecycle', { skip }, () => {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGKILL'] as const) {
    test(`no eBPF program remains after ${signal}`, async () => {
      const before = loadedProgramIds();
      const collector = await startCollector(['--interval', '60s']);
      const ours = [...loadedProgramIds()].filter((id) => !before.has(id));
      assert.ok(ours.length >= 5, `the collector loaded its programs (${ours.length})`);
      const { code, signal: sig } = await collector.stop(signal);
      if (signal === 'SIGKILL') assert.equal(sig, 'SIGKILL');
      else assert.equal(code, 0, collector.stderr());
      assert.deepEqual(await programsGone(ours, 10000), [], 'programs left behind');
    });
  }
});
