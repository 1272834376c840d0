// Time helpers: kernel monotonic timestamps to wall clock, and Go's RFC 3339.

/** Wall-clock ns minus CLOCK_MONOTONIC ns (what bpf_ktime_get_ns returns), measured now. */
export function monotonicToWallOffsetNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
}

const TWO_32 = 4294967296;

/**
 * Kernel CLOCK_MONOTONIC timestamps as plain Numbers: ns since a base taken
 * when the clock is made, exact for 104 days after it (a Number holds 2^53).
 * Hot paths then do their arithmetic without BigInt, and turn a time into a
 * line-protocol timestamp (wall-clock ns) only when they print it.
 */
export class EventClock {
  private baseHi = 0;
  private baseLo = 0;
  private base = 0n;
  private wallSec = 0;
  private wallSub = 0;

  constructor() {
    this.reset();
  }

  /** Re-reads both clocks (the wall clock may have been set since). */
  reset(): void {
    this.base = process.hrtime.bigint();
    this.baseHi = Number(this.base >> 32n);
    this.baseLo = Number(this.base & 0xffffffffn);
    const wall = this.base + monotonicToWallOffsetNs();
    this.wallSec = Number(wall / 1_000_000_000n);
    this.wallSub = Number(wall % 1_000_000_000n);
  }

  /** The little-endian u64 monotonic ns at buf[off], relative to the base. */
  read(buf: Buffer, off: number): number {
    return (buf.readUInt32LE(off + 4) - this.baseHi) * TWO_32 + (buf.readUInt32LE(off) - this.baseLo);
  }

  /** Now, relative to the base. */
  now(): number {
    return Number(process.hrtime.bigint() - this.base);
  }

  /** Wall-clock ns since the epoch of a relative time. */
  wallNs(rel: number): bigint {
    return BigInt(this.wallText(rel));
  }

  /** Wall-clock ns since the epoch of a relative time, as decimal text. */
  wallText(rel: number): string {
    const relSec = Math.floor(rel / 1e9);
    let sub = rel - relSec * 1e9 + this.wallSub;
    let sec = this.wallSec + relSec;
    if (sub >= 1e9) {
      sub -= 1e9;
      sec++;
    }
    return `${sec}${String(sub).padStart(9, '0')}`;
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
