// dnsflow (SPEC §4.2): every DNS query, answered (rcode, response time) or
// timed out; A/AAAA answers feed netflow's dst_domain.
import { BpfMap, BpfObject, RingBuffer, forEachRecord } from '../../bpf/native';
import type { DnsCache } from '../../enrich/dns-cache';
import { LossWarnings } from '../loss';
import type { Point } from '../../output/point';
import { monotonicToWallOffsetNs } from '../../timefmt';
import type { Sink, Plugin, PluginOptions } from '../plugin';
import { decodeDnsEvent, DNS_COUNTER_NAMES, DNS_EVENT, DNSFLOW_CONFIG, DnsPacketEvent } from './decode';
import { DnsFlowKey, DnsMatcher, DnsQueryResult } from './matcher';
import { parseDnsMessage, resolvedAddresses } from './message';

export interface DnsflowOptions extends PluginOptions {
  cgroup2: string;
  /** Filled with the addresses each answered name resolved to. */
  cache?: DnsCache;
}

const DRAIN_MS = 100;
const EXPIRE_MS = 500;

export function dnsPoint(r: DnsQueryResult, wallOffsetNs: bigint): Point {
  const p: Point = {
    measurement: 'dnsflow',
    tags: {
      source: 'dnsflow',
      transport: r.transport,
      family: r.family,
      src_ip: r.clientIp,
      src_port: String(r.clientPort),
      dst_ip: r.serverIp,
      dst_port: String(r.serverPort),
      domain: r.domain?.replace(/\.$/, ''),
      qtype: r.qtype,
    },
    fields: r.rcode === undefined ? { timeout: true } : { rcode: r.rcode, resp_time: r.respTimeNs ?? 0n, timeout: false },
    time: r.queryNs + wallOffsetNs,
  };
  return p;
}

export class DnsflowPlugin implements Plugin {
  readonly name = 'dnsflow';
  readonly category = 'network' as const;
  private obj?: BpfObject;
  private ring?: RingBuffer;
  private counters?: BpfMap;
  private timers: NodeJS.Timeout[] = [];
  private readonly matcher = new DnsMatcher();
  private offsetNs = 0n;
  private emit: (points: Point[]) => void = () => {};
  private parseErrors = 0;
  private partial = 0;
  readonly gauges = new Set(['pending', 'dns_cache']);
  readonly losses = new LossWarnings('dnsflow', {
    ringbuf_full: 'DNS packets lost: ring buffer full',
    pending_overflow: 'queries not tracked: pending table full',
  });

  constructor(private readonly opts: DnsflowOptions) {}

  start(sink: Sink): void {
    this.emit = (points) => sink.points(points);
    const obj = BpfObject.open('dnsflow');
    this.obj = obj;
    try {
      const cfg = Buffer.alloc(DNSFLOW_CONFIG.size);
      cfg.writeUInt32LE(this.opts.includeLoopback ? 1 : 0, DNSFLOW_CONFIG.include_loopback);
      cfg.writeUInt32LE(64 * 1024, DNSFLOW_CONFIG.wakeup_bytes);
      obj.setConfig(cfg);
      obj.load();
      this.counters = obj.map('counters');
      this.ring = new RingBuffer(obj.map('dns_events'), (buf, bytes) => this.onEvents(buf, bytes));
      obj.attachCgroup('dns_egress', this.opts.cgroup2);
      obj.attachCgroup('dns_ingress', this.opts.cgroup2);
    } catch (err) {
      this.stop();
      throw err;
    }
    this.offsetNs = monotonicToWallOffsetNs();
    const drain = setInterval(() => this.ring?.drain(), DRAIN_MS);
    const expire = setInterval(() => this.expire(), EXPIRE_MS);
    drain.unref();
    expire.unref();
    this.timers = [drain, expire];
  }

  private onEvents(buf: Buffer, bytes: number): void {
    const points: Point[] = [];
    forEachRecord(buf, bytes, (off, len) => {
      if (len < DNS_EVENT.payload) return;
      const r = this.handle(decodeDnsEvent(buf, off, len));
      if (r) points.push(dnsPoint(r, this.offsetNs));
    });
    if (points.length) this.emit(points);
  }

  private handle(ev: DnsPacketEvent): DnsQueryResult | undefined {
    const msg = parseDnsMessage(ev.payload, ev.transport);
    if (!msg || msg.isResponse !== ev.isResponse) {
      this.parseErrors++; // not DNS, or not what its direction says: skipped
      return undefined;
    }
    if (msg.partial) this.partial++;
    // the client is the packet's source for a query, its destination for a response
    const key: DnsFlowKey = ev.isResponse
      ? { transport: ev.transport, family: ev.family, clientIp: ev.dstIp, clientPort: ev.dstPort, serverIp: ev.srcIp, serverPort: ev.srcPort }
      : { transport: ev.transport, family: ev.family, clientIp: ev.srcIp, clientPort: ev.srcPort, serverIp: ev.dstIp, serverPort: ev.dstPort };
    if (!ev.isResponse) {
      this.matcher.query(key, msg, ev.monotonicNs);
      return undefined;
    }
    const r = this.matcher.response(key, msg, ev.monotonicNs);
    if (r && this.opts.cache && r.domain && msg.rcode === 0) {
      for (const a of resolvedAddresses(r.domain, msg.answers)) this.opts.cache.add(a.ip, r.domain.replace(/\.$/, ''), a.ttl);
    }
    return r;
  }

  private expire(): void {
    const timedOut = this.matcher.expire(process.hrtime.bigint());
    if (timedOut.length) this.emit(timedOut.map((r) => dnsPoint(r, this.offsetNs)));
  }

  collect(): Point[] {
    this.ring?.drain();
    return [];
  }

  stats(): Record<string, number> {
    const out = this.counters?.namedCounters(DNS_COUNTER_NAMES) ?? {};
    Object.assign(out, this.matcher.counts, { pending: this.matcher.size, parse_errors: this.parseErrors, partial: this.partial });
    if (this.opts.cache) out.dns_cache = this.opts.cache.size;
    return out;
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.ring?.close();
    this.ring = undefined;
    this.obj?.close();
    this.obj = undefined;
  }
}
