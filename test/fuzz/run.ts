// `npm run fuzz`: feeds FUZZ_CASES generated inputs (default 1,000,000) to
// every parser of the collector, each target in a worker thread of its own
// watched for hangs, with a heap bound and a slow-case bound. Reproducible:
// FUZZ_SEED replays a run, FUZZ_CASE=N prints and runs case N alone.
//   FUZZ_ONLY=dns,k8s   some targets only
//   FUZZ_SLOW_MS=100    a case slower than this (twice) fails
//   FUZZ_HEAP_MIB=32    the heap may grow this much over a target's run
// Failing inputs go to fuzz-failures/<target>/; once fixed, they belong in
// test/fuzz/seeds/<target>/, which the unit tests replay.
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Failure, fuzz, generateCase, mib, replaySeeds, TargetReport } from './harness';
import { configDir, removeConfigFile } from './targets/config';
import { TARGETS } from './targets';

interface Job {
  target: string;
  seed: number;
  cases: number;
  slowMs: number;
  heapGrowthBytes: number;
  current: Int32Array;
}

/** A case that runs this long is a hang: the worker is stopped. */
const HANG_MS = 10_000;
const num = (name: string, fallback: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name}: not an integer: ${v}`);
  return n;
};

function inWorker(): void {
  const job = workerData as Job;
  const t = TARGETS.find((x) => x.name === job.target)!;
  const seeds = replaySeeds(t);
  const report = fuzz(t, { seed: job.seed, cases: job.cases, slowMs: job.slowMs, heapGrowthBytes: job.heapGrowthBytes, current: job.current });
  report.failures.unshift(...seeds.failures);
  removeConfigFile();
  parentPort!.postMessage({ report, seedFiles: seeds.files });
}

/** Runs one target in a worker; a hang or a crash becomes a failure of the case it was on. */
function runTarget(job: Omit<Job, 'current'>): Promise<{ report: TargetReport; seedFiles: number }> {
  const current = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(__filename, { workerData: { ...job, current }, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
  const began = Date.now();
  const t = TARGETS.find((x) => x.name === job.target)!;
  const lost = (message: string): { report: TargetReport; seedFiles: number } => {
    const index = Atomics.load(current, 0);
    let input = '';
    try {
      input = t.save(generateCase(t, job.seed, index));
    } catch {
      // the generator itself failed: the message says what was lost
    }
    const failure: Failure = { index, message, input };
    const report: TargetReport = { name: job.target, cases: index, ms: Date.now() - began, perSecond: 0, slowest: { index, ms: 0 }, slow: [], failures: [failure], heapBefore: 0, heapAfter: 0, heapPeak: 0 };
    return { report, seedFiles: 0 };
  };
  return new Promise((resolve) => {
    let last = -1;
    let since = Date.now();
    const watchdog = setInterval(() => {
      const now = Atomics.load(current, 0);
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since > HANG_MS) {
        clearInterval(watchdog);
        void worker.terminate();
        resolve(lost(`hang: case ${now} ran for over ${HANG_MS / 1000} s`));
      }
    }, 250);
    worker.on('message', (m: { report: TargetReport; seedFiles: number }) => {
      clearInterval(watchdog);
      resolve(m);
    });
    worker.on('error', (err) => {
      clearInterval(watchdog);
      resolve(lost(`worker died: ${err.message}`));
    });
    worker.on('exit', () => {
      clearInterval(watchdog);
      fs.rmSync(configDir(process.pid, worker.threadId), { recursive: true, force: true });
    });
  });
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const seed = num('FUZZ_SEED', randomInt(2 ** 31));
  const cases = num('FUZZ_CASES', 1_000_000);
  const slowMs = num('FUZZ_SLOW_MS', 100);
  const heapGrowthBytes = num('FUZZ_HEAP_MIB', 32) * 2 ** 20;
  const only = process.env.FUZZ_ONLY?.split(',').filter(Boolean);
  const targets = TARGETS.filter((t) => !only || only.includes(t.name));
  if (!targets.length) throw new Error(`FUZZ_ONLY: no such target (targets: ${TARGETS.map((t) => t.name).join(', ')})`);

  const single = process.env.FUZZ_CASE;
  if (single !== undefined && single !== '') {
    for (const t of targets) {
      const input = generateCase(t, seed, Number(single));
      console.log(`${t.name} case ${single} of seed ${seed}:\n${t.save(input)}`);
      t.run(input);
      console.log(`${t.name}: ok`);
    }
    removeConfigFile();
    return;
  }

  console.log(`fuzz: seed ${seed} (FUZZ_SEED=${seed} replays this run), ${fmt(cases)} cases per target, slow bound ${slowMs} ms, heap growth bound ${mib(heapGrowthBytes)} MiB`);
  const began = Date.now();
  let failed = 0;
  for (const t of targets) {
    const { report: r, seedFiles } = await runTarget({ target: t.name, seed, cases, slowMs, heapGrowthBytes });
    const heap = r.heapBefore ? `heap ${mib(r.heapBefore)} -> ${mib(r.heapAfter)} MiB (peak ${mib(r.heapPeak)})` : 'heap -';
    const slowest = `slowest ${r.slowest.ms.toFixed(1)} ms (case ${r.slowest.index})`;
    console.log(
      `${t.name.padEnd(13)} ${fmt(r.cases).padStart(9)} cases ${(r.ms / 1000).toFixed(1).padStart(6)} s ${fmt(r.perSecond).padStart(8)}/s  ${slowest}  ${heap}  ${seedFiles} seeds  ${r.failures.length ? `FAILED (${r.failures.length})` : 'ok'}`,
    );
    const once = r.slow.filter((s) => s.again <= slowMs);
    if (once.length) {
      const worst = once.reduce((a, b) => (b.ms > a.ms ? b : a));
      console.log(`  ${once.length} cases slow once, fast alone (a pause of the process): worst case ${worst.index}, ${worst.ms.toFixed(0)} ms, then ${worst.again.toFixed(1)} ms`);
    }
    for (const f of r.failures) {
      failed++;
      let saved = '';
      if (f.input) {
        const dir = path.join('fuzz-failures', t.name);
        fs.mkdirSync(dir, { recursive: true });
        saved = path.join(dir, `${seed}-${f.index}.json`);
        fs.writeFileSync(saved, f.input);
      }
      console.log(`  case ${f.index}: ${f.message}${saved ? `\n    input: ${saved}` : ''}`);
    }
  }
  console.log(`fuzz: ${((Date.now() - began) / 1000).toFixed(1)} s in all, ${failed ? `${failed} failures` : 'no failures'} (seed ${seed})`);
  if (failed) process.exitCode = 1;
}

if (isMainThread) {
  main().catch((err) => {
    console.error(`fuzz: ${(err as Error).message}`);
    process.exitCode = 2;
  });
} else {
  inWorker();
}
