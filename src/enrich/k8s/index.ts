// Kubernetes enrichment (SPEC §5): follows the cluster with list+watch and
// tags each end of a flow with its namespace, pod, service and deployment.
// It runs as a plugin without points so that the collector starts, stops,
// logs and serves its counters like any other.
import * as fs from 'node:fs';
import type { Config } from '../../config';
import { log } from '../../log';
import type { Point } from '../../output/point';
import type { Plugin } from '../../plugins/plugin';
import { CgroupIndex } from '../cgroups';
import { KubeApi } from './api';
import { ClusterState, K8sEnd, NO_VALUE } from './cluster';
import { Reflector, ReflectorOptions, ReflectorStore } from './reflector';
import { collectionPath, WATCHED_RESOURCES } from './resources';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface K8sConnection {
  url: string;
  tokenPath?: string;
  token?: string;
  caPath?: string;
  insecureSkipTlsVerify: boolean;
}

/**
 * Where and how to reach the API server: the configured URL and token, or,
 * inside a pod with nothing configured, the in-cluster service account. The
 * pod's mounted cluster CA is used unless another CA is configured.
 * Undefined when Kubernetes enrichment is off.
 */
export function k8sConnection(
  cfg: Config['k8s'],
  env: Record<string, string | undefined>,
  serviceAccountDir = SERVICE_ACCOUNT_DIR,
): K8sConnection | undefined {
  let url = cfg.url;
  let tokenPath = cfg.bearerTokenPath;
  let caPath = cfg.caPath;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (url === undefined && host && port) {
    url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (tokenPath === undefined && cfg.bearerTokenString === undefined) tokenPath = `${serviceAccountDir}/token`;
  }
  if (url === undefined) return undefined;
  // in a pod, the cluster's CA is mounted: the seed's ebpf.conf names URL and token but no CA
  if (caPath === undefined && fs.existsSync(`${serviceAccountDir}/ca.crt`)) caPath = `${serviceAccountDir}/ca.crt`;
  // a token file wins over a string, as in DataKit
  return {
    url,
    tokenPath,
    token: tokenPath === undefined ? cfg.bearerTokenString : undefined,
    caPath,
    insecureSkipTlsVerify: cfg.insecureSkipTlsVerify === true,
  };
}

/** Tags a flow gets; `direction` may be corrected to incoming for a service's side. */
export interface FlowEnds {
  srcIp: string;
  /** '*' for a collapsed ephemeral port. */
  srcPort: string | number;
  dstIp: string;
  dstPort: string | number;
  transport: 'tcp' | 'udp';
  pid?: number;
  /** The owner's cgroup v2 id, recorded by the kernel (0 or absent: unknown). */
  cgroupId?: number;
}

const POD_UID_IN_CGROUP = /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/;

/** cgroup v2 ids of pods' cgroups and of everything below them (containers). */
export class CgroupPods extends CgroupIndex {
  constructor(root: string, minRescanMs = 500, maxDirs = 50_000) {
    super(root, podUidFromCgroup, minRescanMs, maxDirs);
  }

  podUid(cgroupId: number): string | undefined {
    return this.find(cgroupId);
  }
}

/** The pod UID in a cgroup path, as kubelet names it with either cgroup driver. */
export function podUidFromCgroup(cgroupFile: string): string | undefined {
  const m = POD_UID_IN_CGROUP.exec(cgroupFile);
  return m ? m[1].replace(/_/g, '-') : undefined;
}

/** What the plugins need of the enrichment. */
export interface FlowTagger {
  enrich(tags: Record<string, string | undefined>, ends: FlowEnds): void;
  /** Changes whenever the answers of enrich() may have changed. */
  generation(): number;
}

export class Kubernetes implements Plugin, FlowTagger {
  readonly name = 'k8s';
  readonly category = 'network' as const;
  readonly state: ClusterState;
  readonly gauges = new Set(['pods', 'services', 'endpointslices', 'replicasets', 'deployments', 'synced']);
  private api?: KubeApi;
  private reflectors: Reflector[] = [];
  private podOfPid = new Map<number, string | undefined>();
  private loggedSync = false;

  private readonly cgroupPods?: CgroupPods;

  /** @param cgroup2 the cgroup v2 mount, to find pods by the cgroup ids the kernel records */
  constructor(
    private readonly conn: K8sConnection,
    private readonly reflectorOptions: ReflectorOptions & { rebuildEveryMs?: number; stallGraceSeconds?: number } = {},
    cgroup2?: string,
    private readonly procRoot = '/proc',
  ) {
    this.state = new ClusterState(reflectorOptions.rebuildEveryMs);
    if (cgroup2) this.cgroupPods = new CgroupPods(cgroup2);
  }

