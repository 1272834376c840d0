// httpflow: HTTP/1.x message starts as the kernel captures them, inside its
// ring records (struct http_event: requests, responses, and exchanges the
// kernel paired), through the per-request handler (pairing, tags, points and
// their lines), the aggregated mode's path records, and the request and
// status line parsers on their own.
import assert from 'node:assert/strict';
import { LineEncoder } from '../../../src/output/lineprotocol';
import type { Point } from '../../../src/output/point';
import { decodePathEvent } from '../../../src/plugins/httpflow/aggregate';
import { HTTP_CAPTURE, HTTP_EVENT, HTTP_EXCHANGE, HTTP_PATH_EVENT, HTTP_REQUEST, HTTP_RESPONSE, HTTP_STATUS_CAPTURE } from '../../../src/plugins/httpflow/decode';
import { MAX_PATH, parseRequestLine, parseStatusLine } from '../../../src/plugins/httpflow/parse';
import { HttpflowPlugin } from '../../../src/plugins/httpflow/plugin';
import { TUPLE } from '../../../src/plugins/netflow/decode';
import type { NetflowPlugin } from '../../../src/plugins/netflow/plugin';
import type { FuzzTarget } from '../harness';
import { checkLine } from '../influx-line';
import { mutate } from '../mutate';
import { Random } from '../random';
import { ringChunk } from './dns';

interface HttpRecord {
  /** The record's fixed part (HTTP_EVENT.data bytes). */
  head: Buffer;
  data: Buffer;
}

export interface HttpInput {
  records: HttpRecord[];
}

const latin1 = (s: string) => Buffer.from(s, 'latin1');

const REQUESTS = [
  'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /index.html?q=1&r=2 HTTP/1.1\r\nHost: 198.51.100.2\r\nUser-Agent: curl/8\r\n\r\n',
  'POST /api/items HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello',
  'PUT /a/b/c#frag HTTP/1.0\r\n\r\n',
  'HEAD /x HTTP/1.1\r\n\r\n',
  'DELETE /items/42 HTTP/1.1\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\n\r\n',
  'PATCH /p HTTP/1.1\r\n\r\n',
  'CONNECT example.test:443 HTTP/1.1\r\n\r\n',
  'TRACE / HTTP/1.1\r\n\r\n',
  `GET /${'long/'.repeat(300)} HTTP/1.1\r\n\r\n`,
  'GET /caf\u00c3\u00a9/\u00e4\u00b8\u00ad HTTP/1.1\r\n\r\n', // UTF-8 bytes, written as latin1
  `GET /${'\u00e2\u0082\u00ac'.repeat(400)} HTTP/1.1\r\n\r\n`, // euros past the path bound
  'GET /\u00ff\u00fe\u00c3 HTTP/1.1\r\n\r\n', // invalid UTF-8
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  'GET /\r\n',
].map(latin1);

const RESPONSES = [
  'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
  'HTTP/1.0 404 Not Found\r\n\r\n',
  'HTTP/1.1 500 Internal Server Error\r\n\r\n',
  'HTTP/1.1 101 Switching Protocols\r\n\r\n',
  'HTTP/1.1 302\r\nLocation: /\r\n\r\n',
  'HTTP/1.1 599 x\r\n\r\n',
  'HTTP/2 200\r\n\r\n',
].map(latin1);

const ALL = [...REQUESTS, ...RESPONSES];

/** A monotonic timestamp as the kernel stamps them: about now, now and then zero. */
function stamp(rng: Random, now: bigint): bigint {
  if (rng.chance(0.05)) return 0n;
  return now + BigInt(rng.range(-5_000_000, 5_000_000)) * 1000n;
}

function message(rng: Random, seeds: Buffer[]): Buffer {
  if (rng.chance(0.08)) return rng.bytes(rng.size(HTTP_CAPTURE + 64));
  const m = rng.pick(seeds);
  return rng.chance(0.6) ? mutate(rng, m, ALL, 6, HTTP_CAPTURE + 64) : m;
}

function record(rng: Random, kind: number, socket: bigint, tuple: Buffer, now: bigint, data: Buffer, status?: Buffer): HttpRecord {
  const h = Buffer.alloc(HTTP_EVENT.data);
  h.writeBigUInt64LE(stamp(rng, now), HTTP_EVENT.ts);
  h.writeBigUInt64LE(socket, HTTP_EVENT.sk);
  h.writeBigUInt64LE(stamp(rng, now), HTTP_EVENT.req_end_ts);
  h.writeBigUInt64LE(stamp(rng, now), HTTP_EVENT.req_ts);
  tuple.copy(h, HTTP_EVENT.t);
  h.writeUInt32LE(rng.chance(0.7) ? rng.range(1, 4_000_000) : 0, HTTP_EVENT.pid);
  h[HTTP_EVENT.kind] = rng.chance(0.95) ? kind : rng.int(256);
  h[HTTP_EVENT.egress] = rng.int(2);
  const captured = Math.min(data.length, HTTP_CAPTURE);
  h.writeUInt16LE(rng.chance(0.9) ? captured : rng.int(0x10000), HTTP_EVENT.len);
  (rng.chance(0.9) ? latin1(rng.pick(['curl', 'nginx', 'wrk', 'python3', 'a b,c=d', ''])) : rng.bytes(16)).copy(h, HTTP_EVENT.comm, 0, 16);
  status?.copy(h, HTTP_EVENT.status, 0, HTTP_STATUS_CAPTURE);
  return { head: h, data: data.subarray(0, rng.chance(0.95) ? HTTP_CAPTURE : HTTP_CAPTURE + 64) };
}

