import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpPairer } from '../../src/plugins/httpflow/pairing';
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

const req = (path: string, seenNs: bigint, pid = 0) => ({ method: 'GET', path, version: '1.1' as const, seenNs, pid, processName: 'x' });

test('keep-alive and pipelining pair in order; latency from the end of the request', () => {
  const p = new HttpPairer();
  p.request(1, req('/a', 100n, 7));
  let x = p.response(1, 200, 500n, 150n, 9)!;
  assert.deepEqual([x.path, x.status, x.latencyNs, x.pid], ['/a', 200, 350n, 7]);
  p.request(1, req('/b', 1000n)); // pipelined: two requests, then two responses
  p.request(1, req('/c', 1100n));
  x = p.response(1, 404, 1300n, 1100n, 9)!;
  assert.deepEqual([x.path, x.status, x.latencyNs, x.pid], ['/b', 404, 300n, 9]);
  x = p.response(1, 200, 1400n, 1100n, 9)!;
  assert.deepEqual([x.path, x.latencyNs], ['/c', 300n]);
  assert.equal(p.response(1, 200, 1500n, 0n, 9), undefined);
  assert.equal(p.response(2, 200, 1500n, 0n, 9), undefined);
  assert.equal(p.counts.unmatched_responses, 2);
});

test('unanswered requests expire and are counted', () => {
  const p = new HttpPairer();
  p.request(3, req('/x', 0n));
  p.request(4, req('/y', 50n));
  p.expire(99n, 100n);
  assert.equal(p.pending, 2);
  p.expire(100n, 100n);
  assert.equal(p.pending, 1);
  assert.equal(p.counts.expired_requests, 1);
});
