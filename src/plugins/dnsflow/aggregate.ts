// dnsflow's default mode (SPEC §4.2): the kernel matches answers with their
// queries and sums them into series per interval (bpf/dnsflow.bpf.c); this
// reads them, and finds the queries that went unanswered by walking the
// kernel's pending queries once a second. A name's text arrives once, the
// first time the kernel sees its hash.
import { BpfMap, BpfObject } from '../../bpf/native';
import { LatencyStats, latencyStats, SeriesTables } from '../../aggregate/series';
import { DNS_QUERY, DNS_QUERY_KEY, DNS_SERIES_KEY, ip } from './decode';
import { DNS_TIMEOUT_NS, type DnsFlowKey } from './matcher';
import { qtypeName } from './message';

/** Name texts kept; the kernel keeps as many hashes (dns_names). */
const MAX_NAMES = 65_536;
/** Pending queries read per batch. */
const PENDING_CHUNK = 4096;

/** The ends of a query as the matcher keys them; a clientPort of 0 is an ephemeral port, collapsed. */
export interface DnsSeries extends DnsFlowKey {
  /** undefined: its text never reached user space; '*': an overflow series */
  domain?: string;
  qtype: string;
  pid: number;
  processName: string;
  /** undefined: timed out */
  rcode?: number;
  /** timeouts: count only */
  latency: LatencyStats;
}

function noLatency(count: number): LatencyStats {
  return { count, meanNs: 0, maxNs: 0, p50Ns: 0, p90Ns: 0, p99Ns: 0 };
}

export class DnsSeriesReader {
  private readonly names = new Map<bigint, string>();
  private readonly tables: SeriesTables;
  private readonly pendingMap: BpfMap;
  private readonly knownNames: BpfMap;
  /** Timeouts found since the last read, by series. */
  private timeouts = new Map<string, DnsSeries>();
  /** Series or timeouts whose name never reached user space. */
  namesMissing = 0;
  timedOut = 0;
  /** Queries waiting in the kernel at the last walk. */
  pending = 0;

  constructor(obj: BpfObject) {
    this.tables = new SeriesTables(obj.map('dns_control'), [obj.map('dns_series_0'), obj.map('dns_series_1')], obj.map('dns_series_in_progress'));
    this.pendingMap = obj.map('dns_pending');
    this.knownNames = obj.map('dns_names');
  }

  /** Series maps read while an add may still have been running on them (SeriesTables.readsBusy). */
  get seriesReadsBusy(): number {
    return this.tables.readsBusy;
  }

  get namesKnown(): number {
    return this.names.size;
  }

  /** A question's name, sent by the kernel the first time it saw its hash. */
  learnName(hash: bigint, name: string): void {
    if (!this.names.has(hash) && this.names.size >= MAX_NAMES) {
      // forgotten here and in the kernel, which then sends it again when it sees it
      const oldest = this.names.keys().next().value as bigint;
      this.names.delete(oldest);
      const key = Buffer.alloc(8);
      key.writeBigUInt64LE(oldest);
      this.knownNames.delete(key);
    }
    this.names.delete(hash);
    this.names.set(hash, name.endsWith('.') ? name.slice(0, -1) : name);
  }

  /** A name's text: '*' for an overflow series, counted as missing when it never arrived. */
  private readonly nameOf = (hash: bigint): string | undefined => {
    if (hash === 0n) return '*';
    const n = this.names.get(hash);
    if (n === undefined) this.namesMissing++;
    return n;
  };