function tuple(rng: Random): Buffer {
  const t = Buffer.alloc(TUPLE.size);
  const kind = rng.int(4);
  if (kind === 0) {
    t.writeUInt16LE(2, TUPLE.family);
    t.set([198, 51, 100, 1], TUPLE.saddr);
    t.set([198, 51, 100, 2], TUPLE.daddr);
  } else if (kind === 1) {
    t.writeUInt16LE(10, TUPLE.family);
    t.set([0x20, 0x01, 0x0d, 0xb8], TUPLE.saddr);
    t.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], TUPLE.daddr);
  } else if (kind === 2) {
    // IPv4-mapped IPv6
    t.writeUInt16LE(10, TUPLE.family);
    t.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1], TUPLE.saddr);
    t.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3], TUPLE.daddr);
  } else {
    rng.bytes(TUPLE.size).copy(t);
  }
  t.writeUInt16LE(rng.chance(0.5) ? rng.range(32768, 60999) : rng.int(0x10000), TUPLE.sport);
  t.writeUInt16LE(rng.pick([80, 8080, 443, rng.int(0x10000)]), TUPLE.dport);
  t[TUPLE.proto] = 6;
  return t;
}

export function generateHttp(rng: Random): HttpInput {
  // the kernel's clock: 10 s to 24 days after boot (fixed by the case, so that it replays the same)
  const now = BigInt(rng.range(10_000, 2 ** 31)) * 1_000_000n;
  const sockets = Array.from({ length: rng.range(1, 3) }, () => ({ sk: 0xffff_8880_0000_0000n + BigInt(rng.u32()) * 64n, t: tuple(rng) }));
  const records: HttpRecord[] = [];
  const n = rng.range(1, 6);
  for (let i = 0; i < n; i++) {
    const s = rng.pick(sockets);
    const kind = rng.pick([HTTP_EXCHANGE, HTTP_EXCHANGE, HTTP_REQUEST, HTTP_RESPONSE]);
    if (kind === HTTP_EXCHANGE) records.push(record(rng, kind, s.sk, s.t, now, message(rng, REQUESTS), message(rng, RESPONSES)));
    else records.push(record(rng, kind, s.sk, s.t, now, message(rng, kind === HTTP_REQUEST ? REQUESTS : RESPONSES)));
  }
  return { records };
}

const METHODS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE']);

function checkParsers(data: Buffer): void {
  const r = parseRequestLine(data);
  if (r) {
    assert.ok(METHODS.has(r.method), r.method);
    assert.ok(r.version === '1.0' || r.version === '1.1');
    assert.ok(Buffer.byteLength(r.path) <= MAX_PATH, `path of ${Buffer.byteLength(r.path)} bytes`);
    assert.ok(!/[\u0000-\u0020\u007f?#]/.test(r.path), `path ${JSON.stringify(r.path)}`);
    assert.ok(data.toString('latin1').startsWith(`${r.method} `));
  }
  const s = parseStatusLine(data);
  if (s) {
    assert.ok(Number.isInteger(s.status) && s.status >= 100 && s.status <= 599, String(s.status));
    assert.ok(data.toString('latin1').startsWith(`HTTP/${s.version} ${s.status}`));
  }
}

export const httpTarget: FuzzTarget<HttpInput> = {
  name: 'http',
  describe: 'HTTP message starts in httpflow ring and path records: request/status lines, pairing, their lines',
  generate: generateHttp,
  run(input) {
    for (const r of input.records) {
      checkParsers(r.data);
      checkParsers(r.head.subarray(HTTP_EVENT.status, HTTP_EVENT.status + HTTP_STATUS_CAPTURE));
      // the same bytes as an aggregated-mode path record
      const p = Buffer.alloc(HTTP_PATH_EVENT.data + r.data.length);
      r.head.copy(p, 0, 0, HTTP_PATH_EVENT.data);
      r.data.copy(p, HTTP_PATH_EVENT.data);
      const path = decodePathEvent(p, 0, p.length);
      if (path) assert.ok(Buffer.byteLength(path.path) <= MAX_PATH);
    }
    const { buf, bytes } = ringChunk(input.records.map((r) => ({ head: r.head, payload: r.data })));
    const encoder = new LineEncoder({ host: 'fuzz', service: 'ebpf' });
    const plugin = new HttpflowPlugin({} as NetflowPlugin, { includeLoopback: false, cgroup2: () => '', perRequest: true });
    plugin.processEvents(buf, bytes, (points: Point[]) => {
      for (const pt of points) checkLine(encoder.encode(pt));
    });
  },
  save: (input) => JSON.stringify({ records: input.records.map((r) => ({ head: r.head.toString('hex'), data: r.data.toString('hex') })) }, null, 1),
  load(text) {
    const o = JSON.parse(text) as { records: { head: string; data: string }[] };
    return { records: o.records.map((r) => ({ head: Buffer.from(r.head, 'hex'), data: Buffer.from(r.data, 'hex') })) };
  },
};
