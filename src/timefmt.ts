// Time helpers: kernel monotonic timestamps to wall clock, and Go's RFC 3339.

import type { WallTime } from './output/point';

/** Below this, two measurements of the offset differ by the wall clock's 1 ms resolution, not a step. */
const STEP_NOISE_NS = 2_000_000n;

/**
 * Wall-clock ns minus CLOCK_MONOTONIC ns (what bpf_ktime_get_ns returns).
 * The monotonic clock never jumps; the wall clock does when it is set (an NTP
 * step, `date -s`), so the offset is measured again at every report and at
 * every event flush: points made after that carry the new time. One instance
 * is shared by every plugin that stamps kernel events.
 */
export class WallClock {
  offsetNs: bigint;
  /** Grows whenever offsetNs changes: for holders of values derived from it. */
  generation = 0;

  constructor(
    private readonly wallMs: () => number = Date.now,
    readonly monotonicNs: () => bigint = process.hrtime.bigint,
  ) {
    this.offsetNs = this.measure();
  }

  private measure(): bigint {
    return BigInt(this.wallMs()) * 1_000_000n - this.monotonicNs();
  }

  /** Measures the offset again; returns by how much the wall clock was stepped (0n: it was not). */
  refresh(): bigint {
    const step = this.measure() - this.offsetNs;
    if (step > -STEP_NOISE_NS && step < STEP_NOISE_NS) return 0n;
    this.offsetNs += step;
    this.generation++;
    return step;
  }

  /** Wall-clock ns since the epoch of a kernel monotonic time. */
  toWallNs(monotonicNs: bigint): bigint {
    return monotonicNs + this.offsetNs;
  }
}

/** The offset the plugins stamp kernel events with; the collector refreshes it. */
export const wallClock = new WallClock();

const TWO_32 = 4294967296;

/**
 * Kernel CLOCK_MONOTONIC timestamps as plain Numbers: ns since a base taken
 * when the clock is made, exact for 104 days after it (a Number holds 2^53).
 * Hot paths then do their arithmetic without BigInt, and turn a time into a
 * line-protocol timestamp (wall-clock ns) only when they print it, with the
 * wall clock's current offset.
 */
export class EventClock {
  private baseHi = 0;
  private baseLo = 0;
  private base = 0n;
  private wallSec = 0;
  private wallSub = 0;
  private generation = -1;
  private readonly parts: [number, number] = [0, 0];

  constructor(private readonly wall: WallClock = wallClock) {
    this.reset();
  }

  /** Takes a new base: times read before are no longer comparable with those after. */
  reset(): void {
    this.base = this.wall.monotonicNs();
    this.baseHi = Number(this.base >> 32n);
    this.baseLo = Number(this.base & 0xffffffffn);
    this.rebaseWall();
  }

  /** The wall-clock time of the base, from the wall clock's offset as it is now. */
  private rebaseWall(): void {
    const wall = this.wall.toWallNs(this.base);
    this.wallSec = Number(wall / 1_000_000_000n);
    this.wallSub = Number(wall % 1_000_000_000n);
    this.generation = this.wall.generation;
  }

  /** The little-endian u64 monotonic ns at buf[off], relative to the base. */
  read(buf: Buffer, off: number): number {
    return (buf.readUInt32LE(off + 4) - this.baseHi) * TWO_32 + (buf.readUInt32LE(off) - this.baseLo);
  }

  /** Now, relative to the base. */
  now(): number {
    return Number(this.wall.monotonicNs() - this.base);
  }

  /** Wall-clock time of a relative time, as seconds and nanoseconds: no bigint to make per point. */
  wallTime(rel: number): WallTime {
    const [sec, sub] = this.wallParts(rel);
    return { sec, nsec: sub };
  }

  /** Wall-clock ns since the epoch of a relative time, as decimal text. */
  wallText(rel: number): string {
    const [sec, sub] = this.wallParts(rel);
    return `${sec}${String(sub).padStart(9, '0')}`;
  }

  /** Seconds and nanoseconds of the wall-clock time of a relative time. */
  private wallParts(rel: number): [number, number] {
    if (this.generation !== this.wall.generation) this.rebaseWall();
    const relSec = Math.floor(rel / 1e9);
    let sub = rel - relSec * 1e9 + this.wallSub;
    let sec = this.wallSec + relSec;
    if (sub >= 1e9) {
      sub -= 1e9;
      sec++;
    }
    this.parts[0] = sec;
    this.parts[1] = sub;
    return this.parts;
  }
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** Go's time.RFC3339 ("2006-01-02T15:04:05Z07:00") in local time, second precision. */
export function rfc3339(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${zone}`
  );
}
