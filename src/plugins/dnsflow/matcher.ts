// Pairs DNS responses with their queries by client and server address and
// port, transport and DNS id; reports timeouts; bounded.
import type { DnsMessage } from './message';

export interface DnsFlowKey {
  transport: 'udp' | 'tcp';
  family: 'IPv4' | 'IPv6';
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
}

export interface DnsQueryResult extends DnsFlowKey {
  /** When the query was seen: ns on the plugin's EventClock. */
  queryNs: number;
  domain?: string;
  qtype?: string;
  /** undefined: timed out. */
  rcode?: number;
  respTimeNs?: number;
}

/** A query waiting for its answer; completed in place into its result. */
class Pending implements DnsQueryResult {
  transport: 'udp' | 'tcp';
  family: 'IPv4' | 'IPv6';
  clientIp: string;
  clientPort: number;
  serverIp: string;
  serverPort: number;
  rcode?: number = undefined;
  respTimeNs?: number = undefined;

  constructor(
    k: DnsFlowKey,
    readonly queryNs: number,
    readonly domain: string | undefined,
    readonly qtype: string | undefined,
  ) {
    this.transport = k.transport;
    this.family = k.family;
    this.clientIp = k.clientIp;
    this.clientPort = k.clientPort;
    this.serverIp = k.serverIp;
    this.serverPort = k.serverPort;
  }
}

export const DNS_TIMEOUT_NS = 6_000_000_000n;
const TIMEOUT_NS = Number(DNS_TIMEOUT_NS);

/** The same transport and ends, client and server. */
export function sameEnds(a: DnsFlowKey, b: DnsFlowKey): boolean {
  return a.clientPort === b.clientPort && a.clientIp === b.clientIp && a.serverPort === b.serverPort && a.serverIp === b.serverIp && a.transport === b.transport;
}

/**
 * UDP queries wait by a small integer made of the client port and DNS id;
 * the addresses are checked on the entry itself. Such a number hashes at no
 * cost, where a key string of both ends would be built and hashed twice per
 * query. TCP queries (rare), and the rare UDP query whose number is taken by
 * another pair of ends (same client port and id, other addresses), wait in a
 * second table by their whole key.
 */
export class DnsMatcher {
  private readonly pending = new Map<number, Pending>();
  private readonly collided = new Map<string, Pending>();
  readonly counts = { queries: 0, answered: 0, timeouts: 0, unmatched_responses: 0, duplicate_queries: 0, pending_overflow: 0 };

  constructor(private readonly maxPending = 65536) {}

  /** A 32-bit integer, which V8 keeps unboxed; undefined for TCP. */
  private static number(k: DnsFlowKey, id: number): number | undefined {
    return k.transport === 'udp' ? (k.clientPort << 16) | id : undefined;
  }

  private static text(k: DnsFlowKey, id: number): string {
    return `${k.transport}|${k.clientIp}|${k.clientPort}|${k.serverIp}|${k.serverPort}|${id}`;
  }

  /** The query waiting for these ends and id, in whichever table it waits. */
  private find(k: DnsFlowKey, id: number): Pending | undefined {
    const key = DnsMatcher.number(k, id);
    const q = key === undefined ? undefined : this.pending.get(key);
    if (q && sameEnds(q, k)) return q;
    return this.collided.size ? this.collided.get(DnsMatcher.text(k, id)) : undefined;
  }

  query(k: DnsFlowKey, msg: DnsMessage, ns: number): void {
    if (this.find(k, msg.id)) {
      this.counts.duplicate_queries++; // a retry: latency counts from the first send
      return;
    }
    if (this.size >= this.maxPending) {
      this.counts.pending_overflow++;
      return;
    }
    this.counts.queries++;
    const q = new Pending(k, ns, msg.name, msg.qtype);
    const key = DnsMatcher.number(k, msg.id);
    if (key !== undefined && !this.pending.has(key)) this.pending.set(key, q);
    else this.collided.set(DnsMatcher.text(k, msg.id), q);
  }

  /** The query this response answers, or undefined (counted) when none is pending. */
  response(k: DnsFlowKey, msg: DnsMessage, ns: number): DnsQueryResult | undefined {
    const q = this.find(k, msg.id);
    if (!q) {
      this.counts.unmatched_responses++;
      return undefined;
    }
    const key = DnsMatcher.number(k, msg.id);
    if (key !== undefined && this.pending.get(key) === q) this.pending.delete(key);
    else this.collided.delete(DnsMatcher.text(k, msg.id));
    this.counts.answered++;
    q.rcode = msg.rcode;
    q.respTimeNs = ns > q.queryNs ? ns - q.queryNs : 0;
    return q;
  }

  /** Queries unanswered for the timeout, each reported once, oldest first. */
  expire(nowNs: number, timeoutNs = TIMEOUT_NS): DnsQueryResult[] {
    const out = this.expireFrom(this.pending, nowNs, timeoutNs);
    const collided = this.expireFrom(this.collided, nowNs, timeoutNs);
    if (!collided.length) return out;
    // the two tables' queries, interleaved again by time
    return [...out, ...collided].sort((a, b) => a.queryNs - b.queryNs);
  }

  private expireFrom<K>(table: Map<K, Pending>, nowNs: number, timeoutNs: number): Pending[] {
    const out: Pending[] = [];
    // insertion order is query order: stop at the first one still in time
    for (const [key, q] of table) {
      if (nowNs - q.queryNs < timeoutNs) break;
      table.delete(key);
      this.counts.timeouts++;
      out.push(q);
    }
    return out;
  }

  get size(): number {
    return this.pending.size + this.collided.size;
  }
}
