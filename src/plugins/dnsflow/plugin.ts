// dnsflow (SPEC §4.2): DNS queries, answered (rcode, response time) or timed
// out; A/AAAA answers feed netflow's dst_domain. By default the kernel matches
// answers with queries and sums them per interval (aggregate.ts); with
// --l7-per-request every query and response comes to user space, is matched
// here and becomes a point of its own, as DataKit 1.4.0 reported them.
import { BpfMap, BpfObject, Link, RingBuffer, forEachRecord, u32 } from '../../bpf/native';
import type { ContainerLookup } from '../../enrich/containers';
import type { DnsCache } from '../../enrich/dns-cache';
import { LossWarnings } from '../loss';
import type { Point } from '../../output/point';
import { EventClock } from '../../timefmt';
import { PointGroups, type Sink, type Plugin, type PluginOptions } from '../plugin';
import { DEFAULT_L7_MAX_SERIES } from '../../config/config';
import { log } from '../../log';
import type { NetflowPlugin } from '../netflow/plugin';
import { DnsSeries, DnsSeriesReader } from './aggregate';
import { decodeDnsEvent, DNS_COUNTER_NAMES, DNS_EVENT, DNS_KIND, DnsPacketEvent, encodeDnsflowConfig } from './decode';
import { DnsFlowKey, DnsMatcher, DnsQueryResult, sameEnds } from './matcher';
import { parseDnsMessage, resolvedAddresses } from './message';
import { DRAIN_TICK_MS, every, SECOND_TICK_MS } from '../../ticker';

export interface DnsflowOptions extends PluginOptions {
  /** The cgroup v2 root, where the programs attach to see every socket. */
  cgroup2: () => string;
  /** Filled with the addresses each answered name resolved to. */
  cache?: DnsCache;
  /** Its connection and UDP flow tables name each query's process. */
  netflow?: NetflowPlugin;
  /** One point per query, as DataKit 1.4.0 (else one per series and interval). */
  perQuery?: boolean;
  /** Series per interval before answers are counted in overflow series. */
  maxSeries?: number;
}

/** Per query: how often queries waiting in user space are checked for their timeout. */
const EXPIRE_MS = 500;
/** Room in each series map beyond maxSeries, for overflow series (endpoint pair and rcode). */
const overflowRoom = (maxSeries: number) => Math.max(1024, maxSeries >> 3);

/** One series of an interval (the default mode), at the interval's end. */
export function dnsSeriesPoint(s: DnsSeries, time: bigint, containers?: ContainerLookup): Point {
  const timeout = s.rcode === undefined;
  const fields: Point['fields'] = { count: s.latency.count, timeout };
  if (!timeout) {
    Object.assign(fields, {
      rcode: s.rcode!,
      resp_time: s.latency.meanNs,
      resp_time_max: s.latency.maxNs,
      resp_time_p50: s.latency.p50Ns,
      resp_time_p99: s.latency.p99Ns,
    });
  }
  return {
    measurement: 'dnsflow',
    tags: {
      source: 'dnsflow',
      transport: s.transport,
      family: s.family,
      src_ip: s.clientIp,
      src_port: s.clientPort === 0 ? '*' : String(s.clientPort),
      dst_ip: s.serverIp,
      dst_port: String(s.serverPort),
      domain: s.domain,
      qtype: s.qtype,
      pid: s.pid ? String(s.pid) : undefined,
      process_name: s.processName || undefined,
      container_id: s.pid ? containers?.containerOf(s.pid) : undefined,
    },
    fields,
    time,
  };
}

/** A query's tags: its series (DataKit 1.4.0 keeps the client's port). */
function queryTags(r: DnsQueryResult): Point['tags'] {
  return {
    source: 'dnsflow',
    transport: r.transport,
    family: r.family,
    src_ip: r.clientIp,
    src_port: String(r.clientPort),
    dst_ip: r.serverIp,
    dst_port: String(r.serverPort),
    domain: r.domain?.endsWith('.') ? r.domain.slice(0, -1) : r.domain,
    qtype: r.qtype,
  };
}

/** Series kept: more than a busy resolver's clients and names in one go. */
const QUERY_SERIES = 4096;
/** Series kept per name: a client asking from a new port each time makes a new one each time. */
const SERIES_PER_NAME = 32;

/**
 * One tags object per query series, handed over again for each of its
 * queries: the encoder then writes the series' text once, not per point.
 * Found by name, then compared field by field: no key string is built and
 * hashed per query.
 */
export class QueryTagsCache {
  private readonly byName = new Map<string | undefined, { r: DnsQueryResult; tags: Point['tags'] }[]>();
  private size = 0;

  get(r: DnsQueryResult): Point['tags'] {
    let list = this.byName.get(r.domain);
    if (list) {
      for (const e of list) if (e.r.qtype === r.qtype && sameEnds(e.r, r)) return e.tags;
    }
    if (this.size >= QUERY_SERIES) {
      this.byName.clear();
      this.size = 0;
      list = undefined;
    }
    if (!list) {
      list = [];
      this.byName.set(r.domain, list);
    }
    if (list.length >= SERIES_PER_NAME) list.shift();
    else this.size++;
    const tags = queryTags(r);
    list.push({ r, tags });
    return tags;
  }
}

