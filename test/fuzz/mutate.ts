// Generic mutations of bytes and text, the fuzzer's raw material: bit flips,
// interesting values, truncation, insertion, deletion, repetition and splicing
// with other seeds. Targets add their own structure-aware ones.
import { Random } from './random';

const INTERESTING_8 = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xfe, 0xff, 0x0a, 0x0d, 0x20, 0x22, 0x5c];
const INTERESTING_16 = [0x0000, 0x0001, 0x00ff, 0x0100, 0x7fff, 0x8000, 0xc000, 0xc00c, 0xfffe, 0xffff];
const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 0xffff];

/** One mutation of `buf` (a new buffer; `buf` is left as it is). `others`: seeds to splice from. */
export function mutateOnce(rng: Random, buf: Buffer, others: readonly Buffer[] = [], maxLen = 4096): Buffer {
  const b = Buffer.from(buf);
  const at = () => rng.int(b.length);
  switch (rng.int(13)) {
    case 0: // bit flip
      if (b.length) b[at()] ^= 1 << rng.int(8);
      return b;
    case 1: // random byte
      if (b.length) b[at()] = rng.int(256);
      return b;
    case 2: // interesting byte
      if (b.length) b[at()] = rng.pick(INTERESTING_8);
      return b;
    case 3: // interesting 16-bit value, either byte order
      if (b.length >= 2) {
        const i = rng.int(b.length - 1);
        const v = rng.pick(INTERESTING_16);
        if (rng.chance(0.5)) b.writeUInt16BE(v, i);
        else b.writeUInt16LE(v, i);
      }
      return b;
    case 4: // interesting 32-bit value
      if (b.length >= 4) b.writeUInt32LE(rng.pick(INTERESTING_32), rng.int(b.length - 3));
      return b;
    case 5: // truncate
      return b.subarray(0, rng.int(b.length + 1));
    case 6: // insert random bytes
      return cap(Buffer.concat([b.subarray(0, (rng.int(b.length + 1))), rng.bytes(rng.size(64)), b.subarray(rng.int(b.length + 1))]), maxLen);
    case 7: {
      // delete a range
      const i = rng.int(b.length + 1);
      return Buffer.concat([b.subarray(0, i), b.subarray(i + rng.size(b.length))]);
    }
    case 8: {
      // repeat a range
      const i = rng.int(b.length + 1);
      const part = b.subarray(i, i + rng.size(32));
      const copies = Array.from({ length: rng.size(64) }, () => part);
      return cap(Buffer.concat([b.subarray(0, i), ...copies, b.subarray(i)]), maxLen);
    }
    case 9: {
      // splice: the head of this one, the tail of another
      const other = others.length ? rng.pick(others) : b;
      return cap(Buffer.concat([b.subarray(0, rng.int(b.length + 1)), other.subarray(rng.int(other.length + 1))]), maxLen);
    }
    case 10: {
      // overwrite a range with part of another
      const other = others.length ? rng.pick(others) : b;
      if (!b.length || !other.length) return b;
      const from = rng.int(other.length);
      other.copy(b, at(), from, from + rng.size(32));
      return b;
    }
    case 11: // swap two bytes
      if (b.length >= 2) {
        const i = at();
        const j = at();
        [b[i], b[j]] = [b[j], b[i]];
      }
      return b;
    default: // add or subtract a little
      if (b.length) {
        const i = at();
        b[i] = (b[i] + rng.range(-16, 16)) & 0xff;
      }
      return b;
  }
}

/** 1 to `max` mutations in a row, fewer more often. */
export function mutate(rng: Random, buf: Buffer, others: readonly Buffer[] = [], max = 8, maxLen = 4096): Buffer {
  let b = buf;
  const n = 1 + rng.size(max - 1);
  for (let i = 0; i < n; i++) b = mutateOnce(rng, b, others, maxLen);
  return b;
}

function cap(b: Buffer, maxLen: number): Buffer {
  return b.length > maxLen ? b.subarray(0, maxLen) : b;
}

/** Characters that break escaping, framing or encoding when they are not handled. */
export const NASTY_CHARS = [
  '\n', '\r', '\r\n', '\t', '\0', ' ', ',', '=', '"', "'", '\\', '\\\\', '#', '[', ']', '{', '}', ':', ';', '.',
  '\u0085', '\u2028', '\u2029', '\ufeff', '\ufffd', '\u00e9', '\u4e2d', '\u{1f600}',
  '\ud800', '\udfff', '\udc00\ud800', '\x7f', '\x1b', '%', '$', '-', '--', 'true', 'NaN', '1e309', '-0',
];

/** One mutation of text: characters and tokens inserted, spans deleted, repeated or spliced. */
export function mutateTextOnce(rng: Random, s: string, dictionary: readonly string[], others: readonly string[] = [], maxLen = 8192): string {
  const at = () => rng.int(s.length + 1);
  let out: string;
  switch (rng.int(9)) {
    case 0: {
      const i = at();
      out = s.slice(0, i) + rng.pick(dictionary) + s.slice(i);
      break;
    }
    case 1: {
      const i = at();
      out = s.slice(0, i) + rng.pick(NASTY_CHARS) + s.slice(i);
      break;
    }
    case 2: {
      const i = at();
      out = s.slice(0, i) + s.slice(i + rng.size(s.length));
      break;
    }
    case 3: {
      const i = at();
      const part = s.slice(i, i + rng.size(64));
      out = s.slice(0, i) + part.repeat(1 + rng.size(64)) + s.slice(i);
      break;
    }
    case 4: {
      const other = others.length ? rng.pick(others) : s;
      out = s.slice(0, at()) + other.slice(rng.int(other.length + 1));
      break;
    }
    case 5: {
      // replace one character
      const i = rng.int(s.length);
      out = s.slice(0, i) + String.fromCharCode(rng.chance(0.5) ? rng.int(128) : rng.int(0x10000)) + s.slice(i + 1);
      break;
    }
    case 6: {
      // swap two lines
      const lines = s.split('\n');
      const i = rng.int(lines.length);
      const j = rng.int(lines.length);
      [lines[i], lines[j]] = [lines[j], lines[i]];
      out = lines.join('\n');
      break;
    }
    case 7:
      out = s.slice(0, at());
      break;
    default: {
      // a whole line of another text
      const other = others.length ? rng.pick(others) : s;
      const lines = other.split('\n');
      const i = at();
      out = s.slice(0, i) + rng.pick(lines) + '\n' + s.slice(i);
    }
  }
  return out.length > maxLen ? out.slice(0, maxLen) : out;
}

export function mutateText(rng: Random, s: string, dictionary: readonly string[], others: readonly string[] = [], max = 6, maxLen = 8192): string {
  let out = s;
  const n = 1 + rng.size(max - 1);
  for (let i = 0; i < n; i++) out = mutateTextOnce(rng, out, dictionary, others, maxLen);
  return out;
}
