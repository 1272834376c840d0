// A local stand-in for the Kubernetes API server, speaking its wire format for
// what the collector asks: paginated lists and watch streams (newline-delimited
// JSON events) with resourceVersions, bookmarks, 410 Gone for versions that
// were compacted away, Status errors, bearer tokens and TLS. Tests change the
// objects and cut connections; it counts every request it answers.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown }; [k: string]: unknown };

interface Resource {
  /** e.g. /api/v1/pods */
  path: string;
  kind: string;
  apiVersion: string;
  objects: Map<string, Obj>;
}

interface HistoryEvent {
  rv: number;
  path: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

interface OpenWatch {
  path: string;
  res: http.ServerResponse;
  bookmarks: boolean;
}

export interface RequestRecord {
  path: string;
  verb: 'list' | 'watch';
  query: Record<string, string>;
  at: number;
}

export interface EmulatorOptions {
  /** Serve TLS with a certificate from a fresh test CA (written to caPath). */
  tls?: boolean;
  /** Required bearer token; requests without it get 401. */
  token?: string;
  /** A watch's timeoutSeconds lasts this many ms per second (1000 = real time). */
  msPerSecond?: number;
  /** Interval between bookmarks on watches that asked for them. */
  bookmarkMs?: number;
  /** Never end watch streams, whatever timeoutSeconds says (a half-open connection). */
  hangWatches?: boolean;
}

const RESOURCES: [string, string, string][] = [
  ['/api/v1/pods', 'Pod', 'v1'],
  ['/api/v1/services', 'Service', 'v1'],
  ['/apis/discovery.k8s.io/v1/endpointslices', 'EndpointSlice', 'discovery.k8s.io/v1'],
  ['/apis/apps/v1/replicasets', 'ReplicaSet', 'apps/v1'],
  ['/apis/apps/v1/deployments', 'Deployment', 'apps/v1'],
];

function status(code: number, reason: string, message: string) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** A CA and a server certificate for 127.0.0.1, made with openssl in a temporary directory. */
function makeCertificates(): { dir: string; ca: string; key: Buffer; cert: Buffer } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-kube-'));
  const sh = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  sh(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=test-cluster-ca', '-days', '2']);
  sh(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-apiserver']);
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  sh(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext']);
  return { dir, ca: path.join(dir, 'ca.crt'), key: fs.readFileSync(path.join(dir, 'server.key')), cert: fs.readFileSync(path.join(dir, 'server.crt')) };
}

export class KubeApiEmulator {
  private server!: http.Server;
  private readonly resources = new Map<string, Resource>();
  private history: HistoryEvent[] = [];
  /** Versions up to this one are gone: watching from them answers 410. */
  private compactedRv = 0;
  private rv = 1000;
  private watches = new Set<OpenWatch>();
  private sockets = new Set<Socket>();
  private certDir?: string;
  readonly requests: RequestRecord[] = [];
  url = '';
  caPath?: string;

  constructor(private readonly opts: EmulatorOptions = {}) {
    for (const [p, kind, apiVersion] of RESOURCES) this.resources.set(p, { path: p, kind, apiVersion, objects: new Map() });
  }

  async start(): Promise<this> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    if (this.opts.tls) {
      const c = makeCertificates();
      this.certDir = c.dir;
      this.caPath = c.ca;
      this.server = https.createServer({ key: c.key, cert: c.cert }, handler);
    } else {
      this.server = http.createServer(handler);
    }
    this.server.on(this.opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const port = (this.server.address() as AddressInfo).port;
    this.url = `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.certDir) fs.rmSync(this.certDir, { recursive: true, force: true });
  }

  get resourceVersion(): number {
    return this.rv;
  }

  /** Creates or replaces an object of the collection at `collection` (e.g. /api/v1/pods). */
  apply(collection: string, obj: Obj): void {
    const r = this.resource(collection);
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const type = r.objects.has(key) ? 'MODIFIED' : 'ADDED';
    const stored: Obj = { ...obj, metadata: { uid: `uid-${key}`, ...obj.metadata, resourceVersion: String(++this.rv) } };
    r.objects.set(key, stored);
    this.publish({ rv: this.rv, path: collection, type, object: stored });
  }

  delete(collection: string, namespace: string, name: string): void {
    const r = this.resource(collection);
    const key = `${namespace}/${name}`;
    const old = r.objects.get(key);
    if (!old) throw new Error(`no ${key} in ${collection}`);
    r.objects.delete(key);
    const gone: Obj = { ...old, metadata: { ...old.metadata, resourceVersion: String(++this.rv) } };
    this.publish({ rv: this.rv, path: collection, type: 'DELETED', object: gone });
  }

  /** Forgets the event history, as etcd compaction does: older versions answer 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Drops every open watch connection without a word, as a failing load balancer would. */
  cutWatches(): number {
    const n = this.watches.size;
    for (const w of this.watches) w.res.socket?.destroy();
    this.watches.clear();
    return n;
  }

  /** Writes `data` as it is to every open watch of `collection`: for streams no API server sends. */
  sendRaw(collection: string, data: string | Buffer): void {
    for (const w of this.watches) if (w.path === collection) w.res.write(data);
  }

  /** Number of watches open now, per collection. */
  openWatches(collection?: string): number {
    return [...this.watches].filter((w) => !collection || w.path === collection).length;
  }

  count(verb: 'list' | 'watch', collection?: string): number {
    return this.requests.filter((r) => r.verb === verb && (!collection || r.path === collection)).length;
  }

  private resource(collection: string): Resource {
    const r = this.resources.get(collection);
    if (!r) throw new Error(`unknown collection ${collection}`);
    return r;
  }

  private publish(ev: HistoryEvent): void {
    this.history.push(ev);
    for (const w of this.watches) if (w.path === ev.path) this.send(w, ev.type, ev.object);
  }

  private send(w: OpenWatch, type: string, object: unknown): void {
    w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  private reply(res: http.ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === '1' || query.watch === 'true';
    this.requests.push({ path: url.pathname, verb: watch ? 'watch' : 'list', query, at: Date.now() });
    if (this.opts.token && req.headers.authorization !== `Bearer ${this.opts.token}`) {
      return this.reply(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
    }
    const r = this.resources.get(url.pathname);
    if (req.method !== 'GET' || !r) {
      return this.reply(res, 404, status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`));
    }
    if (watch) return this.watch(r, query, res);
    return this.list(r, query, res);
  }

