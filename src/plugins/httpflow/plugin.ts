// httpflow (SPEC §4.3): every HTTP/1.x request made or served on this host.
// Its programs read netflow's connection table for each socket's owner. By
// default the kernel sums exchanges into series per interval (aggregate.ts);
// with --l7-per-request every exchange comes to user space, is paired here
// and becomes a point of its own, as DataKit 1.4.0 reported them.
import { BpfMap, BpfObject, HELPER_GET_CURRENT_PID_TGID, Link, PROG_TYPE_CGROUP_SKB, RingBuffer, forEachRecord, kernelHasHelper, u32 } from '../../bpf/native';
import { isEphemeralPort } from '../../enrich/iptype';
import type { ContainerLookup } from '../../enrich/containers';
import type { FlowTagger } from '../../enrich/k8s';
import type { Point } from '../../output/point';
import { DEFAULT_L7_MAX_SERIES } from '../../config/config';
import { log } from '../../log';
import { EventClock } from '../../timefmt';
import type { NetflowPlugin } from '../netflow/plugin';
import { LossWarnings } from '../loss';
import { followExecs } from '../process-scan';
import { PointGroups, type Plugin, type Sink } from '../plugin';
import {
  decodeHttpConnection,
  encodeHttpflowConfig,
  HTTP_CAPTURE,
  httpEventComm,
  HTTP_COUNTER_NAMES,
  HTTP_EVENT,
  HTTP_CONN_END,
  HTTP_EXCHANGE,
  HTTP_REQUEST,
  HTTP_STATUS_CAPTURE,
  HTTP_TLS,
  HttpConnection,
  httpEventSocket,
} from './decode';
import { HttpSeries, SeriesReader } from './aggregate';
import { Exchange, HttpPairer } from './pairing';
import { parseRequestLine, parseStatus } from './parse';
import { GoInspector, TlsDiscovery, TlsTarget } from './tls/discovery';
import { goOffsets, inspectGoBinary, MIN_GO_MINOR } from './tls/go';
import { DRAIN_TICK_MS, every, SECOND_TICK_MS } from '../../ticker';

/** The kernel wakes us early once this much is queued. */
const WAKEUP_BYTES = 512 * 1024;
const TUPLE_BYTES = 48;
const EXPIRE_MS = 5000;
const SERIES_CACHE = 16_384;
/** A request with no response by then is dropped (and counted). */
export const REQUEST_TIMEOUT_NS = 120e9;

export interface HttpflowOptions {
  includeLoopback: boolean;
  /** The cgroup v2 root, where the programs attach to see every socket. */
  cgroup2: () => string;
  /** Kubernetes tags for each end. */
  k8s?: FlowTagger;
  /** container_id of the connection's process. */
  containers?: ContainerLookup;
  /** One point per exchange, as DataKit 1.4.0 (else one per series and interval). */
  perRequest?: boolean;
  /** Series per interval before exchanges are counted in overflow series. */
  maxSeries?: number;
  /** Read HTTP from TLS libraries' plaintext (OpenSSL, Go): on unless false. */
  tls?: boolean;
  /** Reads a Go executable's crypto/tls probe points. */
  inspectGo?: GoInspector;
  /** A plugin whose packet programs httpflow's call for the packets that may be DNS (dnsflow). */
  dnsPackets?: PacketPrograms;
}

/** Packet programs another cgroup_skb program calls, and the switch that hands packets to them. */
export interface PacketPrograms {
  packetPrograms(): { egress: number; ingress: number } | undefined;
  handOverPackets(): void;
}

/** OpenSSL's calls that move plaintext, with their programs; the _ex forms are 1.1.1+. */
const OPENSSL_CALLS = [
  { func: 'SSL_write', enter: 'ssl_write_enter', required: true },
  { func: 'SSL_read', enter: 'ssl_read_enter', required: true },
  { func: 'SSL_write_ex', enter: 'ssl_write_ex_enter', required: false },
  { func: 'SSL_read_ex', enter: 'ssl_read_ex_enter', required: false },
] as const;

/** Room in each series map beyond maxSeries, for the overflow series (one per endpoint pair). */
const overflowRoom = (maxSeries: number) => Math.max(1024, maxSeries >> 3);

