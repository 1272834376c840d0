// The aggregated modes: series the kernel summed (struct dns_series_key,
// dns_query_key with dns_query for timeouts, http_series_key, each with a
// struct latency_series), decoded into points and their lines. The keys hold
// what the kernel read from packets (query type, rcode, method, status,
// version, name and path hashes); the counters stay within what the kernel
// can count (latencies below 2^40 ns, sums below 2^51), the histogram is any
// u32s, as a read racing an update may see.
import assert from 'node:assert/strict';
import { HIST_BUCKETS, bucketOf } from '../../../src/aggregate/histogram';
import { LATENCY_SERIES, latencyStats } from '../../../src/aggregate/series';
import { LineEncoder } from '../../../src/output/lineprotocol';
import { decodeDnsSeries, decodeDnsTimeout } from '../../../src/plugins/dnsflow/aggregate';
import { DNS_QUERY, DNS_QUERY_KEY, DNS_SERIES_KEY } from '../../../src/plugins/dnsflow/decode';
import { dnsSeriesPoint } from '../../../src/plugins/dnsflow/plugin';
import { decodeHttpSeries } from '../../../src/plugins/httpflow/aggregate';
import { HTTP_SERIES_KEY } from '../../../src/plugins/httpflow/decode';
import { seriesPoint } from '../../../src/plugins/httpflow/plugin';
import type { FuzzTarget } from '../harness';
import { checkLine } from '../influx-line';
import { mutate, NASTY_CHARS } from '../mutate';
import { Random } from '../random';

const VALUE_SIZE = LATENCY_SERIES.hist + HIST_BUCKETS * 4;

export interface SeriesInput {
  kind: 'dns' | 'dns-timeout' | 'http';
  key: Buffer;
  value: Buffer;
  /** What user space learnt for the key's name or path hash; undefined: never arrived. */
  text?: string;
}

function latencyValue(rng: Random): Buffer {
  const v = Buffer.alloc(VALUE_SIZE);
  const n = rng.chance(0.1) ? 0 : rng.size(2000);
  let sum = 0;
  let max = 0;
  // up to 24 distinct latencies, the count shared among them
  const distinct = Math.min(n, 24);
  for (let i = 0; i < distinct; i++) {
    const times = Math.floor(n / distinct) + (i < n % distinct ? 1 : 0);
    const ns = rng.chance(0.9) ? rng.range(0, 200_000_000) : rng.range(0, 2 ** 31) * rng.range(1, 2 ** 9);
    sum += ns * times;
    max = Math.max(max, ns);
    const b = bucketOf(ns) * 4 + LATENCY_SERIES.hist;
    v.writeUInt32LE(v.readUInt32LE(b) + times, b);
  }
  v.writeBigUInt64LE(BigInt(n), LATENCY_SERIES.count);
  v.writeBigUInt64LE(BigInt(sum), LATENCY_SERIES.latency_sum);
  v.writeBigUInt64LE(BigInt(max), LATENCY_SERIES.latency_max);
  if (rng.chance(0.3)) {
    // a read that raced updates: buckets, count and maximum disagree
    for (let k = rng.range(1, 8); k > 0; k--) v.writeUInt32LE(rng.chance(0.5) ? rng.u32() : rng.int(8), LATENCY_SERIES.hist + rng.int(HIST_BUCKETS) * 4);
    if (rng.chance(0.3)) v.writeBigUInt64LE(BigInt(rng.range(0, 2 ** 30)) * BigInt(rng.range(0, 2 ** 20)), LATENCY_SERIES.latency_max);
    if (rng.chance(0.3)) v.writeBigUInt64LE(BigInt(rng.size(5000)), LATENCY_SERIES.count);
  }
  return v;
}

function ends(rng: Random, key: Buffer, a: number, b: number, family: number): void {
  const v4 = rng.chance(0.6);
  key.writeUInt16LE(rng.chance(0.95) ? (v4 ? 2 : 10) : rng.int(0x10000), family);
  if (v4) {
    key.set([198, 51, 100, rng.int(256)], a);
    key.set([192, 0, 2, rng.int(256)], b);
  } else {
    rng.bytes(16).copy(key, a);
    rng.bytes(16).copy(key, b);
  }
}

const comm = (rng: Random) => (rng.chance(0.8) ? Buffer.from(rng.pick(['dig', 'curl', 'nginx', 'systemd-resolve', 'a,b c=d"\\'])) : rng.bytes(16));

function text(rng: Random): string | undefined {
  if (rng.chance(0.1)) return undefined;
  const parts = Array.from({ length: rng.range(1, 6) }, () => (rng.chance(0.3) ? rng.pick(NASTY_CHARS) : rng.pick(['www', 'example', 'test', '/api/items', 'a', '']).repeat(rng.range(1, 3))));
  return parts.join(rng.pick(['.', '/', '']));
}

