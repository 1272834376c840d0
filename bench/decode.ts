// User-space cost of the per-request paths (--l7-per-request), without the
// kernel: ring records as the kernel writes them (httpflow: keep-alive
// exchanges on many connections; dnsflow: queries and their answers from a
// few client sockets) through the plugin's own handler and the line encoder,
// timed. For quick before/after comparisons.
//   node dist/bench/decode.js            (EXCHANGES=1000000 CONNECTIONS=50)
import * as dnsPacket from 'dns-packet';
import { DnsCache } from '../src/enrich/dns-cache';
import { DNS_EVENT } from '../src/plugins/dnsflow/decode';
import { DnsflowPlugin } from '../src/plugins/dnsflow/plugin';
import { HttpflowPlugin } from '../src/plugins/httpflow/plugin';
import { Writable } from 'node:stream';
import { LineEncoder } from '../src/output/lineprotocol';
import { StdoutOutput } from '../src/output/stdout';
import type { Point } from '../src/output/point';
import { HTTP_EVENT, HTTP_EXCHANGE, HTTP_REQUEST, HTTP_RESPONSE } from '../src/plugins/httpflow/decode';
import { TUPLE } from '../src/plugins/netflow/decode';
import type { NetflowPlugin } from '../src/plugins/netflow/plugin';

const EXCHANGES = Number(process.env.EXCHANGES ?? 1_000_000);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const BATCH = 4096; // records per drained chunk

/**
 * The whole path's end: the default output itself, every point through the
 * one encoder into its buffer, written (to nowhere) every 64 KiB.
 */
/** Back to the event loop between drained chunks, as the collector goes: the output's write callbacks run there. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

class StdoutLike {
  private readonly output = new StdoutOutput(
    new LineEncoder({ host: 'bench', service: 'ebpf' }),
    new Writable({ write: (_chunk, _encoding, done) => done() }),
  );
  private counted = 0;

  write(points: Point[]): void {
    this.output.write('network', points);
  }

  /** Lines written since the last count. */
  count(): number {
    void this.output.flush();
    const sent = this.output.stats().sent;
    const n = sent - this.counted;
    this.counted = sent;
    return n;
  }
}

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
export async function httpflowDecodeBench(paired: boolean): Promise<{ perSecond: number; nsPerExchange: number; lines: number }> {
  const plugin = new HttpflowPlugin({} as NetflowPlugin, { includeLoopback: false, cgroup2: () => '', perRequest: true });
  const out = new StdoutLike();
  const emit = (points: Point[]) => out.write(points);
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
  out.count(); // the warm-up's lines do not count
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    plugin.processEvents(chunk, bytes, emit);
    await tick();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  const exchanges = rounds * (BATCH / 2);
  return { perSecond: Math.round((exchanges / ns) * 1e9), nsPerExchange: ns / exchanges, lines: out.count() };
}

function dnsRecord(out: Buffer, at: number, ts: bigint, clientPort: number, payload: Buffer, response: boolean): number {
  const len = DNS_EVENT.payload + payload.length;
  out.writeUInt32LE(len, at);
  const e = at + 8;
  out.fill(0, e, e + DNS_EVENT.payload);
  out.writeBigUInt64LE(ts, e + DNS_EVENT.ts);
  const client = [198, 51, 100, 1];
  const server = [198, 51, 100, 2];
  out.set(response ? server : client, e + DNS_EVENT.saddr);
  out.set(response ? client : server, e + DNS_EVENT.daddr);
  out.writeUInt16LE(response ? 53 : clientPort, e + DNS_EVENT.sport);
  out.writeUInt16LE(response ? clientPort : 53, e + DNS_EVENT.dport);
  out.writeUInt16LE(2, e + DNS_EVENT.family);
  out[e + DNS_EVENT.proto] = 17;
  out[e + DNS_EVENT.is_response] = response ? 1 : 0;
  out.writeUInt16LE(payload.length, e + DNS_EVENT.len);
  out.writeUInt32LE(payload.length, e + DNS_EVENT.payload_len);
  payload.copy(out, e + DNS_EVENT.payload);
  return at + 8 + ((len + 7) & ~7);
}

/** Per query: a query and its answer record each, as dnsperf makes them (4 sockets, 3 questions, one name unknown). */
export async function dnsflowDecodeBench(): Promise<{ perSecond: number; nsPerQuery: number; lines: number }> {
  const plugin = new DnsflowPlugin({ includeLoopback: false, cgroup2: () => '', perQuery: true, cache: new DnsCache() });
  const out = new StdoutLike();
  const emit = (points: Point[]) => out.write(points);
  const questions = [
    { name: 'www.example.test', type: 'A', answers: [{ name: 'www.example.test', type: 'A', ttl: 300, data: '198.51.100.7' }], rcode: 'NOERROR' },
    { name: 'nx.example.test', type: 'A', answers: [], rcode: 'NXDOMAIN' },
    { name: 'www.example.test', type: 'AAAA', answers: [{ name: 'www.example.test', type: 'AAAA', ttl: 300, data: '2001:db8::7' }], rcode: 'NOERROR' },
  ] as const;
  const chunk = Buffer.alloc(BATCH * 256);
  const pairs = BATCH / 2;
  // ids move on each round so that no query is taken for a retry of an earlier one
  const build = (round: number): number => {
    let at = 0;
    for (let i = 0; i < pairs; i++) {
      const q = questions[i % questions.length];
      const id = (round * pairs + i) & 0xffff;
      const port = 40000 + (i % 4);
      const ts = 1_000_000_000_000n + BigInt(round * pairs + i) * 10_000n;
      const query = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: q.name, type: q.type }] });
      const answer = dnsPacket.encode({
        type: 'response',
        id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        rcode: q.rcode,
        questions: [{ name: q.name, type: q.type }],
        answers: q.answers.map((a) => ({ ...a })),
      } as dnsPacket.Packet);
      at = dnsRecord(chunk, at, ts, port, query, false);
      at = dnsRecord(chunk, at, ts + 150_000n, port, answer, true);
    }
    return at;
  };
  // 65,536 ids: 32 distinct chunks of 2,048 queries, built once
  const chunks = Array.from({ length: 65536 / pairs }, (_, r) => {
    const bytes = build(r);
    return { buf: Buffer.from(chunk.subarray(0, bytes)), bytes };
  });
  const rounds = Math.ceil(EXCHANGES / pairs);
  for (let r = 0; r < 64; r++) plugin.processEvents(chunks[r % chunks.length].buf, chunks[r % chunks.length].bytes, emit); // warm up
  out.count(); // the warm-up's lines do not count
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    plugin.processEvents(chunks[r % chunks.length].buf, chunks[r % chunks.length].bytes, emit);
    await tick();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  const queries = rounds * pairs;
  return { perSecond: Math.round((queries / ns) * 1e9), nsPerQuery: ns / queries, lines: out.count() };
}

async function main(): Promise<void> {
  for (const paired of [true, false]) {
    const r = await httpflowDecodeBench(paired);
    const how = paired ? 'one record per exchange' : 'request and response records';
    console.log(`httpflow user space, ${how}: ${r.perSecond} exchanges/s, ${r.nsPerExchange.toFixed(0)} ns per exchange (${r.lines} lines)`);
  }
  const d = await dnsflowDecodeBench();
  console.log(`dnsflow user space, a query and an answer record: ${d.perSecond} queries/s, ${d.nsPerQuery.toFixed(0)} ns per query (${d.lines} lines)`);
}

if (require.main === module) void main();