  /** Reads the CA and checks the token file: throws one clear line when either is unusable. */
  prepare(): void {
    let ca: Buffer | undefined;
    if (this.conn.caPath) {
      try {
        ca = fs.readFileSync(this.conn.caPath);
      } catch (err) {
        throw new Error(`cannot read the Kubernetes CA ${this.conn.caPath}: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
    }
    if (this.conn.tokenPath) {
      try {
        fs.accessSync(this.conn.tokenPath, fs.constants.R_OK);
      } catch (err) {
        throw new Error(`cannot read the Kubernetes token ${this.conn.tokenPath}: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
    }
    this.api = new KubeApi({ ...this.conn, ca, stallGraceSeconds: this.reflectorOptions.stallGraceSeconds });
  }

  start(): void {
    if (!this.api) this.prepare();
    const api = this.api!;
    const stores: Record<string, ReflectorStore> = {
      pods: this.state.pods,
      services: this.state.services,
      endpointslices: this.state.endpointSlices,
      replicasets: this.state.replicaSets,
      deployments: this.state.deployments,
    };
    this.reflectors = WATCHED_RESOURCES.map(
      (r) => new Reflector(api, collectionPath(r), stores[r.resource], this.reflectorOptions, () => this.checkSynced()),
    );
    for (const r of this.reflectors) r.start();
    log.info(`k8s: following ${this.conn.url}`);
  }

  private checkSynced(): void {
    if (this.loggedSync || !this.synced) return;
    this.loggedSync = true;
    const s = this.state.sizes;
    log.info(`k8s: synced: ${Object.entries(s).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }

  /** Every watched resource has been listed at least once. */
  get synced(): boolean {
    return this.reflectors.length > 0 && this.reflectors.every((r) => r.synced);
  }

  collect(): Point[] {
    this.podOfPid.clear(); // pids are reused: look again next interval
    return [];
  }

  /** The pod a connection's owner runs in, from its cgroup (exact even for host-network pods). */
  private podOfOwner(f: FlowEnds): K8sEnd | undefined {
    if (f.cgroupId && this.cgroupPods) {
      const uid = this.cgroupPods.podUid(f.cgroupId);
      if (uid) return this.state.podByUid(uid);
    }
    // not recorded (or cgroup v1 only): the process's cgroup file, while it runs
    return f.pid ? this.podOfProcess(f.pid) : undefined;
  }

  private podOfProcess(pid: number): K8sEnd | undefined {
    let uid = this.podOfPid.get(pid);
    if (uid === undefined && !this.podOfPid.has(pid)) {
      try {
        uid = podUidFromCgroup(fs.readFileSync(`${this.procRoot}/${pid}/cgroup`, 'utf8'));
      } catch {
        uid = undefined; // gone already
      }
      this.podOfPid.set(pid, uid);
    }
    return uid ? this.state.podByUid(uid) : undefined;
  }

  generation(): number {
    return this.state.currentGeneration();
  }

  /** Adds the k8s tags (and sub_source) when either end is in the cluster. */
  enrich(tags: Record<string, string | undefined>, f: FlowEnds): void {
    const srcPort = typeof f.srcPort === 'number' ? f.srcPort : Number(f.srcPort);
    const dstPort = typeof f.dstPort === 'number' ? f.dstPort : Number(f.dstPort);
    const src = this.podOfOwner(f) ?? this.state.lookup(f.srcIp, srcPort, f.transport);
    const dst = this.state.lookup(f.dstIp, dstPort, f.transport);
    // our side is a service's backend: whoever dialled, this is the serving end
    if (Number.isInteger(srcPort) && this.state.isServer(f.srcIp, srcPort, f.transport)) tags.direction = 'incoming';
    if (!src && !dst) return;
    tags.sub_source = 'K8s';
    setEnd(tags, 'src', src);
    setEnd(tags, 'dst', dst);
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = {
      list_requests: this.api?.requests.list ?? 0,
      watch_requests: this.api?.requests.watch ?? 0,
      list_failures: this.api?.failures.list ?? 0,
      watch_failures: this.api?.failures.watch ?? 0,
      watch_lines_too_long: this.api?.watchLinesTooLong ?? 0,
      synced: this.synced ? 1 : 0,
    };
    for (const r of this.reflectors) {
      for (const [k, v] of Object.entries(r.counts)) if (k === 'events' || k === 'relists_gone') out[k] = (out[k] ?? 0) + v;
    }
    return Object.assign(out, this.state.sizes);
  }

  stop(): void {
    for (const r of this.reflectors) void r.stop();
    this.api?.close();
  }
}

function setEnd(tags: Record<string, string | undefined>, side: 'src' | 'dst', end: K8sEnd | undefined): void {
  tags[`${side}_k8s_namespace`] = end?.namespace ?? NO_VALUE;
  tags[`${side}_k8s_pod_name`] = end?.pod ?? NO_VALUE;
  tags[`${side}_k8s_service_name`] = end?.service ?? NO_VALUE;
  tags[`${side}_k8s_deployment_name`] = end?.deployment ?? NO_VALUE;
}
