// IP → domain name, learnt from DNS answers (filled by dnsflow) and used for
// netflow's dst_domain. Bounded (least recently used entries go first) and
// TTL-honouring.

export interface DomainLookup {
  /** The name this host resolved to reach `ip`, if still known. */
  domainOf(ip: string, nowMs?: number): string | undefined;
}

interface Entry {
  name: string;
  expiresAt: number;
}

export class DnsCache implements DomainLookup {
  private readonly entries = new Map<string, Entry>();
  evicted = 0;

  /**
   * @param maxEntries bound on remembered addresses
   * @param graceMs how long past its TTL an answer still names an address: a
   *   flow is reported at the end of an interval, possibly after the TTL of
   *   the answer that started it ran out
   */
  constructor(
    private readonly maxEntries = 10_000,
    private readonly graceMs = 0,
  ) {}

  /** `ip` was an answer (A/AAAA, after any CNAMEs) for the query `name`, valid `ttlSeconds`. */
  add(ip: string, name: string, ttlSeconds: number, nowMs = Date.now()): void {
    this.entries.delete(ip); // re-insert: most recently used last
    this.entries.set(ip, { name, expiresAt: nowMs + Math.max(0, ttlSeconds) * 1000 + this.graceMs });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      this.evicted++;
    }
  }

  domainOf(ip: string, nowMs = Date.now()): string | undefined {
    const e = this.entries.get(ip);
    if (!e) return undefined;
    if (e.expiresAt < nowMs) {
      this.entries.delete(ip);
      return undefined;
    }
    this.entries.delete(ip);
    this.entries.set(ip, e);
    return e.name;
  }

  get size(): number {
    return this.entries.size;
  }
}
