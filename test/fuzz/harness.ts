// Runs a fuzz target: cases generated from a seed, each timed, the heap
// measured around the run, failures kept with the input that caused them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { caseSeed, Random } from './random';

export interface FuzzTarget<I> {
  name: string;
  /** What the target feeds, for the report. */
  describe: string;
  /** Case `index` of a run: built from its own generator only. */
  generate(rng: Random, index: number): I;
  /** Feeds the input to the parser and checks what comes out; throws when something is wrong. */
  run(input: I): void;
  /** A regression seed's file content, and back. */
  save(input: I): string;
  load(text: string): I;
}

export interface Failure {
  /** Case number, or the seed file it came from. */
  index: number | string;
  message: string;
  input: string;
}

export interface TargetReport {
  name: string;
  cases: number;
  ms: number;
  perSecond: number;
  slowest: { index: number; ms: number };
  /** Cases over the slow bound, timed again alone to tell them from a pause of the process. */
  slow: { index: number; ms: number; again: number }[];
  failures: Failure[];
  heapBefore: number;
  heapAfter: number;
  heapPeak: number;
}

export interface RunOptions {
  seed: number;
  cases: number;
  /** A case taking longer than this (ms), twice, is a failure. */
  slowMs: number;
  /** The heap (after a full GC) may grow by this many bytes over the run. */
  heapGrowthBytes: number;
  /** Gets the number of the case running, for a watchdog in another thread. */
  current?: Int32Array;
}

/** Distinct failures kept per target: the same bug tends to be hit again and again. */
const MAX_FAILURES = 20;

export const gc: () => void = (() => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

function heapNow(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

/** The first line of an error and where it was thrown: the key that tells failures apart. */
export function failureKey(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const at = err.stack?.split('\n').find((l) => l.trim().startsWith('at ')) ?? '';
  return `${err.name}: ${err.message.split('\n')[0].slice(0, 200)} ${at.trim()}`;
}

export function generateCase<I>(t: FuzzTarget<I>, seed: number, index: number): I {
  return t.generate(new Random(caseSeed(seed, t.name, index)), index);
}

export function fuzz<I>(t: FuzzTarget<I>, o: RunOptions): TargetReport {
  const failures: Failure[] = [];
  const seen = new Set<string>();
  const slow: TargetReport['slow'] = [];
  let slowest = { index: -1, ms: 0 };
  const heapBefore = heapNow();
  let heapPeak = heapBefore;
  const began = performance.now();
  for (let i = 0; i < o.cases; i++) {
    if (o.current) Atomics.store(o.current, 0, i);
    if ((i & 4095) === 0) {
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
    }
    let input: I;
    try {
      input = generateCase(t, o.seed, i);
    } catch (err) {
      failures.push({ index: i, message: `the generator failed: ${failureKey(err)}`, input: '' });
      break;
    }
    const t0 = performance.now();
    try {
      t.run(input);
    } catch (err) {
      const key = failureKey(err);
      if (!seen.has(key) && failures.length < MAX_FAILURES) {
        seen.add(key);
        failures.push({ index: i, message: key, input: t.save(input) });
      }
      continue;
    }
    const ms = performance.now() - t0;
    if (ms > slowest.ms) slowest = { index: i, ms };
    if (ms > o.slowMs) {
      // a GC or a busy machine can stall any case: only one slow again alone counts
      const a0 = performance.now();
      t.run(generateCase(t, o.seed, i));
      slow.push({ index: i, ms, again: performance.now() - a0 });
    }
  }
  const ms = performance.now() - began;
  const heapAfter = heapNow();
  for (const s of slow) {
    if (s.again > o.slowMs) failures.push({ index: s.index, message: `slow: ${s.ms.toFixed(0)} ms, then ${s.again.toFixed(0)} ms alone`, input: t.save(generateCase(t, o.seed, s.index)) });
  }
  if (heapAfter - heapBefore > o.heapGrowthBytes) {
    failures.push({ index: 'heap', message: `heap grew by ${mib(heapAfter - heapBefore)} MiB (bound ${mib(o.heapGrowthBytes)} MiB)`, input: '' });
  }
  return { name: t.name, cases: o.cases, ms, perSecond: (o.cases / ms) * 1000, slowest, slow, failures, heapBefore, heapAfter, heapPeak };
}

export const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

/** The regression seeds of a target: inputs that once broke it, kept in test/fuzz/seeds/<target>/. */
export function seedFiles(target: string): string[] {
  // compiled to dist/test/fuzz: the seeds stay in the source tree
  const dir = path.resolve(__dirname, '..', '..', '..', 'test', 'fuzz', 'seeds', target);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
}

/** Replays every regression seed of a target; one slower than `slowMs`, twice, fails too. */
export function replaySeeds<I>(t: FuzzTarget<I>, slowMs = 50): { files: number; failures: Failure[] } {
  const failures: Failure[] = [];
  const files = seedFiles(t.name);
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    const timed = (): number => {
      const t0 = performance.now();
      t.run(t.load(text));
      return performance.now() - t0;
    };
    try {
      const ms = timed();
      if (ms > slowMs) {
        const again = timed();
        if (again > slowMs) failures.push({ index: path.basename(f), message: `slow: ${ms.toFixed(0)} ms, then ${again.toFixed(0)} ms`, input: text });
      }
    } catch (err) {
      failures.push({ index: path.basename(f), message: failureKey(err), input: text });
    }
  }
  return { files: files.length, failures };
}