/** The tags of an exchange: all of them belong to the connection and its side. */
export function httpTags(
  c: HttpConnection,
  serverSide: boolean,
  pid: number,
  processName: string,
  tls: boolean,
  k8s?: FlowTagger,
  containers?: ContainerLookup,
): Point['tags'] {
  const direction = serverSide ? 'incoming' : 'outgoing';
  // port 0: the kernel collapsed an ephemeral port already
  const tags: Point['tags'] = {
    source: 'httpflow',
    direction,
    transport: 'tcp',
    family: c.family,
    pid: pid ? String(pid) : undefined,
    process_name: processName,
    src_ip: c.localIp,
    src_port: c.localPort === 0 || (!serverSide && isEphemeralPort(c.localPort)) ? '*' : String(c.localPort),
    src_ip_type: c.localType,
    dst_ip: c.remoteIp,
    dst_port: c.remotePort === 0 || (serverSide && isEphemeralPort(c.remotePort)) ? '*' : String(c.remotePort),
    dst_ip_type: c.remoteType,
    container_id: pid ? containers?.containerOf(pid) : undefined,
    tls: tls ? 'true' : 'false',
  };
  k8s?.enrich(tags, { srcIp: c.localIp, srcPort: c.localPort, dstIp: c.remoteIp, dstPort: c.remotePort, transport: 'tcp', pid });
  // the HTTP exchange itself says which side serves: a service's port does not overrule it
  tags.direction = direction;
  return tags;
}

/** One series of an interval (the default mode), at the interval's end. */
export function seriesPoint(s: HttpSeries, time: bigint, k8s?: FlowTagger, containers?: ContainerLookup): Point {
  const fields: Point['fields'] = {
    method: s.method,
    status_code: s.status,
    http_version: s.version,
    count: s.latency.count,
    latency: s.latency.meanNs,
    latency_max: s.latency.maxNs,
    latency_p50: s.latency.p50Ns,
    latency_p90: s.latency.p90Ns,
    latency_p99: s.latency.p99Ns,
  };
  if (s.path !== undefined) fields.path = s.path;
  return { measurement: 'httpflow', tags: httpTags(s.conn, s.server, s.pid, s.processName, s.tls, k8s, containers), fields, time };
}

/** One exchange (--l7-per-request), as DataKit 1.4.0 reported it: its series' tags, stamped when the request was seen. */
export function exchangePoint(tags: Point['tags'], x: Exchange, clock: EventClock): Point {
  return {
    measurement: 'httpflow',
    tags,
    fields: { http_version: x.version, latency: x.latencyNs, method: x.method, path: x.path, status_code: x.status },
    time: clock.wallTime(x.seenNs),
  };
}

/** What is known of one socket between its events. */
class CachedConnection {
  private seriesTags: Point['tags'] = {};
  private seriesServer = false;
  private seriesTls = false;
  private seriesPid = -1;
  private seriesName = '';
  private seriesGeneration = -1;
  private commPid = -1;
  private comm = '';

  /** The raw addresses the cache was made for, as 32-bit words. */
  private readonly tuple = new Int32Array(TUPLE_BYTES / 4);

  constructor(
    buf: Buffer,
    tupleOffset: number,
    readonly conn: HttpConnection,
  ) {
    for (let i = 0; i < this.tuple.length; i++) this.tuple[i] = buf.readInt32LE(tupleOffset + i * 4);
  }

  sameTuple(buf: Buffer, tupleOffset: number): boolean {
    for (let i = 0; i < this.tuple.length; i++) if (this.tuple[i] !== buf.readInt32LE(tupleOffset + i * 4)) return false;
    return true;
  }

  /** The owner's command name in this event, decoded once per owner. */
  commOf(buf: Buffer, off: number, pid: number): string {
    if (pid !== this.commPid) {
      this.comm = httpEventComm(buf, off);
      this.commPid = pid;
    }
    return this.comm;
  }

  /** The series' tags (one object, so the encoder encodes them once), remade only when the side, owner or cluster changed. */
  series(server: boolean, tls: boolean, pid: number, name: string, generation: number, make: () => Point['tags']): Point['tags'] {
    if (server !== this.seriesServer || tls !== this.seriesTls || pid !== this.seriesPid || name !== this.seriesName || generation !== this.seriesGeneration) {
      this.seriesTags = make();
      this.seriesServer = server;
      this.seriesTls = tls;
      this.seriesPid = pid;
      this.seriesName = name;
      this.seriesGeneration = generation;
    }
    return this.seriesTags;
  }
}