/** One query (--l7-per-request), as DataKit 1.4.0 reported it: stamped when it was seen. */
export function dnsQueryPoint(r: DnsQueryResult, clock: EventClock, tags: Point['tags'] = queryTags(r)): Point {
  return {
    measurement: 'dnsflow',
    tags,
    fields: r.rcode === undefined ? { timeout: true } : { rcode: r.rcode, resp_time: r.respTimeNs ?? 0, timeout: false },
    time: clock.wallTime(r.queryNs),
  };
}

/** An answer decoded this recently is not decoded again for the DNS cache. */
const RELEARN_MS = 1000;
const LEARNT_NAMES = 10_000;

export class DnsflowPlugin implements Plugin {
  readonly name = 'dnsflow';
  readonly category = 'network' as const;
  private obj?: BpfObject;
  private ownPrograms: Link[] = [];
  private ring?: RingBuffer;
  private reader?: DnsSeriesReader;
  private counters?: BpfMap;
  private seriesRead = 0;
  /** Stop the periodic drain of the ring and the timeout checks. */
  private stopTicking: (() => void)[] = [];
  private readonly matcher = new DnsMatcher();
  /** Kernel times as Numbers: no bigint per query. */
  private readonly clock = new EventClock();
  private readonly queryTags = new QueryTagsCache();
  private emit: (points: Point[]) => void = () => {};
  /** When each name and type last had its answers decoded (ms), by name, then type. */
  private learnt = new Map<string, Map<string, number>>();
  private parseErrors = 0;
  private partial = 0;
  readonly gauges = new Set(['pending', 'dns_cache', 'names_known', 'series']);
  readonly losses = new LossWarnings('dnsflow', {
    ringbuf_full: 'DNS packets (per query) or names and answers (aggregated) lost: ring buffer full',
    pending_overflow: 'queries not tracked: pending table full',
    pending_full: 'queries not tracked: the kernel\'s pending table was full',
    overflow: 'answers counted in an endpoint pair\'s overflow series (domain "*"): the series table was full',
    series_lost: 'answers lost: no room even for an overflow series',
    names_missing: 'series reported without a domain: its name never reached user space',
    kernel_unmatched: 'answers with no query waiting (aggregated): not reported',
    unmatched_responses: 'answers with no query waiting (per query): not reported',
    kernel_parse_errors: 'DNS messages the kernel could not read: not reported',
    parse_errors: 'DNS messages that did not decode: not reported',
    series_reads_busy: 'series maps read while an add may still have been running (waited 200 ms): answers it added may be lost',
  });

  constructor(private readonly opts: DnsflowOptions) {}

  start(sink: Sink): void {
    this.emit = (points) => sink.points(points);
    const obj = BpfObject.open('dnsflow');
    this.obj = obj;
    const perQuery = !!this.opts.perQuery;
    const maxSeries = this.opts.maxSeries ?? DEFAULT_L7_MAX_SERIES;
    try {
      obj.setConfig(encodeDnsflowConfig({ includeLoopback: this.opts.includeLoopback, wakeupBytes: 64 * 1024, perQuery, maxSeries }));
      for (const m of ['dns_series_0', 'dns_series_1']) obj.setMaxEntries(m, maxSeries + overflowRoom(maxSeries));
      const conns = this.opts.netflow?.connections;
      const udpFlows = this.opts.netflow?.udpFlowTable;
      const netflowControl = this.opts.netflow?.controlTable;
      if (conns && udpFlows && netflowControl) {
        obj.reuseMap('conns', conns);
        obj.reuseMap('udp_flows', udpFlows);
        obj.reuseMap('netflow_control', netflowControl);
      } else if (!perQuery) {
        log.warn('dnsflow: netflow is not running: queries will carry no pid or process_name');
      }
      obj.load();
      this.counters = obj.map('counters');
      if (!perQuery) this.reader = new DnsSeriesReader(obj);
      this.ring = new RingBuffer(obj.map('dns_events'), (buf, bytes) =>
        this.reader ? this.processLearning(buf, bytes) : this.processEvents(buf, bytes, this.emit),
      );
      const root = this.opts.cgroup2();
      this.ownPrograms = [obj.attachCgroup('dns_egress', root), obj.attachCgroup('dns_ingress', root)];
    } catch (err) {
      this.stop();
      throw err;
    }
    this.stopTicking = [
      every(DRAIN_TICK_MS, () => this.ring?.drain()),
      // aggregated: the kernel's pending queries searched for timeouts
      this.reader ? every(SECOND_TICK_MS, () => this.reader?.expire(process.hrtime.bigint())) : every(EXPIRE_MS, () => this.expire()),
    ];
  }

  /**
   * The programs another plugin's packet programs may call for the packets
   * that may be DNS (httpflow's, by tail call), by side; undefined when not
   * running.
   */
  packetPrograms(): { egress: number; ingress: number } | undefined {
    if (!this.obj || !this.ownPrograms.length) return undefined;
    return { egress: this.obj.programFd('dns_egress_called'), ingress: this.obj.programFd('dns_ingress_called') };
  }

