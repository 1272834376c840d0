// httpflow's default mode (SPEC §4.3): the kernel sums each interval's
// exchanges into series (bpf/httpflow.bpf.c); this reads them (through
// SeriesTables). A path's text arrives once, the first time the kernel sees
// its hash.
import { BpfMap, BpfObject, forEachRecord, RingBuffer } from '../../bpf/native';
import { LatencyStats, latencyStats, SeriesTables } from '../../aggregate/series';
import { decodeEnds, HTTP_PATH_EVENT, HTTP_SERIES_KEY, HttpConnection } from './decode';
import { parseRequestLine } from './parse';

/** Method ids as the kernel numbers them (method_of in bpf/httpflow.bpf.c). */
export const METHODS = ['*', 'GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'] as const;

/** Path texts kept; the kernel keeps as many hashes (http_paths). */
const MAX_PATHS = 65_536;

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
  /** Read from a TLS library's plaintext. */
  tls: boolean;
  latency: LatencyStats;
}

export class SeriesReader {
  private readonly paths = new Map<bigint, string>();
  private readonly tables: SeriesTables;
  private readonly knownPaths: BpfMap;
  private readonly pathsEpoch: BpfMap;
  private epoch = 0;
  private readonly ring: RingBuffer;
  /** Series read whose path text never arrived (its record was lost): reported with no path. */
  pathsMissing = 0;
  /** Path records user space could not read as a request line. */
  pathsUnparsed = 0;

  constructor(obj: BpfObject) {
    this.tables = new SeriesTables(obj.map('http_control'), [obj.map('http_series_0'), obj.map('http_series_1')], obj.map('http_series_in_progress'));
    this.knownPaths = obj.map('http_paths');
    this.pathsEpoch = obj.map('http_paths_epoch');
    this.ring = new RingBuffer(obj.map('http_path_events'), (buf, bytes) => this.onPaths(buf, bytes), 256 * 1024);
  }

  /** Series maps read while an add may still have been running on them (SeriesTables.readsBusy). */
  get seriesReadsBusy(): number {
    return this.tables.readsBusy;
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
      const p = decodePathEvent(buf, off, len);
      if (!p) {
        this.pathsUnparsed++;
        return;
      }
      if (!this.paths.has(p.hash) && this.paths.size >= MAX_PATHS) this.forgetOldestPath();
      this.paths.delete(p.hash); // re-inserted: the newest stays longest
      this.paths.set(p.hash, p.path);
    });
  }

  /**
   * Forgets the oldest path here and in the kernel, which then sends it again
   * when it sees it: the epoch moves on, so that no connection trusts its note
   * of the last path it sent.
   */
  private forgetOldestPath(): void {
    const oldest = this.paths.keys().next().value as bigint;
    this.paths.delete(oldest);
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(oldest);
    this.knownPaths.delete(key);
    const epoch = Buffer.alloc(4);
    epoch.writeUInt32LE((this.epoch = (this.epoch + 1) >>> 0));
    this.pathsEpoch.update(Buffer.alloc(4), epoch);
  }

  /** The interval's series: the kernel switches maps, the one it left is read and emptied. */
  read(): HttpSeries[] {
    // a path's text is queued before its first exchange is summed: whatever the
    // timer has not picked up yet (a busy event loop) is read first
    this.drain();
    const out: HttpSeries[] = [];
    this.tables.switchAndRead((keys, k, values, v) => out.push(decodeHttpSeries(keys, k, values, v, this.pathOf)));
    return out;
  }

  /** A series' path: counted as missing when its text never arrived. */
  private readonly pathOf = (hash: bigint): string | undefined => {
    const path = this.paths.get(hash);
    if (path === undefined) this.pathsMissing++;
    return path;
  };


  close(): void {
    this.ring.close();
  }
}

/** A path record (struct http_path_event, at least its header): the hash and the path of its request line, if it is one. */
export function decodePathEvent(buf: Buffer, off: number, len: number): { hash: bigint; path: string } | undefined {
  const hash = buf.readBigUInt64LE(off + HTTP_PATH_EVENT.path);
  const n = Math.min(buf.readUInt16LE(off + HTTP_PATH_EVENT.len), len - HTTP_PATH_EVENT.data);
  const r = parseRequestLine(buf, off + HTTP_PATH_EVENT.data, n);
  return r && { hash, path: r.path };
}

/** One series: its key (struct http_series_key) and value (struct latency_series); `pathOf` names a path hash. */
export function decodeHttpSeries(keys: Buffer, k: number, values: Buffer, v: number, pathOf: (hash: bigint) => string | undefined): HttpSeries {
  const hash = keys.readBigUInt64LE(k + HTTP_SERIES_KEY.path);
  let end = k + HTTP_SERIES_KEY.comm;
  while (end < k + HTTP_SERIES_KEY.comm + 16 && keys[end] !== 0) end++;
  const overflow = hash === 0n;
  return {
    conn: decodeEnds(keys, k),
    server: keys[k + HTTP_SERIES_KEY.server] !== 0,
    pid: keys.readUInt32LE(k + HTTP_SERIES_KEY.pid),
    processName: keys.toString('utf8', k + HTTP_SERIES_KEY.comm, end),
    method: METHODS[keys[k + HTTP_SERIES_KEY.method]] ?? '*',
    // "*": an endpoint pair's overflow series
    path: overflow ? '*' : pathOf(hash),
    status: keys.readUInt16LE(k + HTTP_SERIES_KEY.status),
    version: overflow ? '*' : keys[k + HTTP_SERIES_KEY.version] === 0 ? '1.0' : '1.1',
    tls: keys[k + HTTP_SERIES_KEY.tls] !== 0,
    latency: latencyStats(values, v),
  };
}
