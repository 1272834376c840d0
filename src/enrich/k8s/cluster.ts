// What the collector knows about the cluster: slim copies of the watched
// objects, and lookup tables built from them (pod IP, endpoint IP+port,
// ClusterIP, NodePort) that are rebuilt only after something changed.
import type { KubeObject } from './api';
import { meta, slimDeployment, slimEndpointSlice, slimPod, slimReplicaSet, slimService } from './objects';
import type { SlimDeployment, SlimEndpointSlice, SlimPod, SlimReplicaSet, SlimService } from './objects';
import type { ReflectorStore } from './reflector';

/** What a flow's end is, as far as Kubernetes knows. */
export interface K8sEnd {
  namespace: string;
  /** N/A for a ClusterIP or NodePort end. */
  pod: string;
  service: string;
  deployment: string;
}

export const NO_VALUE = 'N/A';

type Transport = 'tcp' | 'udp';

/** A store of one resource, keyed by namespace/name. */
class SlimStore<T> implements ReflectorStore {
  readonly items = new Map<string, T>();
  constructor(
    private readonly slim: (o: KubeObject) => T | undefined,
    private readonly changed: () => void,
  ) {}
  /** namespace/name; parts that are not strings (a malformed object) count as empty. */
  private static key(o: KubeObject): string {
    const m = meta(o);
    return m ? `${m.namespace}/${m.name}` : '/';
  }
  replace(items: KubeObject[]): void {
    this.items.clear();
    for (const o of items) {
      const s = this.slim(o);
      if (s) this.items.set(SlimStore.key(o), s);
    }
    this.changed();
  }
  upsert(o: KubeObject): void {
    const s = this.slim(o);
    if (s) this.items.set(SlimStore.key(o), s);
    else this.items.delete(SlimStore.key(o));
    this.changed();
  }
  remove(o: KubeObject): void {
    this.items.delete(SlimStore.key(o));
    this.changed();
  }
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  let any = false;
  for (const [k, v] of Object.entries(selector)) {
    if (labels[k] !== v) return false;
    any = true;
  }
  return any; // an empty selector selects nothing (services without one are managed by hand)
}

interface Tables {
  podByIp: Map<string, K8sEnd>;
  endpointByIpPort: Map<string, K8sEnd>;
  serviceByIp: Map<string, K8sEnd>;
  serviceByNodePort: Map<string, K8sEnd>;
  podByUid: Map<string, K8sEnd>;
  nodeIps: Set<string>;
}

export class ClusterState {
  readonly pods: SlimStore<SlimPod>;
  readonly services: SlimStore<SlimService>;
  readonly endpointSlices: SlimStore<SlimEndpointSlice>;
  readonly replicaSets: SlimStore<SlimReplicaSet>;
  readonly deployments: SlimStore<SlimDeployment>;
  private tables?: Tables;
  private dirty = true;
  private builtAt = 0;
  /** Bumped on every rebuild: lets callers cache what they derived from lookups. */
  generation = 0;

  /** @param rebuildEveryMs a churning cluster rebuilds the tables at most this often */
  constructor(private readonly rebuildEveryMs = 1000) {
    const changed = () => (this.dirty = true);
    this.pods = new SlimStore(slimPod, changed);
    this.services = new SlimStore(slimService, changed);
    this.endpointSlices = new SlimStore(slimEndpointSlice, changed);
    this.replicaSets = new SlimStore(slimReplicaSet, changed);
    this.deployments = new SlimStore(slimDeployment, changed);
  }

  private deploymentOf(p: SlimPod): string {
    if (!p.replicaSet) return NO_VALUE;
    const rs = this.replicaSets.items.get(`${p.namespace}/${p.replicaSet}`);
    if (!rs?.deployment) return NO_VALUE;
    return this.deployments.items.has(`${p.namespace}/${rs.deployment}`) ? rs.deployment : NO_VALUE;
  }