  /**
   * Once those calls are in place: the called programs take the packets, at
   * one switch (none missed; see dns_handed_over in bpf/dnsflow.bpf.c), and
   * dnsflow's own are detached. Every packet then runs one program on each
   * side instead of two.
   */
  handOverPackets(): void {
    if (!this.obj) return;
    this.obj.map('dns_handed_over').update(u32(0), u32(1));
    for (const l of this.ownPrograms) this.obj.detach(l);
    this.ownPrograms = [];
    log.info('dnsflow: packets handed to httpflow\'s programs, which call dnsflow\'s');
  }

  /** Per query: one drained chunk of ring records; points for the queries they complete go to `emit`. */
  processEvents(buf: Buffer, bytes: number, emit: (points: Point[]) => void): void {
    const points = new PointGroups(emit);
    forEachRecord(buf, bytes, (off, len) => {
      if (len < DNS_EVENT.payload) return;
      const r = this.handle(decodeDnsEvent(buf, off, len), this.clock.read(buf, off + DNS_EVENT.ts));
      if (r) points.push(dnsQueryPoint(r, this.clock, this.queryTags.get(r)));
    });
    points.end();
  }

  /** Aggregated mode: names sent once per hash, and answers to learn addresses from. */
  processLearning(buf: Buffer, bytes: number): void {
    forEachRecord(buf, bytes, (off, len) => {
      if (len < DNS_EVENT.payload) return;
      const kind = buf[off + DNS_EVENT.kind];
      const ev = decodeDnsEvent(buf, off, len);
      const msg = parseDnsMessage(ev.payload, ev.transport);
      if (!msg?.name) {
        this.parseErrors++;
        return;
      }
      const hash = buf.readBigUInt64LE(off + DNS_EVENT.name);
      if (kind === DNS_KIND.NAME) this.reader?.learnName(hash, msg.name);
      else if (kind === DNS_KIND.ANSWER && this.opts.cache) {
        for (const a of resolvedAddresses(msg.name, msg.answers)) this.opts.cache.add(a.ip, msg.name.replace(/\.$/, ''), a.ttl);
      }
    });
  }

  /** Whether a response's answers are worth decoding: not if the same question's were, just now. */
  private readonly wantAnswers = (name: string, qtype: string): boolean => {
    if (!this.opts.cache) return false;
    const now = Date.now();
    let byType = this.learnt.get(name);
    const last = byType?.get(qtype);
    if (last !== undefined && now - last < RELEARN_MS) return false;
    if (!byType) {
      if (this.learnt.size >= LEARNT_NAMES) this.learnt.clear();
      byType = new Map();
      this.learnt.set(name, byType);
    }
    byType.set(qtype, now);
    return true;
  };

  /** `seenNs`: when the packet was seen, on the plugin's clock. */
  private handle(ev: DnsPacketEvent, seenNs: number): DnsQueryResult | undefined {
    const msg = parseDnsMessage(ev.payload, ev.transport, this.wantAnswers);
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
      this.matcher.query(key, msg, seenNs);
      return undefined;
    }
    const r = this.matcher.response(key, msg, seenNs);
    if (r && this.opts.cache && r.domain && msg.rcode === 0) {
      for (const a of resolvedAddresses(r.domain, msg.answers)) this.opts.cache.add(a.ip, r.domain.replace(/\.$/, ''), a.ttl);
    }
    return r;
  }

  private expire(): void {
    const timedOut = this.matcher.expire(this.clock.now());
    if (timedOut.length) this.emit(timedOut.map((r) => dnsQueryPoint(r, this.clock, this.queryTags.get(r))));
  }

  /** Per query: what is queued still; aggregated: the interval's series. */
  collect(now: bigint): Point[] {
    this.ring?.drain();
    if (!this.reader) return [];
    const series = this.reader.read();
    this.seriesRead = series.length;
    return series.map((s) => dnsSeriesPoint(s, now, this.opts.containers));
  }

  stats(): Record<string, number> {
    const out = this.counters?.namedCounters(DNS_COUNTER_NAMES) ?? {};
    if (this.reader) {
      Object.assign(out, {
        series: this.seriesRead,
        timeouts: this.reader.timedOut,
        pending: this.reader.pending,
        names_known: this.reader.namesKnown,
        names_missing: this.reader.namesMissing,
        parse_errors: this.parseErrors,
        series_reads_busy: this.reader.seriesReadsBusy,
      });
    } else {
      Object.assign(out, this.matcher.counts, { pending: this.matcher.size, parse_errors: this.parseErrors, partial: this.partial });
    }
    if (this.opts.cache) out.dns_cache = this.opts.cache.size;
    return out;
  }

  hooks(): Record<string, string> {
    return { dns: 'cgroup_skb' };
  }

  stop(): void {
    for (const stop of this.stopTicking) stop();
    this.stopTicking = [];
    this.ring?.close();
    this.ring = undefined;
    this.reader = undefined;
    this.obj?.close();
    this.obj = undefined;
    this.ownPrograms = [];
  }
}
