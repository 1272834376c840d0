// httpflow (SPEC §4.3): every HTTP/1.x request made or served on this host.
// Its programs live in the netflow object, whose connection table gives each
// socket's owner.
import { BpfMap, RingBuffer, forEachRecord } from '../../bpf/native';
import { isEphemeralPort } from '../../enrich/iptype';
import type { FlowTagger } from '../../enrich/k8s';
import { encodeSeries, escapeStringField } from '../../output/lineprotocol';
import type { Point } from '../../output/point';
import { monotonicToWallOffsetNs } from '../../timefmt';
import type { NetflowPlugin } from '../netflow/plugin';
import { LossWarnings } from '../loss';
import type { Plugin, Sink } from '../plugin';
import {
  decodeHttpConnection,
  decodeHttpEvent,
  httpEventComm,
  HTTP_COUNTER_NAMES,
  HTTP_EVENT,
  HTTP_REQUEST,
  HttpConnection,
  httpEventSocket,
} from './decode';
import { Exchange, HttpPairer } from './pairing';
import { parseRequestLine, parseStatusLine } from './parse';

const DRAIN_MS = 200;
const TUPLE_BYTES = 48;
const EXPIRE_MS = 5000;
/** A request with no response by then is dropped (and counted). */
export const REQUEST_TIMEOUT_NS = 120_000_000_000n;

export interface HttpflowOptions {
  cgroup2: string;
  /** Kubernetes tags for each end. */
  k8s?: FlowTagger;
}

/** The tags of an exchange: all of them belong to the connection and its side. */
export function httpTags(c: HttpConnection, serverSide: boolean, pid: number, processName: string, k8s?: FlowTagger): Point['tags'] {
  const direction = serverSide ? 'incoming' : 'outgoing';
  const tags: Point['tags'] = {
    source: 'httpflow',
    direction,
    transport: 'tcp',
    family: c.family,
    pid: pid ? String(pid) : undefined,
    process_name: processName,
    src_ip: c.localIp,
    src_port: !serverSide && isEphemeralPort(c.localPort) ? '*' : String(c.localPort),
    src_ip_type: c.localType,
    dst_ip: c.remoteIp,
    dst_port: serverSide && isEphemeralPort(c.remotePort) ? '*' : String(c.remotePort),
    dst_ip_type: c.remoteType,
  };
  k8s?.enrich(tags, { srcIp: c.localIp, srcPort: c.localPort, dstIp: c.remoteIp, dstPort: c.remotePort, transport: 'tcp', pid });
  // the HTTP exchange itself says which side serves: a service's port does not overrule it
  tags.direction = direction;
  return tags;
}

/** Fields and timestamp of one exchange, after its cached series. */
export function httpLine(series: string, x: Exchange, wallOffsetNs: bigint): string {
  return (
    `${series} http_version="${x.version}",latency=${x.latencyNs}i,method="${x.method}",` +
    `path=${escapeStringField(x.path)},status_code=${x.status}i ${x.seenNs + wallOffsetNs}`
  );
}

interface CachedConnection {
  tuple: Buffer;
  conn: HttpConnection;
  /** Encoded measurement and tags, for the owner and side it was made for. */
  series?: string;
  seriesKey?: string;
}

export class HttpflowPlugin implements Plugin {
  readonly name = 'httpflow';
  readonly category = 'network' as const;
  private ring?: RingBuffer;
  private counters?: BpfMap;
  private timers: NodeJS.Timeout[] = [];
  private readonly pairer = new HttpPairer();
  private offsetNs = 0n;
  private emit: (lines: string[]) => void = () => {};
  private commonTags: Readonly<Record<string, string>> = {};
  private notHttp = 0;
  readonly gauges = new Set(['pending']);
  readonly losses = new LossWarnings('httpflow', {
    ringbuf_full: 'HTTP message starts lost: ring buffer full',
    state_full: 'request end times not kept: connection table full',
    queue_overflow: 'requests not tracked: too many waiting',
  });
  /** Decoded addresses by socket, with the raw tuple they came from; cleared each expiry round. */
  private connections = new Map<number, CachedConnection>();