  private build(): Tables {
    const t: Tables = {
      podByIp: new Map(),
      endpointByIpPort: new Map(),
      serviceByIp: new Map(),
      serviceByNodePort: new Map(),
      podByUid: new Map(),
      nodeIps: new Set(),
    };
    // services of a namespace, by name order so that a pod with several always gets the same one
    const services = [...this.services.items.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const servicesIn = new Map<string, SlimService[]>();
    for (const s of services) {
      if (!servicesIn.has(s.namespace)) servicesIn.set(s.namespace, []);
      servicesIn.get(s.namespace)!.push(s);
    }
    const podEnds = new Map<string, K8sEnd>(); // by namespace/name
    const serviceDeployment = new Map<string, string>();
    for (const p of this.pods.items.values()) {
      if (p.hostIp) t.nodeIps.add(p.hostIp);
      const service = servicesIn.get(p.namespace)?.find((s) => selects(s.selector, p.labels));
      const end: K8sEnd = { namespace: p.namespace, pod: p.name, service: service?.name ?? NO_VALUE, deployment: this.deploymentOf(p) };
      podEnds.set(`${p.namespace}/${p.name}`, end);
      if (p.uid) t.podByUid.set(p.uid, end);
      if (service && end.deployment !== NO_VALUE && !serviceDeployment.has(`${p.namespace}/${service.name}`)) {
        serviceDeployment.set(`${p.namespace}/${service.name}`, end.deployment);
      }
      // a finished pod's IP goes back to the pool; host-network pods share the node's
      if (p.finished || p.hostNetwork) continue;
      for (const ip of p.ips) t.podByIp.set(ip, end);
    }
    for (const s of services) {
      const end: K8sEnd = {
        namespace: s.namespace,
        pod: NO_VALUE,
        service: s.name,
        deployment: serviceDeployment.get(`${s.namespace}/${s.name}`) ?? NO_VALUE,
      };
      for (const ip of s.clusterIps) t.serviceByIp.set(ip, end);
      for (const np of s.nodePorts) t.serviceByNodePort.set(`${np.port}/${np.protocol}`, end);
    }
    // endpoints name the pod behind an IP and port: the only way to tell host-network pods apart
    for (const es of this.endpointSlices.items.values()) {
      for (const ep of es.endpoints) {
        const pod = ep.pod ? podEnds.get(`${es.namespace}/${ep.pod}`) : undefined;
        if (!pod) continue;
        const end = es.service && pod.service === NO_VALUE ? { ...pod, service: es.service } : pod;
        for (const ip of ep.addresses) for (const port of es.ports) t.endpointByIpPort.set(`${ip}|${port.port}/${port.protocol}`, end);
      }
    }
    this.generation++;
    return t;
  }

  private get t(): Tables {
    if (this.dirty || !this.tables) {
      const now = performance.now();
      if (!this.tables || now - this.builtAt >= this.rebuildEveryMs) {
        this.tables = this.build();
        this.dirty = false;
        this.builtAt = now;
      }
    }
    return this.tables;
  }

  /** The pod (or, failing that, the service) an address and port belong to. */
  lookup(ip: string, port: number, transport: Transport): K8sEnd | undefined {
    const t = this.t;
    const proto = transport === 'tcp' ? 'TCP' : 'UDP';
    return (
      t.endpointByIpPort.get(`${ip}|${port}/${proto}`) ??
      t.podByIp.get(ip) ??
      t.serviceByIp.get(ip) ??
      (t.nodeIps.has(ip) ? t.serviceByNodePort.get(`${port}/${proto}`) : undefined)
    );
  }

  /** Whether ip:port is a service's backend or NodePort: traffic from it answers a client. */
  isServer(ip: string, port: number, transport: Transport): boolean {
    const t = this.t;
    const proto = transport === 'tcp' ? 'TCP' : 'UDP';
    return t.endpointByIpPort.has(`${ip}|${port}/${proto}`) || (t.nodeIps.has(ip) && t.serviceByNodePort.has(`${port}/${proto}`));
  }

  /** The pod with this UID (from a process's cgroup path). */
  podByUid(uid: string): K8sEnd | undefined {
    return this.t.podByUid.get(uid);
  }

  /** Current generation, rebuilding first if something changed. */
  currentGeneration(): number {
    void this.t;
    return this.generation;
  }

  get sizes(): Record<string, number> {
    return {
      pods: this.pods.items.size,
      services: this.services.items.size,
      endpointslices: this.endpointSlices.items.size,
      replicasets: this.replicaSets.items.size,
      deployments: this.deployments.items.size,
    };
  }
}
