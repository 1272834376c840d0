// httpflow's default mode (SPEC §4.3): the kernel sums each interval's
// exchanges into series (bpf/httpflow.bpf.c); this reads them. The kernel
// adds to one of two series maps; once per interval the other becomes the
// active one, and the one just left is read and emptied, so a read never
// races an update. A path's text arrives once, the first time the kernel
// sees its hash.
import { BpfMap, BpfObject, forEachRecord, RingBuffer } from '../../bpf/native';
import { quantiles } from '../../aggregate/histogram';
import { decodeEnds, HTTP_CONTROL, HTTP_PATH_EVENT, HTTP_SERIES, HTTP_SERIES_KEY, HttpConnection } from './decode';
import { parseRequestLine } from './parse';

/** Method ids as the kernel numbers them (method_of in bpf/httpflow.bpf.c). */
export const METHODS = ['*', 'GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'] as const;

/** Path texts kept; the kernel keeps as many hashes (http_paths). */
const MAX_PATHS = 65_536;
/** Series read per batch. */
const READ_CHUNK = 1024;
/** After a switch, how long programs that read the old index may still add to the old map. */
const SETTLE_MS = 10;

export interface HttpSeries {
  conn: HttpConnection;
  /** This side answered: incoming. */
  server: boolean;
  pid: number;
  processName: string;
  method: string;
  /** "*" for an endpoint pair's overflow series; undefined when the text was never received. */
  path?: string;
  status: number;
  version: '1.0' | '1.1' | '*';
  count: number;
  latencyMeanNs: number;
  latencyMaxNs: number;
  latencyP50Ns: number;
  latencyP90Ns: number;
  latencyP99Ns: number;
}

const settle = new Int32Array(new SharedArrayBuffer(4));

export class SeriesReader {
  private readonly paths = new Map<bigint, string>();
  private readonly control: BpfMap;
  private readonly series: BpfMap[];
  private readonly knownPaths: BpfMap;
  private readonly ring: RingBuffer;
  /** Series read whose path text never arrived (its record was lost): reported with no path. */
  pathsMissing = 0;
  /** Path records user space could not read as a request line. */
  pathsUnparsed = 0;

  constructor(obj: BpfObject) {
    this.control = obj.map('http_control');
    this.series = [obj.map('http_series_0'), obj.map('http_series_1')];
    this.knownPaths = obj.map('http_paths');
    this.ring = new RingBuffer(obj.map('http_path_events'), (buf, bytes) => this.onPaths(buf, bytes), 256 * 1024);
  }

  get pathsKnown(): number {
    return this.paths.size;
  }

  /** Picks up path texts the kernel queued (also done before each read). */
  drain(): void {
    this.ring.drain(64);
  }

  private onPaths(buf: Buffer, bytes: number): void {
    forEachRecord(buf, bytes, (off, len) => {
      if (len < HTTP_PATH_EVENT.data) return;
      const hash = buf.readBigUInt64LE(off + HTTP_PATH_EVENT.path);
      const n = Math.min(buf.readUInt16LE(off + HTTP_PATH_EVENT.len), len - HTTP_PATH_EVENT.data);
      const r = parseRequestLine(buf, off + HTTP_PATH_EVENT.data, n);
      if (!r) {
        this.pathsUnparsed++;
        return;
      }
      if (!this.paths.has(hash) && this.paths.size >= MAX_PATHS) this.forgetOldestPath();
      this.paths.delete(hash); // re-inserted: the newest stays longest
      this.paths.set(hash, r.path);
    });
  }

  /** Forgets the oldest path here and in the kernel, which then sends it again when it sees it. */
  private forgetOldestPath(): void {
    const oldest = this.paths.keys().next().value as bigint;
    this.paths.delete(oldest);
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(oldest);
    this.knownPaths.delete(key);
  }

  /** Switches the kernel to the other series map, then reads and empties the one it was adding to. */
  read(): HttpSeries[] {
    const zero = Buffer.alloc(4);
    const ctl = this.control.lookup(zero) ?? Buffer.alloc(HTTP_CONTROL.size);
    const old = ctl.readUInt32LE(HTTP_CONTROL.active) & 1;
    const next = 1 - old;
    ctl.writeUInt32LE(next, HTTP_CONTROL.active);
    ctl.writeBigUInt64LE(0n, HTTP_CONTROL.series_made + next * 8);
    this.control.update(zero, ctl);
    // programs run for microseconds: one that read the old index is done by then
    Atomics.wait(settle, 0, 0, SETTLE_MS);
    this.drain();
    const out: HttpSeries[] = [];
    this.series[old].forEachChunk(
      READ_CHUNK,
      ({ count, keys, values }) => {
        for (let i = 0; i < count; i++) out.push(this.decode(keys, i * HTTP_SERIES_KEY.size, values, i * this.series[old].valueSize));
      },
      { delete: true },
    );
    return out;
  }

  private decode(keys: Buffer, k: number, values: Buffer, v: number): HttpSeries {
    const hash = keys.readBigUInt64LE(k + HTTP_SERIES_KEY.path);
    let path: string | undefined = '*';
    if (hash !== 0n) {
      path = this.paths.get(hash);
      if (path === undefined) this.pathsMissing++;
    }
    const count = Number(values.readBigUInt64LE(v + HTTP_SERIES.count));
    const max = Number(values.readBigUInt64LE(v + HTTP_SERIES.latency_max));
    const [p50, p90, p99] = quantiles(values, v + HTTP_SERIES.hist, count, max, [0.5, 0.9, 0.99]);
    let end = k + HTTP_SERIES_KEY.comm;
    while (end < k + HTTP_SERIES_KEY.comm + 16 && keys[end] !== 0) end++;
    const overflow = hash === 0n;
    return {
      conn: decodeEnds(keys, k),
      server: keys[k + HTTP_SERIES_KEY.server] !== 0,
      pid: keys.readUInt32LE(k + HTTP_SERIES_KEY.pid),
      processName: keys.toString('utf8', k + HTTP_SERIES_KEY.comm, end),
      method: METHODS[keys[k + HTTP_SERIES_KEY.method]] ?? '*',
      path,
      status: keys.readUInt16LE(k + HTTP_SERIES_KEY.status),
      version: overflow ? '*' : keys[k + HTTP_SERIES_KEY.version] === 0 ? '1.0' : '1.1',
      count,
      latencyMeanNs: count ? Math.round(Number(values.readBigUInt64LE(v + HTTP_SERIES.latency_sum)) / count) : 0,
      latencyMaxNs: max,
      latencyP50Ns: p50,
      latencyP90Ns: p90,
      latencyP99Ns: p99,
    };
  }

  close(): void {
    this.ring.close();
  }
}