export class HttpflowPlugin implements Plugin {
  readonly name = 'httpflow';
  readonly category = 'network' as const;
  private obj?: BpfObject;
  private ring?: RingBuffer;
  private reader?: SeriesReader;
  private counters?: BpfMap;
  private seriesRead = 0;
  /** Stop the periodic drains, expiries and scans. */
  private stopTicking: (() => void)[] = [];
  private tls?: TlsDiscovery;
  private execs?: RingBuffer;
  private readonly tlsLinks = new Map<string, Link[]>();
  private readonly pairer = new HttpPairer();
  private readonly clock = new EventClock();
  private emit: (points: Point[]) => void = () => {};
  private notHttp = 0;
  readonly gauges = new Set(['pending', 'paths_known', 'series', 'tls_files_probed']);
  readonly losses = new LossWarnings('httpflow', {
    ringbuf_full: 'HTTP message starts (per request) or path texts (aggregated) lost: ring buffer full',
    state_full: 'requests not kept in the kernel: no socket storage',
    queue_overflow: 'requests not tracked: too many waiting',
    kernel_queue_overflow: 'requests not tracked: too many waiting on one socket',
    overflow: 'exchanges counted in an endpoint pair\'s overflow series (path "*"): the series table was full',
    series_lost: 'exchanges lost: no room even for an overflow series',
    paths_missing: 'series reported without a path: its text never reached user space',
    unmatched: 'responses with no request waiting (aggregated): their exchange is not reported',
    unmatched_responses: 'responses with no request waiting (per request): their exchange is not reported',
    unanswered: 'requests whose connection ended before an answer, in the kernel: not reported',
    closed_unanswered: 'requests whose connection ended before an answer, in user space: not reported',
    expired_requests: 'requests unanswered for too long: not reported',
    not_http: 'message starts that did not parse as HTTP/1.x',
    tls_no_socket: 'TLS plaintext of a connection whose socket was never seen: not read',
    paths_unparsed: 'path texts that did not parse: their series carry no path',
    series_reads_busy: 'series maps read while an add may still have been running (waited 200 ms): exchanges it added may be lost',
  });
  /** Decoded addresses by socket, with the raw tuple they came from; cleared each expiry round. */
  private connections = new Map<number, CachedConnection>();
  /** Series' tags by what they say; cleared with the connections. */
  private seriesCache = new Map<string, Point['tags']>();

  constructor(
    private readonly netflow: NetflowPlugin,
    private readonly opts: HttpflowOptions,
  ) {}

  start(sink: Sink): void {
    this.emit = (points) => sink.points(points);
    const perRequest = !!this.opts.perRequest;
    try {
      // the egress program stashes the peers of datagrams sent, where netflow's byte hooks take
      // them; some kernels (5.10, 6.1) refuse bpf_get_current_pid_tgid in packet programs:
      // there the object loads with the stash off (dead code to the verifier), and netflow keeps
      // its own sendmsg hooks. Asked up front: a refused load costs a whole verification
      const stash = this.netflow.udpPeerStash;
      const udpStash = stash && kernelHasHelper(PROG_TYPE_CGROUP_SKB, HELPER_GET_CURRENT_PID_TGID) ? stash : undefined;
      if (stash && !udpStash) log.debug('httpflow: this kernel keeps bpf_get_current_pid_tgid from packet programs: UDP send peers stay with netflow');
      const obj = this.load(udpStash);
      const conns = this.netflow.connections;
      const threadSocks = this.netflow.threadSockets;
      if (!conns) log.warn('httpflow: netflow is not running: exchanges will carry no pid or process_name, and TLS is not read');
      this.counters = obj.map('http_counters');
      if (perRequest) this.ring = new RingBuffer(obj.map('http_events'), (buf, bytes) => this.processEvents(buf, bytes, this.emit));
      else this.reader = new SeriesReader(obj);
      const root = this.opts.cgroup2();
      const callsDns = this.callDnsPrograms(obj);
      obj.attachCgroup('http_egress', root);
      obj.attachCgroup('http_ingress', root);
      if (this.opts.tls !== false && conns && threadSocks) this.startTls(obj);
      // last, once nothing can fail: dnsflow then depends on these programs
      // (stopped before it, as the collector stops plugins in reverse order)
      if (callsDns) this.opts.dnsPackets!.handOverPackets();
      if (udpStash) this.netflow.sendPeersFromPackets();
    } catch (err) {
      this.stop();
      throw err;
    }
    this.clock.reset();
    this.stopTicking = [every(DRAIN_TICK_MS, () => (this.reader ? this.reader.drain() : this.ring?.drain()))];
    if (perRequest) {
      this.stopTicking.push(
        every(EXPIRE_MS, () => {
          this.pairer.expire(this.clock.now(), REQUEST_TIMEOUT_NS);
          this.connections = new Map();
          this.seriesCache = new Map();
        }),
      );
    }
  }

