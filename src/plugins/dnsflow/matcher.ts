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
  /** When the query was seen, CLOCK_MONOTONIC ns. */
  queryNs: bigint;
  domain?: string;
  qtype?: string;
  /** undefined: timed out. */
  rcode?: number;
  respTimeNs?: bigint;
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
  respTimeNs?: bigint = undefined;

  constructor(
    k: DnsFlowKey,
    readonly queryNs: bigint,
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

export class DnsMatcher {
  private readonly pending = new Map<string, Pending>();
  readonly counts = { queries: 0, answered: 0, timeouts: 0, unmatched_responses: 0, duplicate_queries: 0, pending_overflow: 0 };

  constructor(private readonly maxPending = 65536) {}

  private static key(k: DnsFlowKey, id: number): string {
    return `${k.transport}|${k.clientIp}|${k.clientPort}|${k.serverIp}|${k.serverPort}|${id}`;
  }

  query(k: DnsFlowKey, msg: DnsMessage, ns: bigint): void {
    const key = DnsMatcher.key(k, msg.id);
    if (this.pending.has(key)) {
      this.counts.duplicate_queries++; // a retry: latency counts from the first send
      return;
    }
    if (this.pending.size >= this.maxPending) {
      this.counts.pending_overflow++;
      return;
    }
    this.counts.queries++;
    this.pending.set(key, new Pending(k, ns, msg.name, msg.qtype));
  }

  /** The query this response answers, or undefined (counted) when none is pending. */
  response(k: DnsFlowKey, msg: DnsMessage, ns: bigint): DnsQueryResult | undefined {
    const key = DnsMatcher.key(k, msg.id);
    const q = this.pending.get(key);
    if (!q) {
      this.counts.unmatched_responses++;
      return undefined;
    }
    this.pending.delete(key);
    this.counts.answered++;
    q.rcode = msg.rcode;
    q.respTimeNs = ns > q.queryNs ? ns - q.queryNs : 0n;
    return q;
  }

  /** Queries unanswered for the timeout, each reported once. */
  expire(nowNs: bigint, timeoutNs = DNS_TIMEOUT_NS): DnsQueryResult[] {
    const out: DnsQueryResult[] = [];
    // insertion order is query order: stop at the first one still in time
    for (const [key, q] of this.pending) {
      if (nowNs - q.queryNs < timeoutNs) break;
      this.pending.delete(key);
      this.counts.timeouts++;
      out.push(q);
    }
    return out;
  }

  get size(): number {
    return this.pending.size;
  }
}
