import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import { encodePoint, encodePoints, LineEncoder, LineWriter } from '../../src/output/lineprotocol';
import { StdoutOutput } from '../../src/output/stdout';
import { unixNs, type Point } from '../../src/output/point';

const p = (over: Partial<Point>): Point => ({ measurement: 'm', tags: {}, fields: { v: 1 }, time: 5n, ...over });

test('integers, bigints, floats, booleans and strings', () => {
  assert.equal(
    encodePoint(p({ fields: { i: 42, b: 9007199254740993n, f: { float: 1.5 }, g: { float: 2 }, t: true, u: false, s: 'x' } })),
    'm i=42i,b=9007199254740993i,f=1.5,g=2,t=true,u=false,s="x" 5',
  );
});

test('tags are sorted and empty ones left out', () => {
  assert.equal(encodePoint(p({ tags: { z: '1', a: '2', empty: '', none: undefined } })), 'm,a=2,z=1 v=1i 5');
});

test('escaping of measurement, tag keys and values, field keys and strings', () => {
  assert.equal(encodePoint(p({ measurement: 'a b,c=d' })), 'a\\ b\\,c=d v=1i 5');
  assert.equal(encodePoint(p({ tags: { 'k ,=': 'v ,="' } })), 'm,k\\ \\,\\==v\\ \\,\\=" v=1i 5');
  assert.equal(encodePoint(p({ fields: { 'f ,=': 's "q" \\ end' } })), 'm f\\ \\,\\=="s \\"q\\" \\\\ end" 5');
});

test('no raw newline ever: CR and LF become visible escapes', () => {
  const line = encodePoint(p({ tags: { t: 'a\nb' }, fields: { s: 'x\r\ny' } }));
  assert.equal(line, 'm,t=a\\nb s="x\\\\r\\\\ny" 5');
  assert.ok(!/[\r\n]/.test(line));
});

test('a tag value ending in a backslash stays parseable', () => {
  assert.equal(encodePoint(p({ tags: { a: 'x\\', b: 'y' } })), 'm,a=x\\\\ ,b=y v=1i 5');
});

test('a measurement ending in a backslash stays parseable', () => {
  assert.equal(encodePoint(p({ measurement: 'm\\', tags: { a: 'b' } })), 'm\\\\ ,a=b v=1i 5');
});

test('what InfluxDB cannot read is refused, in a message of one line', () => {
  assert.throws(() => encodePoint(p({ fields: { v: 2n ** 63n } })), /^TypeError: field "v": integer field is out of the int64 range: 9223372036854775808$/);
  assert.equal(encodePoint(p({ fields: { v: -(2n ** 63n) } })), 'm v=-9223372036854775808i 5');
  assert.throws(() => encodePoint(p({ fields: { '': 1 } })), /^TypeError: a field has an empty key$/);
  assert.throws(() => encodePoint(p({ tags: { '': 'x' } })), /^TypeError: point "m": a tag has an empty key$/);
  assert.throws(() => encodePoint(p({ measurement: '' })), /^TypeError: measurement "" cannot be written$/);
  assert.throws(() => encodePoint(p({ measurement: '#m' })), /^TypeError: measurement "#m" cannot be written$/);
  assert.throws(() => encodePoint(p({ fields: { 'a\nb': NaN } })), /^TypeError: field "a\\nb": integer field is not a safe integer: NaN$/);
  // in the fields a backslash takes the next character: before , = space " or at the end it has no encoding
  for (const key of ['k\\', 'k\\=x', 'k\\,x', 'k\\ x', 'k\\"x']) assert.throws(() => encodePoint(p({ fields: { [key]: 1 } })), /cannot be written/, key);
  assert.equal(encodePoint(p({ fields: { 'k\\x': 1 } })), 'm k\\x=1i 5');
});

test('bad values are refused', () => {
  assert.throws(() => encodePoint(p({ fields: { v: 1.5 } })), /not a safe integer/);
  assert.throws(() => encodePoint(p({ fields: { v: NaN } })), /not a safe integer/);
  assert.throws(() => encodePoint(p({ fields: { v: { float: Infinity } } })), /not finite/);
  assert.throws(() => encodePoint(p({ fields: {} })), /no fields/);
});