export function generateSeries(rng: Random): SeriesInput {
  const kind = rng.pick(['dns', 'dns-timeout', 'http'] as const);
  let key: Buffer;
  let value: Buffer;
  if (kind === 'dns') {
    key = Buffer.alloc(DNS_SERIES_KEY.size);
    ends(rng, key, DNS_SERIES_KEY.client, DNS_SERIES_KEY.server, DNS_SERIES_KEY.family);
    key.writeUInt16LE(rng.chance(0.5) ? 0 : rng.int(0x10000), DNS_SERIES_KEY.client_port);
    key.writeUInt16LE(rng.chance(0.9) ? 53 : rng.int(0x10000), DNS_SERIES_KEY.server_port);
    key[DNS_SERIES_KEY.proto] = rng.pick([17, 6, rng.int(256)]);
    key[DNS_SERIES_KEY.rcode] = rng.chance(0.8) ? rng.int(16) : rng.int(256);
    key.writeUInt16LE(rng.chance(0.7) ? rng.pick([1, 28, 5, 16, 255]) : rng.int(0x10000), DNS_SERIES_KEY.qtype);
    key.writeUInt32LE(rng.chance(0.5) ? 0 : rng.u32(), DNS_SERIES_KEY.pid);
    key.writeBigUInt64LE(rng.chance(0.1) ? 0n : BigInt(rng.u32()) + 1n, DNS_SERIES_KEY.name);
    comm(rng).copy(key, DNS_SERIES_KEY.comm, 0, 16);
    value = latencyValue(rng);
  } else if (kind === 'dns-timeout') {
    key = Buffer.alloc(DNS_QUERY_KEY.size);
    ends(rng, key, DNS_QUERY_KEY.client, DNS_QUERY_KEY.server, DNS_QUERY_KEY.family);
    key.writeUInt16LE(rng.int(0x10000), DNS_QUERY_KEY.client_port);
    key.writeUInt16LE(rng.chance(0.9) ? 53 : rng.int(0x10000), DNS_QUERY_KEY.server_port);
    key[DNS_QUERY_KEY.proto] = rng.pick([17, 6, rng.int(256)]);
    key.writeUInt16LE(rng.int(0x10000), DNS_QUERY_KEY.id);
    value = Buffer.alloc(DNS_QUERY.size);
    value.writeBigUInt64LE(BigInt(rng.u32()) * 1000n, DNS_QUERY.ts);
    value.writeBigUInt64LE(rng.chance(0.1) ? 0n : BigInt(rng.u32()) + 1n, DNS_QUERY.name);
    value.writeUInt16LE(rng.int(0x10000), DNS_QUERY.qtype);
  } else {
    key = Buffer.alloc(HTTP_SERIES_KEY.size);
    ends(rng, key, HTTP_SERIES_KEY.saddr, HTTP_SERIES_KEY.daddr, HTTP_SERIES_KEY.family);
    key.writeUInt16LE(rng.int(0x10000), HTTP_SERIES_KEY.sport);
    key.writeUInt16LE(rng.pick([80, 443, 8080, rng.int(0x10000)]), HTTP_SERIES_KEY.dport);
    key[HTTP_SERIES_KEY.server] = rng.int(2);
    key[HTTP_SERIES_KEY.method] = rng.chance(0.8) ? rng.int(10) : rng.int(256);
    key.writeUInt16LE(rng.chance(0.8) ? rng.range(100, 599) : rng.int(0x10000), HTTP_SERIES_KEY.status);
    key[HTTP_SERIES_KEY.version] = rng.int(3);
    key.writeUInt32LE(rng.chance(0.5) ? 0 : rng.u32(), HTTP_SERIES_KEY.pid);
    key.writeBigUInt64LE(rng.chance(0.1) ? 0n : BigInt(rng.u32()) + 1n, HTTP_SERIES_KEY.path);
    comm(rng).copy(key, HTTP_SERIES_KEY.comm, 0, 16);
    value = latencyValue(rng);
  }
  // the packet-derived bytes of the key, damaged (the counters are left as the kernel counts)
  if (rng.chance(0.3)) key = Buffer.concat([mutate(rng, key, [], 4, key.length), Buffer.alloc(key.length)]).subarray(0, key.length);
  return { kind, key, value, text: text(rng) };
}

function checkStats(value: Buffer): void {
  const s = latencyStats(value, 0);
  for (const x of [s.count, s.meanNs, s.maxNs, s.p50Ns, s.p90Ns, s.p99Ns]) assert.ok(Number.isSafeInteger(x) && x >= 0, String(x));
  assert.ok(s.p50Ns <= s.p90Ns && s.p90Ns <= s.p99Ns && s.p99Ns <= s.maxNs, JSON.stringify(s));
}

export const seriesTarget: FuzzTarget<SeriesInput> = {
  name: 'series',
  describe: 'series keys and latency values summed in the kernel (dnsflow, dnsflow timeouts, httpflow): decoded, their lines',
  generate: generateSeries,
  run(input) {
    const encoder = new LineEncoder({ host: 'fuzz', service: 'ebpf' });
    const lookup = (hash: bigint) => (hash === 0n ? '*' : input.text);
    const time = 1_700_000_000_000_000_000n;
    if (input.kind === 'http') {
      checkStats(input.value);
      checkLine(encoder.encode(seriesPoint(decodeHttpSeries(input.key, 0, input.value, 0, lookup), time)));
    } else if (input.kind === 'dns') {
      checkStats(input.value);
      checkLine(encoder.encode(dnsSeriesPoint(decodeDnsSeries(input.key, 0, input.value, 0, lookup), time)));
    } else {
      checkLine(encoder.encode(dnsSeriesPoint(decodeDnsTimeout(input.key, 0, input.value, 0, lookup), time)));
    }
  },
  save: (input) => JSON.stringify({ kind: input.kind, key: input.key.toString('hex'), value: input.value.toString('hex'), text: input.text }, null, 1),
  load(text) {
    const o = JSON.parse(text) as { kind: SeriesInput['kind']; key: string; value: string; text?: string };
    return { kind: o.kind, key: Buffer.from(o.key, 'hex'), value: Buffer.from(o.value, 'hex'), text: o.text };
  },
};
