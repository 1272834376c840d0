// httpflow (SPEC §4.3): every HTTP/1.x request made or served on this host.
// Its programs live in the netflow object, whose connection table gives each
// socket's owner.
import { BpfMap, RingBuffer, forEachRecord } from '../../bpf/native';
import { ipType, isEphemeralPort } from '../../enrich/iptype';
import type { Point } from '../../output/point';
import { monotonicToWallOffsetNs } from '../../timefmt';
import type { NetflowPlugin } from '../netflow/plugin';
import type { Emit, Plugin } from '../plugin';
import { decodeHttpEvent, HTTP_COUNTER_NAMES, HTTP_EVENT, HTTP_REQUEST, HttpPacketEvent } from './decode';
import { Exchange, HttpPairer } from './pairing';
import { parseRequestLine, parseStatusLine } from './parse';

const DRAIN_MS = 200;
const EXPIRE_MS = 5000;
/** A request with no response by then is dropped (and counted). */
export const REQUEST_TIMEOUT_NS = 120_000_000_000n;

export interface HttpflowOptions {
  cgroup2: string;
}

export function httpPoint(ev: HttpPacketEvent, x: Exchange, wallOffsetNs: bigint): Point {
  // the side that sent the request is the client
  const direction = ev.egress ? 'incoming' : 'outgoing'; // ev is the response
  const srcPort = direction === 'outgoing' && isEphemeralPort(ev.localPort) ? '*' : String(ev.localPort);
  const dstPort = direction === 'incoming' && isEphemeralPort(ev.remotePort) ? '*' : String(ev.remotePort);
  return {
    measurement: 'httpflow',
    tags: {
      source: 'httpflow',
      direction,
      transport: 'tcp',
      family: ev.family,
      pid: x.pid ? String(x.pid) : undefined,
      process_name: x.processName || ev.processName,
      src_ip: ev.localIp,
      src_port: srcPort,
      src_ip_type: ipType(ev.localIp),
      dst_ip: ev.remoteIp,
      dst_port: dstPort,
      dst_ip_type: ipType(ev.remoteIp),
    },
    fields: {
      http_version: x.version,
      latency: x.latencyNs,
      method: x.method,
      path: x.path,
      status_code: x.status,
    },
    time: x.seenNs + wallOffsetNs,
  };
}

export class HttpflowPlugin implements Plugin {
  readonly name = 'httpflow';
  readonly category = 'network' as const;
  private ring?: RingBuffer;
  private counters?: BpfMap;
  private timers: NodeJS.Timeout[] = [];
  private readonly pairer = new HttpPairer();
  private offsetNs = 0n;
  private emit: Emit = () => {};
  private notHttp = 0;

  constructor(
    private readonly netflow: NetflowPlugin,
    private readonly opts: HttpflowOptions,
  ) {}

  start(emit: Emit): void {
    this.emit = emit;
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
    const expire = setInterval(() => this.pairer.expire(process.hrtime.bigint(), REQUEST_TIMEOUT_NS), EXPIRE_MS);
    drain.unref();
    expire.unref();
    this.timers = [drain, expire];
  }

  private onEvents(buf: Buffer, bytes: number): void {
    const points: Point[] = [];
    forEachRecord(buf, bytes, (off, len) => {
      if (len < HTTP_EVENT.data) return;
      const ev = decodeHttpEvent(buf, off);
      // requests and responses of one connection, on one side of it
      const conn = `${ev.sk}`;
      if (ev.kind === HTTP_REQUEST) {
        const r = parseRequestLine(ev.data);
        if (!r) return void this.notHttp++;
        this.pairer.request(conn, { ...r, seenNs: ev.monotonicNs, pid: ev.pid, processName: ev.processName });
        return;
      }
      const s = parseStatusLine(ev.data);
      if (!s) return void this.notHttp++;
      const x = this.pairer.response(conn, s.status, ev.monotonicNs, ev.reqEndNs, ev.pid);
      if (x) points.push(httpPoint(ev, x, this.offsetNs));
    });
    if (points.length) this.emit(points);
  }

  collect(): Point[] {
    this.ring?.drain();
    return [];
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    if (this.counters) {
      const sums = this.counters.sumPerCpuCounters();
      HTTP_COUNTER_NAMES.forEach((name, i) => (out[name] = Number(sums[i] ?? 0n)));
    }
    return Object.assign(out, this.pairer.counts, { pending: this.pairer.pending, not_http: this.notHttp });
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.ring?.close();
    this.ring = undefined;
  }
}
