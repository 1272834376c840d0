import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Exchange, HttpPairer } from '../../src/plugins/httpflow/pairing';
import { EventClock } from '../../src/timefmt';
import { MAX_PATH, parseRequestLine, parseStatusLine } from '../../src/plugins/httpflow/parse';

const b = (s: string) => Buffer.from(s, 'latin1');

test('request lines', () => {
  assert.deepEqual(parseRequestLine(b('GET /a/b?x=1#f HTTP/1.1\r\nHost: h\r\n\r\n')), { method: 'GET', path: '/a/b', version: '1.1' });
  assert.deepEqual(parseRequestLine(b('POST /submit HTTP/1.0\r\n')), { method: 'POST', path: '/submit', version: '1.0' });
  assert.deepEqual(parseRequestLine(b('OPTIONS * HTTP/1.1\r\n')), { method: 'OPTIONS', path: '*', version: '1.1' });
  assert.deepEqual(parseRequestLine(b('GET http://example.test/x HTTP/1.1\r\n')), { method: 'GET', path: 'http://example.test/x', version: '1.1' });
  assert.deepEqual(parseRequestLine(Buffer.from('GET /caf\u00e9 HTTP/1.1\r\n', 'utf8')), { method: 'GET', path: '/café', version: '1.1' });
});

test('malformed, truncated or foreign request lines are refused', () => {
  for (const s of [
    '', 'G', 'GET', 'GET /', 'GET / HTTP/1.1', // no line end within a short capture
    'GET / HTTP/2.0\r\n', 'PRI * HTTP/2.0\r\n', 'get / HTTP/1.1\r\n', 'FETCH / HTTP/1.1\r\n',
    'GET  HTTP/1.1\r\n', 'GET /a b HTTP/1.1\r\n', 'GET /\x00 HTTP/1.1\r\n', 'GET\r\n', '\x16\x03\x01\x02\x00',
  ]) {
    assert.equal(parseRequestLine(b(s)), undefined, JSON.stringify(s));
  }
});

test('a path longer than the capture is cut at 1024 bytes', () => {
  const long = `GET /${'p'.repeat(2000)}`;
  const r = parseRequestLine(b(long.slice(0, 1152)))!;
  assert.equal(r.method, 'GET');
  assert.equal(Buffer.byteLength(r.path), MAX_PATH);
  const multi = parseRequestLine(Buffer.from(`GET /${'é'.repeat(600)} HTTP/1.1\r\n`, 'utf8'))!;
  assert.ok(Buffer.byteLength(multi.path) <= MAX_PATH && !multi.path.includes('\ufffd'), 'no split character');
});

test('a request line is read within its record only', () => {
  const rec = b('GET /x HTTP/1.1\r\nHost: h\r\n');
  assert.equal(parseRequestLine(rec, 0, 10), undefined, 'its line end lies after the capture');
  assert.equal(parseRequestLine(rec, 0, 16), undefined, 'half of its line end');
  assert.deepEqual(parseRequestLine(rec, 0, 17), { method: 'GET', path: '/x', version: '1.1' });
});

test('recent paths: a repeated path is the same string, and no path is taken for another', () => {
  const first = parseRequestLine(b('GET /same HTTP/1.1\r\n'))!.path;
  assert.equal(parseRequestLine(b('POST /same?q HTTP/1.0\r\n'))!.path, first);
  // more paths than the table has slots, of equal lengths, many sharing a slot; each read twice, in two orders
  const paths = Array.from({ length: 10000 }, (_, i) => `/p${String(i).padStart(5, '0')}`);
  for (const order of [paths, [...paths].reverse()]) {
    for (const p of order) assert.equal(parseRequestLine(b(`GET ${p} HTTP/1.1\r\n`))!.path, p);
  }
  // a path that is the start of another, and UTF-8 at the table's size limit and beyond it
  assert.equal(parseRequestLine(b('GET /p0000 HTTP/1.1\r\n'))!.path, '/p0000');
  for (const n of [127, 128, 129]) {
    const p = `/${'é'.repeat((n - 1) >> 1)}${(n - 1) % 2 ? 'x' : ''}`;
    assert.equal(Buffer.byteLength(p), n);
    const line = Buffer.from(`GET ${p} HTTP/1.1\r\n`, 'utf8');
    assert.equal(parseRequestLine(line)!.path, p);
    assert.equal(parseRequestLine(line)!.path, p);
  }
});