test('points joined by newlines', () => {
  assert.equal(encodePoints([p({}), p({ time: 6n })]), 'm v=1i 5\nm v=1i 6');
});

test('an output skips a point line protocol cannot carry, counts it, and writes the others of the batch', async () => {
  const encoder = new LineEncoder({ host: 'h' });
  const written: string[] = [];
  const stream = new Writable({ write: (chunk, _enc, done) => (written.push(String(chunk)), done()) });
  const out = new StdoutOutput(encoder, stream);
  const ok = (n: number): Point => ({ measurement: 'm', tags: {}, fields: { n }, time: 1n });
  const bad: Point = { measurement: 'm', tags: {}, fields: { '': 1 }, time: 1n }; // an empty field key
  out.write('network', [ok(1), bad, ok(2)]);
  await out.flush();
  assert.equal(written.join(''), 'm,host=h n=1i 1\nm,host=h n=2i 1\n');
  assert.equal(out.stats().unencodable, 1);
  assert.match(encoder.lastRefusal, /empty key/);
});

test('integers of every size are written digit for digit, as their decimal text', () => {
  const values = [0, -0, 7, 9, 10, 99, 100, 12345, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 5, 1e15 + 3, Number.MAX_SAFE_INTEGER, -1, -(2 ** 31), -Number.MAX_SAFE_INTEGER];
  // every count of digits, at both of its ends
  for (let k = 1; k <= 15; k++) values.push(10 ** k - 1, 10 ** k, -(10 ** k));
  for (const v of values) assert.equal(encodePoint(p({ fields: { v } })), `m v=${v}i 5`, String(v));
});

test('a time as seconds and nanoseconds is written as the one integer of nanoseconds', () => {
  for (const [sec, nsec] of [[1_700_000_000, 250_000_007], [1_700_000_000, 0], [1_700_000_000, 999_999_999], [1, 5], [0, 5], [0, 0], [0, 123_456_789]]) {
    const ns = BigInt(sec) * 1_000_000_000n + BigInt(nsec);
    assert.equal(encodePoint(p({ time: { sec, nsec } })), encodePoint(p({ time: ns })), `${sec} s ${nsec} ns`);
    assert.equal(unixNs({ sec, nsec }), ns);
  }
  for (const time of [{ sec: -1, nsec: 0 }, { sec: 1, nsec: 1e9 }, { sec: 1, nsec: -1 }, { sec: 1.5, nsec: 0 }, { sec: 1, nsec: 0.5 }, { sec: NaN, nsec: 0 }]) {
    assert.throws(() => encodePoint(p({ time })), /time is not seconds and nanoseconds/, JSON.stringify(time));
  }
});

test('lines go into one growing byte buffer; a refused point leaves nothing of itself in it', () => {
  const enc = new LineEncoder({ host: 'h' });
  const w = new LineWriter(16); // smaller than one line: it grows
  const long = 'é/'.repeat(3000); // two-byte characters
  assert.equal(enc.encodeInto(p({ fields: { s: long } }), w), true);
  assert.equal(enc.encodeInto(p({ fields: { ok: 1, bad: NaN } }), w), false);
  assert.equal(enc.encodeInto(p({ time: 6n }), w), true);
  assert.equal(w.lines, 2);
  assert.equal(w.bytes.toString('utf8', 0, w.length), `m,host=h s="${long}" 5\nm,host=h v=1i 6\n`);
  assert.equal(enc.refused, 1);
  const { bytes, lines } = w.take();
  assert.equal(lines, 2);
  assert.equal(bytes.length, Buffer.byteLength(`m,host=h s="${long}" 5\nm,host=h v=1i 6\n`));
  assert.equal(w.length, 0);
  assert.equal(w.lines, 0);
});

test('a tags object reused for another measurement is not taken for the first one\'s series', () => {
  const enc = new LineEncoder({});
  const tags = { a: '1' };
  assert.equal(enc.encode(p({ measurement: 'one', tags })), 'one,a=1 v=1i 5');
  assert.equal(enc.encode(p({ measurement: 'two', tags })), 'two,a=1 v=1i 5');
});
