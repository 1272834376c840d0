// Slim copies of Kubernetes objects: only what the lookups use. A full pod or
// ReplicaSet carries its whole spec (kilobytes); keeping it would cost a big
// cluster's worth of memory on every node.
import type { KubeObject } from './api';

interface OwnerReference {
  kind?: string;
  name?: string;
  controller?: boolean;
}

export interface SlimPod {
  namespace: string;
  name: string;
  uid: string;
  ips: string[];
  hostIp?: string;
  hostNetwork: boolean;
  /** Succeeded or Failed: its IP may already belong to another pod. */
  finished: boolean;
  labels: Record<string, string>;
  /** The ReplicaSet controlling it, if any. */
  replicaSet?: string;
}

export interface SlimService {
  namespace: string;
  name: string;
  clusterIps: string[];
  selector: Record<string, string>;
  nodePorts: { port: number; protocol: string }[];
}

export interface SlimEndpointSlice {
  namespace: string;
  service?: string;
  endpoints: { addresses: string[]; pod?: string }[];
  ports: { port: number; protocol: string }[];
}

export interface SlimReplicaSet {
  deployment?: string;
}

export type SlimDeployment = true;

/** Metadata as the API server sends it; anything else is left out rather than trusted. */
function metadata(o: KubeObject): Record<string, unknown> | undefined {
  const m: unknown = o.metadata;
  return typeof m === 'object' && m !== null ? (m as Record<string, unknown>) : undefined;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Namespace and name, as strings; an object without a name is not kept. */
export function meta(o: KubeObject): { namespace: string; name: string } | undefined {
  const m = metadata(o);
  const name = text(m?.name);
  if (!name) return undefined;
  return { namespace: text(m?.namespace) ?? '', name };
}

function controllerOf(o: KubeObject, kind: string): string | undefined {
  const owners = metadata(o)?.ownerReferences;
  if (!Array.isArray(owners)) return undefined;
  const owner = (owners as (OwnerReference | null)[]).find((r) => r?.kind === kind && r.controller === true);
  return text(owner?.name);
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : [];
}

export function slimPod(o: KubeObject): SlimPod | undefined {
  const m = meta(o);
  if (!m) return undefined;
  const spec = (o.spec ?? {}) as any;
  const status = (o.status ?? {}) as any;
  const ips = Array.isArray(status.podIPs) ? strings(status.podIPs.map((x: any) => x?.ip)) : [];
  if (!ips.length && typeof status.podIP === 'string' && status.podIP) ips.push(status.podIP);
  return {
    ...m,
    uid: text(metadata(o)?.uid) ?? '',
    ips,
    hostIp: typeof status.hostIP === 'string' && status.hostIP ? status.hostIP : undefined,
    hostNetwork: spec.hostNetwork === true,
    finished: status.phase === 'Succeeded' || status.phase === 'Failed',
    labels: stringMap(metadata(o)?.labels),
    replicaSet: controllerOf(o, 'ReplicaSet'),
  };
}

export function slimService(o: KubeObject): SlimService | undefined {
  const m = meta(o);
  if (!m) return undefined;
  const spec = (o.spec ?? {}) as any;
  const ips = strings(spec.clusterIPs);
  if (!ips.length && typeof spec.clusterIP === 'string') ips.push(spec.clusterIP);
  const ports: any[] = Array.isArray(spec.ports) ? spec.ports : [];
  return {
    ...m,
    clusterIps: ips.filter((ip) => ip !== 'None'), // headless: the pods' own IPs answer
    selector: stringMap(spec.selector),
    nodePorts: ports
      .filter((p) => Number.isInteger(p?.nodePort) && p.nodePort > 0)
      .map((p) => ({ port: p.nodePort as number, protocol: typeof p.protocol === 'string' ? p.protocol : 'TCP' })),
  };
}

export function slimEndpointSlice(o: KubeObject): SlimEndpointSlice | undefined {
  const m = meta(o);
  if (!m) return undefined;
  const endpoints: any[] = Array.isArray(o.endpoints) ? o.endpoints : [];
  const ports: any[] = Array.isArray(o.ports) ? o.ports : [];
  return {
    namespace: m.namespace,
    service: stringMap(metadata(o)?.labels)['kubernetes.io/service-name'],
    endpoints: endpoints.map((e) => ({
      addresses: strings(e?.addresses),
      pod: e?.targetRef?.kind === 'Pod' && typeof e.targetRef.name === 'string' ? e.targetRef.name : undefined,
    })),
    ports: ports
      .filter((p) => Number.isInteger(p?.port))
      .map((p) => ({ port: p.port as number, protocol: typeof p.protocol === 'string' ? p.protocol : 'TCP' })),
  };
}

export function slimReplicaSet(o: KubeObject): SlimReplicaSet | undefined {
  return meta(o) ? { deployment: controllerOf(o, 'Deployment') } : undefined;
}

export function slimDeployment(o: KubeObject): SlimDeployment | undefined {
  return meta(o) ? true : undefined;
}