  /**
   * Queries unanswered for the timeout leave the kernel's table and count as
   * timeouts (those the kernel answers meanwhile are not: the delete fails).
   */
  expire(nowNs: bigint, timeoutNs = DNS_TIMEOUT_NS): void {
    const expired: { key: Buffer; series: DnsSeries }[] = [];
    this.pending = this.pendingMap.forEachChunk(PENDING_CHUNK, ({ count, keys, values }) => {
      for (let i = 0; i < count; i++) {
        const v = i * this.pendingMap.valueSize;
        if (nowNs - values.readBigUInt64LE(v + DNS_QUERY.ts) < timeoutNs) continue;
        const k = i * DNS_QUERY_KEY.size;
        expired.push({ key: Buffer.from(keys.subarray(k, k + DNS_QUERY_KEY.size)), series: decodeDnsTimeout(keys, k, values, v, this.nameOf) });
      }
    });
    for (const { key, series } of expired) {
      if (!this.pendingMap.delete(key)) continue; // answered after all
      this.timedOut++;
      const id = `${series.transport}|${series.clientIp}|${series.clientPort}|${series.serverIp}|${series.serverPort}|${series.domain}|${series.qtype}`;
      const seen = this.timeouts.get(id);
      if (seen) seen.latency.count++;
      else this.timeouts.set(id, series);
    }
  }

  /** The interval's series: answered ones from the kernel, then the timeouts found since the last read. */
  read(): DnsSeries[] {
    const out: DnsSeries[] = [];
    this.tables.switchAndRead((keys, k, values, v) => out.push(decodeDnsSeries(keys, k, values, v, this.nameOf)));
    out.push(...this.timeouts.values());
    this.timeouts = new Map();
    return out;
  }

}

/** A query that timed out: its key (struct dns_query_key) and value (struct dns_query); `nameOf` names a name hash. */
export function decodeDnsTimeout(keys: Buffer, k: number, values: Buffer, v: number, nameOf: (hash: bigint) => string | undefined): DnsSeries {
  const v4 = keys.readUInt16LE(k + DNS_QUERY_KEY.family) === 2;
  const clientPort = keys.readUInt16LE(k + DNS_QUERY_KEY.client_port);
  return {
    transport: keys[k + DNS_QUERY_KEY.proto] === 6 ? 'tcp' : 'udp',
    family: v4 ? 'IPv4' : 'IPv6',
    clientIp: ip(keys, k + DNS_QUERY_KEY.client, v4),
    clientPort: clientPort >= 32768 && clientPort <= 60999 ? 0 : clientPort,
    serverIp: ip(keys, k + DNS_QUERY_KEY.server, v4),
    serverPort: keys.readUInt16LE(k + DNS_QUERY_KEY.server_port),
    domain: nameOf(values.readBigUInt64LE(v + DNS_QUERY.name)),
    qtype: qtypeName(values.readUInt16LE(v + DNS_QUERY.qtype)),
    pid: 0,
    processName: '',
    latency: noLatency(1),
  };
}

/** One answered series: its key (struct dns_series_key) and value (struct latency_series); `nameOf` names a name hash. */
export function decodeDnsSeries(keys: Buffer, k: number, values: Buffer, v: number, nameOf: (hash: bigint) => string | undefined): DnsSeries {
  const v4 = keys.readUInt16LE(k + DNS_SERIES_KEY.family) === 2;
  let end = k + DNS_SERIES_KEY.comm;
  while (end < k + DNS_SERIES_KEY.comm + 16 && keys[end] !== 0) end++;
  const name = keys.readBigUInt64LE(k + DNS_SERIES_KEY.name);
  const qtype = keys.readUInt16LE(k + DNS_SERIES_KEY.qtype);
  return {
    transport: keys[k + DNS_SERIES_KEY.proto] === 6 ? 'tcp' : 'udp',
    family: v4 ? 'IPv4' : 'IPv6',
    clientIp: ip(keys, k + DNS_SERIES_KEY.client, v4),
    clientPort: keys.readUInt16LE(k + DNS_SERIES_KEY.client_port),
    serverIp: ip(keys, k + DNS_SERIES_KEY.server, v4),
    serverPort: keys.readUInt16LE(k + DNS_SERIES_KEY.server_port),
    domain: nameOf(name),
    qtype: name === 0n && qtype === 0 ? '*' : qtypeName(qtype),
    pid: keys.readUInt32LE(k + DNS_SERIES_KEY.pid),
    processName: keys.toString('utf8', k + DNS_SERIES_KEY.comm, end),
    rcode: keys[k + DNS_SERIES_KEY.rcode],
    latency: latencyStats(values, v),
  };
}