  constructor(
    private readonly netflow: NetflowPlugin,
    private readonly opts: HttpflowOptions,
  ) {}

  start(sink: Sink): void {
    this.emit = (lines) => sink.lines(lines);
    this.commonTags = sink.commonTags;
    const obj = this.netflow.object;
    if (!obj) throw new Error('needs netflow, which did not start');
    this.counters = obj.map('http_counters');
    this.ring = new RingBuffer(obj.map('http_events'), (buf, bytes) => this.onEvents(buf, bytes));
    try {
      obj.attachCgroup('http_egress', this.opts.cgroup2);
      obj.attachCgroup('http_ingress', this.opts.cgroup2);
    } catch (err) {
      this.stop();
      throw err;
    }
    this.offsetNs = monotonicToWallOffsetNs();
    const drain = setInterval(() => this.ring?.drain(), DRAIN_MS);
    const expire = setInterval(() => {
      this.pairer.expire(process.hrtime.bigint(), REQUEST_TIMEOUT_NS);
      this.connections = new Map();
    }, EXPIRE_MS);
    drain.unref();
    expire.unref();
    this.timers = [drain, expire];
  }

  private onEvents(buf: Buffer, bytes: number): void {
    const lines: string[] = [];
    forEachRecord(buf, bytes, (off, len) => {
      if (len < HTTP_EVENT.data) return;
      // requests and responses of one socket: addresses formatted once per connection
      const sk = httpEventSocket(buf, off);
      let cached = this.connections.get(sk);
      // a socket's memory is reused by later sockets: trust the cache only for the same addresses
      if (!cached || buf.compare(cached.tuple, 0, TUPLE_BYTES, off + HTTP_EVENT.t, off + HTTP_EVENT.t + TUPLE_BYTES) !== 0) {
        cached = { tuple: Buffer.from(buf.subarray(off + HTTP_EVENT.t, off + HTTP_EVENT.t + TUPLE_BYTES)), conn: decodeHttpConnection(buf, off) };
        this.connections.set(sk, cached);
      }
      const ev = decodeHttpEvent(buf, off, cached.conn, sk);
      if (ev.kind === HTTP_REQUEST) {
        const r = parseRequestLine(buf.subarray(ev.dataOffset, ev.dataOffset + ev.dataLength));
        if (!r) return void this.notHttp++;
        const processName = ev.pid ? httpEventComm(buf, off) : '';
        this.pairer.request(sk, { ...r, seenNs: ev.monotonicNs, pid: ev.pid, processName });
        return;
      }
      const s = parseStatusLine(buf, ev.dataOffset, ev.dataLength);
      if (!s) return void this.notHttp++;
      const x = this.pairer.response(sk, s.status, ev.monotonicNs, ev.reqEndNs, ev.pid);
      if (!x) return;
      // the server learns its owner only once it has read the request
      if (!x.processName) x.processName = httpEventComm(buf, off);
      // ev is the response: sent from here means this side is the server
      // k8s answers change with the cluster: its generation is part of what the cache was made for
      const key = `${ev.egress}|${x.pid}|${x.processName}|${this.opts.k8s?.generation() ?? 0}`;
      if (cached.seriesKey !== key) {
        const tags = httpTags(cached.conn, ev.egress, x.pid, x.processName, this.opts.k8s);
        cached.series = encodeSeries('httpflow', { ...tags, ...this.commonTags });
        cached.seriesKey = key;
      }
      lines.push(httpLine(cached.series!, x, this.offsetNs));
    });
    if (lines.length) this.emit(lines);
  }

  collect(): Point[] {
    this.ring?.drain();
    return [];
  }

  stats(): Record<string, number> {
    const out = this.counters?.namedCounters(HTTP_COUNTER_NAMES) ?? {};
    return Object.assign(out, this.pairer.counts, { pending: this.pairer.pending, not_http: this.notHttp });
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.ring?.close();
    this.ring = undefined;
  }
}
