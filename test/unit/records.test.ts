// Ring-buffer records are handed over a chunk at a time: a record whose
// handler throws is lost alone, counted, and the rest of the chunk still counts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forEachRecord, recordFailures } from '../../src/bpf/native';

/** A chunk as the kernel's ring buffer lays it out: an 8-byte header, then data padded to 8. */
function chunk(payloads: number[][]): Buffer {
  const parts = payloads.map((p) => {
    const rec = Buffer.alloc(8 + ((p.length + 7) & ~7));
    rec.writeUInt32LE(p.length, 0);
    Buffer.from(p).copy(rec, 8);
    return rec;
  });
  return Buffer.concat(parts);
}

test('a record whose handler throws is counted; the others in its chunk are still handled', () => {
  const buf = chunk([[1], [2, 2], [3, 3, 3, 3, 3, 3, 3, 3, 3]]);
  const before = recordFailures().count;
  const seen: number[] = [];
  forEachRecord(buf, buf.length, (off, len) => {
    if (buf[off] === 2) throw new Error('bad record');
    seen.push(buf[off] * 100 + len);
  });
  assert.deepEqual(seen, [101, 309]);
  assert.equal(recordFailures().count, before + 1);
  assert.match(recordFailures().last, /^bad record \(/);
});
