// Strings of byte ranges that repeat (HTTP paths, DNS names): most requests
// repeat one seen a moment ago, and finding its string by a hash of its bytes
// costs less than decoding it again. The string found is the same object each
// time, whose hash V8 keeps for the maps it is looked up in next.

export const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

/** One more byte into an FNV-1a hash. */
export const fnvByte = (hash: number, c: number): number => Math.imul(hash ^ c, FNV_PRIME);

/** A fixed table: one string per slot, the newest; ranges longer than `maxBytes` are decoded every time. */
export class RecentStrings {
  private readonly bytes: Uint8Array;
  private readonly lengths: Int16Array;
  private readonly strings: string[];

  constructor(
    private readonly encoding: 'utf8' | 'latin1',
    readonly maxBytes = 128,
    private readonly slots = 4096, // a power of two
  ) {
    this.bytes = new Uint8Array(slots * maxBytes);
    this.lengths = new Int16Array(slots).fill(-1);
    this.strings = new Array<string>(slots).fill('');
  }

  /** The string of buf[start, end), whose FNV-1a hash (from fnvByte) is `hash`. */
  get(buf: Buffer, start: number, end: number, hash: number): string {
    const n = end - start;
    if (n > this.maxBytes) return buf.toString(this.encoding, start, end);
    const slot = (hash ^ (hash >>> 16)) & (this.slots - 1);
    const at = slot * this.maxBytes;
    if (this.lengths[slot] === n) {
      let i = 0;
      while (i < n && this.bytes[at + i] === buf[start + i]) i++;
      if (i === n) return this.strings[slot];
    }
    const s = buf.toString(this.encoding, start, end);
    this.bytes.set(buf.subarray(start, end), at);
    this.lengths[slot] = n;
    this.strings[slot] = s;
    return s;
  }
}