  private list(r: Resource, query: Record<string, string>, res: http.ServerResponse): void {
    const all = [...r.objects.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let start = 0;
    let rv = this.rv;
    if (query.continue) {
      const token = JSON.parse(Buffer.from(query.continue, 'base64').toString()) as { rv: number; after: string };
      if (token.rv < this.compactedRv) return this.reply(res, 410, status(410, 'Expired', 'The provided continue parameter is too old'));
      start = all.findIndex(([k]) => k > token.after);
      if (start < 0) start = all.length;
      rv = token.rv;
    }
    const limit = Number(query.limit) > 0 ? Number(query.limit) : all.length;
    const page = all.slice(start, start + limit);
    const more = start + limit < all.length;
    const metadata: Record<string, string> = { resourceVersion: String(rv) };
    if (more) metadata.continue = Buffer.from(JSON.stringify({ rv, after: page[page.length - 1][0] })).toString('base64');
    // items of a list carry no kind: the list's kind says it
    this.reply(res, 200, { kind: `${r.kind}List`, apiVersion: r.apiVersion, metadata, items: page.map(([, o]) => o) });
  }

  private watch(r: Resource, query: Record<string, string>, res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // the API server answers at once, events or not
    const w: OpenWatch = { path: r.path, res, bookmarks: query.allowWatchBookmarks === 'true' };
    const from = Number(query.resourceVersion || 0);
    if (from && from < this.compactedRv) {
      // what the API server does: 200, one ERROR event with a 410 Status, end of stream
      this.send(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`));
      return void res.end();
    }
    this.watches.add(w);
    for (const ev of this.history) if (ev.path === r.path && ev.rv > from) this.send(w, ev.type, ev.object);
    const ms = this.opts.msPerSecond ?? 1000;
    const timeout = this.opts.hangWatches ? undefined : setTimeout(() => res.end(), Number(query.timeoutSeconds || 1800) * ms);
    const bookmark = w.bookmarks
      ? setInterval(
          () => this.send(w, 'BOOKMARK', { kind: r.kind, apiVersion: r.apiVersion, metadata: { resourceVersion: String(this.rv) } }),
          this.opts.bookmarkMs ?? 60_000,
        )
      : undefined;
    res.on('close', () => {
      clearTimeout(timeout);
      clearInterval(bookmark);
      this.watches.delete(w);
    });
  }
}

// Objects as a cluster would hold them, reduced to what matters here.

export const PODS = '/api/v1/pods';
export const SERVICES = '/api/v1/services';
export const ENDPOINTSLICES = '/apis/discovery.k8s.io/v1/endpointslices';
export const REPLICASETS = '/apis/apps/v1/replicasets';
export const DEPLOYMENTS = '/apis/apps/v1/deployments';

export function pod(ns: string, name: string, ip: string, o: { labels?: Record<string, string>; replicaSet?: string; hostNetwork?: boolean; hostIp?: string; uid?: string; phase?: string } = {}): Obj {
  return {
    metadata: {
      name,
      namespace: ns,
      ...(o.uid ? { uid: o.uid } : {}),
      labels: o.labels ?? {},
      ownerReferences: o.replicaSet ? [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: o.replicaSet, uid: `uid-rs-${o.replicaSet}`, controller: true, blockOwnerDeletion: true }] : [],
    },
    spec: { hostNetwork: o.hostNetwork ?? false, containers: [{ name: 'main', image: 'example/app:1' }] },
    status: { phase: o.phase ?? 'Running', hostIP: o.hostIp ?? ip, podIP: ip, podIPs: [{ ip }] },
  };
}

export function service(ns: string, name: string, clusterIp: string, selector: Record<string, string>, ports: { port: number; targetPort: number; nodePort?: number; protocol?: string }[]): Obj {
  return {
    metadata: { name, namespace: ns },
    spec: {
      type: ports.some((p) => p.nodePort) ? 'NodePort' : 'ClusterIP',
      clusterIP: clusterIp,
      clusterIPs: [clusterIp],
      selector,
      ports: ports.map((p) => ({ protocol: p.protocol ?? 'TCP', ...p })),
    },
  };
}

export function endpointSlice(ns: string, svc: string, endpoints: { ip: string; pod: string }[], ports: { port: number; protocol?: string }[]): Obj {
  return {
    metadata: { name: `${svc}-abc12`, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: ns, name: e.pod } })),
    ports: ports.map((p) => ({ name: '', protocol: p.protocol ?? 'TCP', port: p.port })),
  };
}

export function replicaSet(ns: string, name: string, deployment: string): Obj {
  return {
    metadata: { name, namespace: ns, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment, uid: `uid-dep-${deployment}`, controller: true }] },
    spec: { replicas: 1 },
  };
}

export function deployment(ns: string, name: string): Obj {
  return { metadata: { name, namespace: ns }, spec: { replicas: 1 } };
}
