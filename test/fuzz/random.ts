// A seeded random source for the fuzzer (pure-rand's xoroshiro128+). Every
// case gets a generator of its own, derived from the run's seed, the target
// and the case number, so any one case can be made again alone.
import { RandomGenerator, xoroshiro128plus } from 'pure-rand';

export class Random {
  private readonly rng: RandomGenerator;

  constructor(seed: number) {
    this.rng = xoroshiro128plus(seed | 0);
  }

  /** An integer in [0, bound). */
  int(bound: number): number {
    return Math.floor(((this.rng.unsafeNext() >>> 0) / 0x1_0000_0000) * bound);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  u32(): number {
    return this.rng.unsafeNext() >>> 0;
  }

  chance(p: number): boolean {
    return (this.rng.unsafeNext() >>> 0) / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** A length that is usually small and now and then large: most bugs hide near the edges. */
  size(max: number): number {
    const r = this.int(8);
    if (r < 5) return this.int(Math.min(max, 16) + 1);
    if (r < 7) return this.int(Math.min(max, 256) + 1);
    return this.int(max + 1);
  }
}

/** Mixes the run's seed, a target's name and a case number into the case's own seed. */
export function caseSeed(seed: number, target: string, index: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b);
  for (let i = 0; i < target.length; i++) h = Math.imul(h ^ target.charCodeAt(i), 0xcc9e2d51);
  h = Math.imul(h ^ index, 0x1b873593) ^ Math.imul(index >>> 16, 0xe6546b64);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}