  /** Opens and loads the object, with netflow's maps in place of its own copies. */
  private load(udpStash: BpfMap | undefined): BpfObject {
    const obj = BpfObject.open('httpflow');
    this.obj = obj;
    const maxSeries = this.opts.maxSeries ?? DEFAULT_L7_MAX_SERIES;
    const udpLocals = this.netflow.udpLocals;
    obj.setConfig(
      encodeHttpflowConfig({ includeLoopback: this.opts.includeLoopback, wakeupBytes: WAKEUP_BYTES, perRequest: !!this.opts.perRequest, maxSeries, udpPeers: !!udpStash, udpLocals: !!udpLocals }),
    );
    for (const m of ['http_series_0', 'http_series_1']) obj.setMaxEntries(m, maxSeries + overflowRoom(maxSeries));
    const conns = this.netflow.connections;
    const threadSocks = this.netflow.threadSockets;
    if (conns) obj.reuseMap('conns', conns);
    if (threadSocks) obj.reuseMap('thread_socks', threadSocks);
    if (udpStash) obj.reuseMap('udp_stash', udpStash);
    if (udpLocals) obj.reuseMap('udp_locals', udpLocals);
    obj.load();
    return obj;
  }

  /**
   * Puts dnsflow's packet programs where httpflow's call them. False, and
   * dnsflow keeps its own, when it has none or the kernel refuses: a slot
   * filled without the other is harmless, as the called programs take no
   * packet before the hand-over.
   */
  private callDnsPrograms(obj: BpfObject): boolean {
    const dns = this.opts.dnsPackets?.packetPrograms();
    if (!dns) return false;
    try {
      obj.map('dns_egress_programs').update(u32(0), u32(dns.egress));
      obj.map('dns_ingress_programs').update(u32(0), u32(dns.ingress));
      return true;
    } catch (err) {
      log.warn(`httpflow: cannot call dnsflow's packet programs (${(err as Error).message.split('\n')[0]}): each keeps its own`);
      return false;
    }
  }

  /** TLS plaintext: probes on the TLS libraries in use, followed as processes come and go. */
  private startTls(obj: BpfObject): void {
    const said = new Set<string>();
    this.tls = new TlsDiscovery(
      { attach: (t) => this.attachTls(obj, t), detach: (t) => this.detachTls(obj, t) },
      {
        inspectGo: this.opts.inspectGo ?? inspectGoBinary,
        goOffsets: goOffsets(MIN_GO_MINOR),
        onUnsupported: (file, why) => {
          if (said.has(file)) return;
          said.add(file);
          log.info(`httpflow: not reading TLS in ${file}: ${why}`);
        },
      },
    );
    this.tls.scan();
    this.execs = followExecs(obj, 'tls_exec', 'tls_execs', 64 * 1024, () => this.tls);
    // an exec wakes us (a new program is probed at once); under a stream of
    // them, the drain re-arms that once per tick
    this.stopTicking.push(
      every(DRAIN_TICK_MS, () => this.execs?.drain()),
      every(SECOND_TICK_MS, () => this.tls?.scan()),
    );
  }

