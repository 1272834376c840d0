// The Kubernetes objects the collector follows. deploy/clusterrole.yaml grants
// exactly these (a test compares the two), so add a resource here and there together.

export interface WatchedResource {
  /** API group; '' is the core group. */
  group: string;
  version: string;
  /** Plural resource name, as in URLs and RBAC rules. */
  resource: string;
  kind: string;
}

export const WATCHED_RESOURCES: readonly WatchedResource[] = [
  { group: '', version: 'v1', resource: 'pods', kind: 'Pod' },
  { group: '', version: 'v1', resource: 'services', kind: 'Service' },
  { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice' },
  { group: 'apps', version: 'v1', resource: 'replicasets', kind: 'ReplicaSet' },
  { group: 'apps', version: 'v1', resource: 'deployments', kind: 'Deployment' },
];

/** Every resource is listed, then watched; nothing else is ever asked. */
export const WATCH_VERBS: readonly string[] = ['list', 'watch'];

/** Cluster-wide collection path of a resource, e.g. /apis/apps/v1/replicasets. */
export function collectionPath(r: WatchedResource): string {
  return r.group === '' ? `/api/${r.version}/${r.resource}` : `/apis/${r.group}/${r.version}/${r.resource}`;
}
