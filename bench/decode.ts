// User-space cost of httpflow's hot path, without the kernel: ring records as
// the kernel writes them (keep-alive exchanges on many connections) through
// the plugin's own handler, timed. For quick before/after comparisons.
//   node dist/bench/decode.js            (EXCHANGES=1000000 CONNECTIONS=50)
import { HttpflowPlugin } from '../src/plugins/httpflow/plugin';
import { LineEncoder } from '../src/output/lineprotocol';
import type { Point } from '../src/output/point';
import { HTTP_EVENT, HTTP_EXCHANGE, HTTP_REQUEST, HTTP_RESPONSE } from '../src/plugins/httpflow/decode';
import { TUPLE } from '../src/plugins/netflow/decode';
import type { NetflowPlugin } from '../src/plugins/netflow/plugin';

const EXCHANGES = Number(process.env.EXCHANGES ?? 1_000_000);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const BATCH = 4096; // records per drained chunk

function record(out: Buffer, at: number, kind: number, conn: number, ts: bigint, data: string, status = ''): number {
  const len = HTTP_EVENT.data + data.length;
  out.writeUInt32LE(len, at);
  const e = at + 8;
  out.fill(0, e, e + HTTP_EVENT.data);
  out.writeBigUInt64LE(ts, e + HTTP_EVENT.ts);
  out.writeBigUInt64LE(0xffff_8880_0000_0000n + BigInt(conn) * 4096n, e + HTTP_EVENT.sk);
  out.writeBigUInt64LE(kind === HTTP_REQUEST ? 0n : ts - 20_000n, e + HTTP_EVENT.req_end_ts);
  out.writeBigUInt64LE(kind === HTTP_EXCHANGE ? ts - 30_000n : 0n, e + HTTP_EVENT.req_ts);
  out.write(status, e + HTTP_EVENT.status, 'latin1');
  const t = e + HTTP_EVENT.t;
  out.writeUInt16LE(2, t + TUPLE.family);
  out[t + TUPLE.proto] = 6;
  out.set([198, 51, 100, 1], t + TUPLE.saddr);
  out.set([198, 51, 100, 2], t + TUPLE.daddr);
  out.writeUInt16LE(40000 + conn, t + TUPLE.sport);
  out.writeUInt16LE(80, t + TUPLE.dport);
  out.writeUInt32LE(4242, e + HTTP_EVENT.pid);
  out[e + HTTP_EVENT.kind] = kind;
  out[e + HTTP_EVENT.egress] = kind === HTTP_REQUEST ? 1 : 0; // the client's view
  out.writeUInt16LE(data.length, e + HTTP_EVENT.len);
  out.write('wrk', e + HTTP_EVENT.comm, 'latin1');
  out.write(data, e + HTTP_EVENT.data, 'latin1');
  return at + 8 + ((len + 7) & ~7);
}

/** `paired`: one record per exchange, as the kernel sends one request at a time; else a request and a response record. */
export function httpflowDecodeBench(paired: boolean): { perSecond: number; nsPerExchange: number; lines: number } {
  const plugin = new HttpflowPlugin({} as NetflowPlugin, { includeLoopback: false, cgroup2: () => '', perRequest: true });
  let lines = 0;
  // the whole path, through the one encoder to a line
  const encoder = new LineEncoder({ host: 'bench', service: 'ebpf' });
  const emit = (points: Point[]) => {
    for (const p of points) if (encoder.encode(p)) lines++;
  };
  // one chunk of BATCH/2 exchanges, replayed with fresh timestamps
  const chunk = Buffer.alloc(BATCH * 256);
  const build = (round: number): number => {
    let at = 0;
    for (let i = 0; i < BATCH / 2; i++) {
      const conn = i % CONNECTIONS;
      const ts = 1_000_000_000_000n + BigInt(round * BATCH + i * 2) * 1000n;
      const request = `GET /api/items/${i % 7}?page=2 HTTP/1.1\r\nHost: 198.51.100.2\r\n\r\n`;
      if (paired) {
        at = record(chunk, at, HTTP_EXCHANGE, conn, ts + 500n, request, 'HTTP/1.1 200 OK');
        continue;
      }
      at = record(chunk, at, HTTP_REQUEST, conn, ts, request);
      at = record(chunk, at, HTTP_RESPONSE, conn, ts + 500n, 'HTTP/1.1 200 OK');
    }
    return at;
  };
  const rounds = Math.ceil(EXCHANGES / (BATCH / 2));
  const bytes = build(0);
  for (let r = 0; r < 20; r++) plugin.processEvents(chunk, bytes, emit); // warm up
  lines = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) plugin.processEvents(chunk, bytes, emit);
  const ns = Number(process.hrtime.bigint() - t0);
  const exchanges = rounds * (BATCH / 2);
  return { perSecond: Math.round((exchanges / ns) * 1e9), nsPerExchange: ns / exchanges, lines };
}

if (require.main === module) {
  for (const paired of [true, false]) {
    const r = httpflowDecodeBench(paired);
    const how = paired ? 'one record per exchange' : 'request and response records';
    console.log(`httpflow user space, ${how}: ${r.perSecond} exchanges/s, ${r.nsPerExchange.toFixed(0)} ns per exchange (${r.lines} lines)`);
  }
}
