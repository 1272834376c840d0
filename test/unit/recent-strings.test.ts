import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FNV_OFFSET, fnvByte, RecentStrings } from '../../src/plugins/recent-strings';
import { parseDnsMessage } from '../../src/plugins/dnsflow/message';

const hashOf = (b: Buffer, start: number, end: number) => {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = fnvByte(h, b[i]);
  return h;
};
const get = (t: RecentStrings, b: Buffer, start = 0, end = b.length) => t.get(b, start, end, hashOf(b, start, end));

test('recent strings: each range gives its own text, in a table of two slots where every range collides', () => {
  const t = new RecentStrings('utf8', 8, 2);
  const words = ['/a', '/b', '/ab', '/ba', '', '/é', '/a', 'x'.repeat(8), 'y'.repeat(9), 'y'.repeat(9)];
  for (let round = 0; round < 3; round++) {
    for (const w of round === 1 ? [...words].reverse() : words) assert.equal(get(t, Buffer.from(w)), w);
  }
  // the range, not the whole buffer
  const b = Buffer.from('xx/ab?yy');
  assert.equal(get(t, b, 2, 5), '/ab');
  assert.equal(get(t, b, 2, 4), '/a');
  // a slot that changes bytes after a string was made from it is never trusted: the table keeps its own copy
  const m = Buffer.from('/q');
  const first = get(t, m);
  m[1] = 0x72;
  assert.equal(first, '/q');
  assert.equal(get(t, m), '/r');
});

test('recent strings: a repeated range is the same string; latin1 keeps every byte', () => {
  const t = new RecentStrings('latin1');
  const b = Buffer.from([0x61, 0xe9, 0xff]);
  assert.equal(get(t, b), 'a\u00e9\u00ff');
  assert.equal(get(t, Buffer.from(b)), get(t, b));
});

test('DNS question names through the recent names: no name taken for another', () => {
  const query = (name: string, id: number) => {
    const labels = name.split('.').filter(Boolean);
    const body = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0, 0, 1, 0, 1])]);
    const head = Buffer.alloc(12);
    head.writeUInt16BE(id, 0);
    head.writeUInt16BE(1, 4);
    return Buffer.concat([head, body]);
  };
  // more names than the table has slots, all of one length
  const names = Array.from({ length: 10000 }, (_, i) => `h${String(i).padStart(5, '0')}.example.test`);
  for (const order of [names, [...names].reverse()]) {
    for (const n of order) assert.equal(parseDnsMessage(query(n, 1), 'udp')!.name, n);
  }
  assert.equal(parseDnsMessage(query('a.b', 2), 'udp')!.name, 'a.b');
  assert.equal(parseDnsMessage(query('ab', 3), 'udp')!.name, 'ab');
});