  private attachTls(obj: BpfObject, t: TlsTarget): boolean {
    const links: Link[] = [];
    // the return first: an entry without its return would only leave a stale call behind
    const probe = (prog: string, o: { func?: string; offset?: number; retprobe?: boolean }) =>
      links.push(obj.attachUprobe(prog, { binary: t.path, ...o }));
    try {
      if (t.library === 'openssl') {
        for (const c of OPENSSL_CALLS) {
          try {
            probe('ssl_return', { func: c.func, retprobe: true });
            probe(c.enter, { func: c.func });
          } catch (err) {
            if (c.required) throw err;
          }
        }
        probe('ssl_free_enter', { func: 'SSL_free' });
      } else if (t.go) {
        // Write is read whole at its entry; Read at each of its return
        // instructions (no return probes on Go code: its stacks move)
        for (const offset of t.go.read.returns) probe('go_read_return', { offset });
        probe('go_read_enter', { offset: t.go.read.entry });
        probe('go_write_enter', { offset: t.go.write.entry });
      }
    } catch (err) {
      for (const l of links) obj.detach(l);
      log.warn(`httpflow: cannot read TLS in ${t.label}: ${(err as Error).message.split('\n')[0]}`);
      return false;
    }
    this.tlsLinks.set(t.key, links);
    log.info(`httpflow: reading TLS plaintext in ${t.label}`);
    return true;
  }

  private detachTls(obj: BpfObject, t: TlsTarget): void {
    for (const l of this.tlsLinks.get(t.key) ?? []) obj.detach(l);
    this.tlsLinks.delete(t.key);
    log.info(`httpflow: no longer reading TLS in ${t.label}: no process uses it`);
  }

  /** One drained chunk of ring records: points for every exchange they complete go to `emit`. */
  processEvents(buf: Buffer, bytes: number, emit: (points: Point[]) => void): void {
    const points = new PointGroups(emit);
    // k8s answers change with the cluster: its generation is part of what a series was made for
    const generation = this.opts.k8s?.generation() ?? 0;
    forEachRecord(buf, bytes, (off, len) => {
      if (len < HTTP_EVENT.data) return;
      const sk = httpEventSocket(buf, off);
      if ((buf[off + HTTP_EVENT.kind] & ~HTTP_TLS) === HTTP_CONN_END) {
        // its requests will not be answered, and its address may soon be another socket's
        this.pairer.closed(sk);
        return;
      }
      // requests and responses of one socket: addresses formatted once per connection
      let cached = this.connections.get(sk);
      // a socket's memory is reused by later sockets: trust the cache only for the same addresses
      if (!cached || !cached.sameTuple(buf, off + HTTP_EVENT.t)) {
        cached = new CachedConnection(buf, off + HTTP_EVENT.t, decodeHttpConnection(buf, off));
        this.connections.set(sk, cached);
      }
      const dataOffset = off + HTTP_EVENT.data;
      const dataLength = Math.min(buf.readUInt16LE(off + HTTP_EVENT.len), HTTP_CAPTURE, len - HTTP_EVENT.data);
      const pid = buf.readUInt32LE(off + HTTP_EVENT.pid);
      const kind = buf[off + HTTP_EVENT.kind] & ~HTTP_TLS;
      const tls = (buf[off + HTTP_EVENT.kind] & HTTP_TLS) !== 0;
      let x: Exchange | undefined;
      if (kind === HTTP_EXCHANGE) {
        // the common case: the kernel kept the request and sends it with its response
        x = this.exchange(buf, off, dataOffset, dataLength, pid, cached);
        if (!x) {
          this.notHttp++;
          return;
        }
      } else if (kind === HTTP_REQUEST) {
        const r = parseRequestLine(buf, dataOffset, dataLength);
        if (!r) {
          this.notHttp++;
          return;
        }
        const processName = pid ? cached.commOf(buf, off, pid) : '';
        this.pairer.request(sk, new Exchange(r.method, r.path, r.version, this.clock.read(buf, off + HTTP_EVENT.ts), pid, processName));
        return;
      } else {
        const status = parseStatus(buf, dataOffset, dataLength);
        if (!status) {
          this.notHttp++;
          return;
        }
        x = this.pairer.response(sk, status, this.clock.read(buf, off + HTTP_EVENT.ts), this.clock.read(buf, off + HTTP_EVENT.req_end_ts), pid);
        if (!x) return;
      }
      // the server learns its owner only once it has read the request
      if (!x.processName) x.processName = cached.commOf(buf, off, x.pid);
      // the response went out from here: this side is the server
      const serverSide = buf[off + HTTP_EVENT.egress] !== 0;
      const done = x;
      const tags = cached.series(serverSide, tls, x.pid, x.processName, generation, () =>
        this.seriesFor(cached!.conn, serverSide, tls, done, generation),
      );
      points.push(exchangePoint(tags, x, this.clock));
    });
    points.end();
  }