test('status lines', () => {
  assert.deepEqual(parseStatusLine(b('HTTP/1.1 200 OK\r\n')), { version: '1.1', status: 200 });
  assert.deepEqual(parseStatusLine(b('HTTP/1.0 404 Not Found\r\n')), { version: '1.0', status: 404 });
  assert.deepEqual(parseStatusLine(b('HTTP/1.1 301')), { version: '1.1', status: 301 });
  for (const s of ['HTTP/1.1 99 x', 'HTTP/1.1 600 x', 'HTTP/2 200', 'HTTP/1.1 20', 'HTTP/1.1 2000', 'http/1.1 200 OK', 'HTTP']) {
    assert.equal(parseStatusLine(b(s)), undefined, s);
  }
});

test('fuzz: random and mutated bytes never throw', () => {
  let seed = 99;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const base = b('GET /index.html?q=1 HTTP/1.1\r\nHost: x\r\n\r\n');
  for (let i = 0; i < 20000; i++) {
    const buf = i % 2 ? Buffer.from(base) : Buffer.from(Array.from({ length: Math.floor(rand() * 1200) }, () => Math.floor(rand() * 256)));
    if (i % 2) for (let k = 0; k < 3; k++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
    const r = parseRequestLine(buf.subarray(0, Math.floor(rand() * (buf.length + 1))));
    if (r) assert.ok(Buffer.byteLength(r.path) <= MAX_PATH && (r.version === '1.0' || r.version === '1.1'));
    parseStatusLine(buf);
  }
});

const req = (path: string, seenNs: number, pid = 0) => new Exchange('GET', path, '1.1', seenNs, pid, 'x');

test('keep-alive and pipelining pair in order; latency from the end of the request', () => {
  const p = new HttpPairer();
  p.request(1, req('/a', 100, 7));
  let x = p.response(1, 200, 500, 150, 9)!;
  assert.deepEqual([x.path, x.status, x.latencyNs, x.pid], ['/a', 200, 350, 7]);
  p.request(1, req('/b', 1000)); // pipelined: two requests, then two responses
  p.request(1, req('/c', 1100));
  x = p.response(1, 404, 1300, 1100, 9)!;
  assert.deepEqual([x.path, x.status, x.latencyNs, x.pid], ['/b', 404, 300, 9]);
  x = p.response(1, 200, 1400, 1100, 9)!;
  assert.deepEqual([x.path, x.latencyNs], ['/c', 300]);
  assert.equal(p.response(1, 200, 1500, 0, 9), undefined);
  assert.equal(p.response(2, 200, 1500, 0, 9), undefined);
  assert.equal(p.counts.unmatched_responses, 2);
});

test('unanswered requests expire and are counted', () => {
  const p = new HttpPairer();
  p.request(3, req('/x', 0));
  p.request(4, req('/y', 50));
  p.expire(99, 100);
  assert.equal(p.pending, 2);
  p.expire(100, 100);
  assert.equal(p.pending, 1);
  assert.equal(p.counts.expired_requests, 1);
});

test('a closed connection lets its waiting requests go, counted; the address can then be another socket', () => {
  const p = new HttpPairer();
  p.request(5, req('/p1', 0));
  p.request(5, req('/p2', 10));
  p.closed(5);
  p.closed(6); // nothing waited there
  assert.deepEqual([p.pending, p.counts.closed_unanswered], [0, 2]);
  // a new socket at the same address starts afresh
  p.request(5, req('/q', 20));
  assert.equal(p.response(5, 204, 40, 30, 1)?.path, '/q');
});

test('requests waiting in all are bounded; beyond the bound they are counted, not kept', () => {
  const p = new HttpPairer(3);
  for (let conn = 0; conn < 5; conn++) p.request(conn, req(`/c${conn}`, conn));
  assert.deepEqual([p.pending, p.counts.queue_overflow], [3, 2]);
  p.response(0, 200, 10, 0, 1);
  p.request(9, req('/later', 11));
  assert.deepEqual([p.pending, p.counts.queue_overflow], [3, 2]);
});

test('event clock: kernel monotonic ns as exact Numbers, printed as wall-clock ns', () => {
  const clock = new EventClock();
  const now = process.hrtime.bigint();
  const buf = Buffer.alloc(16);
  buf.writeBigUInt64LE(now + 1_234_567_891n, 0);
  buf.writeBigUInt64LE(now - 5n, 8);
  const later = clock.read(buf, 0);
  const earlier = clock.read(buf, 8);
  assert.equal(later - earlier, 1_234_567_896, 'differences are exact');
  // the printed time is the wall clock, to the nanosecond of the offset measured at reset
  const wall = BigInt(clock.wallText(later));
  const expected = now + 1_234_567_891n + BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  assert.ok(wall - expected < 5_000_000n && expected - wall < 5_000_000n, `${wall} vs ${expected}`);
  // carries across a second boundary and pads the nanoseconds
  assert.match(clock.wallText(earlier), /^\d{19}$/);
  assert.equal(BigInt(clock.wallText(later)) - BigInt(clock.wallText(earlier)), 1_234_567_896n);
});