  /** A request and its response from one kernel record; undefined when either is not HTTP. */
  private exchange(buf: Buffer, off: number, dataOffset: number, dataLength: number, pid: number, cached: CachedConnection): Exchange | undefined {
    const r = parseRequestLine(buf, dataOffset, dataLength);
    if (!r) return undefined;
    const statusOffset = off + HTTP_EVENT.status;
    let statusLength = 0; // zero-padded
    while (statusLength < HTTP_STATUS_CAPTURE && buf[statusOffset + statusLength] !== 0) statusLength++;
    const status = parseStatus(buf, statusOffset, statusLength);
    if (!status) return undefined;
    const seenNs = this.clock.read(buf, off + HTTP_EVENT.req_ts);
    const x = new Exchange(r.method, r.path, r.version, seenNs, pid, pid ? cached.commOf(buf, off, pid) : '');
    this.pairer.exchanged(x, status, this.clock.read(buf, off + HTTP_EVENT.ts), this.clock.read(buf, off + HTTP_EVENT.req_end_ts));
    return x;
  }

  /**
   * The series' tags of a new socket. Short connections from one client
   * differ only in a collapsed ephemeral port: they share one tags object,
   * encoded once.
   */
  private seriesFor(c: HttpConnection, serverSide: boolean, tls: boolean, x: Exchange, generation: number): Point['tags'] {
    const localPort = !serverSide && isEphemeralPort(c.localPort) ? '*' : c.localPort;
    const remotePort = serverSide && isEphemeralPort(c.remotePort) ? '*' : c.remotePort;
    const key = `${serverSide ? 's' : 'c'}${tls ? 't' : ''}|${c.localIp}|${localPort}|${c.remoteIp}|${remotePort}|${x.pid}|${x.processName}|${generation}`;
    let series = this.seriesCache.get(key);
    if (series === undefined) {
      series = httpTags(c, serverSide, x.pid, x.processName, tls, this.opts.k8s, this.opts.containers);
      if (this.seriesCache.size >= SERIES_CACHE) this.seriesCache.clear();
      this.seriesCache.set(key, series);
    }
    return series;
  }

  /** Per request: what is queued still; aggregated: the interval's series. */
  collect(now: bigint): Point[] {
    if (!this.reader) {
      this.ring?.drain();
      return [];
    }
    const series = this.reader.read();
    this.seriesRead = series.length;
    return series.map((s) => seriesPoint(s, now, this.opts.k8s, this.opts.containers));
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = this.counters?.namedCounters(HTTP_COUNTER_NAMES) ?? {};
    if (this.tls) {
      out.tls_files_probed = this.tlsLinks.size;
      for (const [k, v] of Object.entries(this.tls.counts)) out[`tls_${k}`] = v;
    }
    if (this.reader) {
      return Object.assign(out, {
        series: this.seriesRead,
        paths_known: this.reader.pathsKnown,
        paths_missing: this.reader.pathsMissing,
        paths_unparsed: this.reader.pathsUnparsed,
        series_reads_busy: this.reader.seriesReadsBusy,
      });
    }
    return Object.assign(out, this.pairer.counts, { pending: this.pairer.pending, not_http: this.notHttp });
  }

  stop(): void {
    for (const stop of this.stopTicking) stop();
    this.stopTicking = [];
    this.tls = undefined;
    this.tlsLinks.clear();
    this.execs?.close();
    this.execs = undefined;
    this.ring?.close();
    this.ring = undefined;
    this.reader?.close();
    this.reader = undefined;
    this.obj?.close();
    this.obj = undefined;
  }

  hooks(): Record<string, string> {
    return this.tls ? { http: 'cgroup_skb', tls: 'uprobe' } : { http: 'cgroup_skb' };
  }
}
