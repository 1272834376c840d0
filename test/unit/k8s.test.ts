// Kubernetes enrichment against a local API server emulator: list+watch with
// resourceVersions, pagination, bookmarks, 410 Gone, cut connections, TLS and
// tokens, and the tags each end of a flow gets.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CgroupPods, k8sConnection, Kubernetes, podUidFromCgroup } from '../../src/enrich/k8s';
import { collectionPath, WATCH_VERBS, WATCHED_RESOURCES } from '../../src/enrich/k8s/resources';
import {
  DEPLOYMENTS,
  deployment,
  endpointSlice,
  ENDPOINTSLICES,
  KubeApiEmulator,
  pod,
  PODS,
  replicaSet,
  REPLICASETS,
  service,
  SERVICES,
} from '../helpers/kube-apiserver';

async function waitFor(what: string, pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const TOKEN = 'test-token-1';
const fast = { backoffMs: [20, 200] as [number, number] };

/** A shop: deployment web (2 pods behind service web), a client pod, a host-network agent. */
function populate(api: KubeApiEmulator): void {
  api.apply(DEPLOYMENTS, deployment('shop', 'web'));
  api.apply(REPLICASETS, replicaSet('shop', 'web-5d8f', 'web'));
  api.apply(PODS, pod('shop', 'web-5d8f-aaaaa', '10.1.0.11', { labels: { app: 'web' }, replicaSet: 'web-5d8f', hostIp: '192.0.2.1' }));
  api.apply(PODS, pod('shop', 'web-5d8f-bbbbb', '10.1.0.12', { labels: { app: 'web' }, replicaSet: 'web-5d8f', hostIp: '192.0.2.2' }));
  api.apply(PODS, pod('tools', 'client', '10.1.0.20', { hostIp: '192.0.2.1' }));
  api.apply(PODS, pod('monitoring', 'agent-x1', '192.0.2.1', { hostNetwork: true, labels: { app: 'agent' } }));
  api.apply(SERVICES, service('shop', 'web', '10.96.0.10', { app: 'web' }, [{ port: 80, targetPort: 8080, nodePort: 30080 }]));
  api.apply(SERVICES, service('monitoring', 'agent', '10.96.0.20', { app: 'agent' }, [{ port: 9100, targetPort: 9100 }]));
  api.apply(ENDPOINTSLICES, endpointSlice('shop', 'web', [{ ip: '10.1.0.11', pod: 'web-5d8f-aaaaa' }, { ip: '10.1.0.12', pod: 'web-5d8f-bbbbb' }], [{ port: 8080 }]));
  api.apply(ENDPOINTSLICES, endpointSlice('monitoring', 'agent', [{ ip: '192.0.2.1', pod: 'agent-x1' }], [{ port: 9100 }]));
}

function tagsOf(k: Kubernetes, srcIp: string, srcPort: number | string, dstIp: string, dstPort: number | string, direction = 'outgoing') {
  const tags: Record<string, string | undefined> = { direction };
  k.enrich(tags, { srcIp, srcPort, dstIp, dstPort, transport: 'tcp' });
  return tags;
}

describe('k8s: following the cluster', () => {
  let api: KubeApiEmulator;
  let k: Kubernetes;

  before(async () => {
    api = await new KubeApiEmulator({ tls: true, token: TOKEN, bookmarkMs: 100 }).start();
    populate(api);
    k = new Kubernetes({ url: api.url, token: TOKEN, caPath: api.caPath, insecureSkipTlsVerify: false }, { ...fast, pageSize: 2, rebuildEveryMs: 0 });
    k.start();
    await waitFor('initial sync', () => k.synced);
  });
  after(async () => {
    k.stop();
    await api.stop();
  });

  test('lists page by page over verified TLS, then watches every resource', async () => {
    assert.deepEqual(k.state.sizes, { pods: 4, services: 2, endpointslices: 2, replicasets: 1, deployments: 1 });
    assert.equal(api.count('list', PODS), 2, 'four pods in pages of two');
    const pageTwo = api.requests.filter((r) => r.path === PODS && r.verb === 'list')[1];
    assert.ok(pageTwo.query.continue, 'the second page continues the first');
    await waitFor('a watch per resource', () => api.openWatches() === 5);
    // what is asked is exactly what the ClusterRole grants (test/unit/k8s-rbac.test.ts checks the other half)
    const asked = new Set(api.requests.map((r) => `${r.verb} ${r.path}`));
    const granted = WATCHED_RESOURCES.flatMap((r) => WATCH_VERBS.map((v) => `${v} ${collectionPath(r)}`));
    assert.deepEqual([...asked].sort(), granted.sort());
    const w = api.requests.find((r) => r.path === PODS && r.verb === 'watch')!;
    assert.equal(w.query.allowWatchBookmarks, 'true');
    assert.ok(Number(w.query.timeoutSeconds) >= 300 && Number(w.query.timeoutSeconds) < 600, w.query.timeoutSeconds);
    assert.ok(Number(w.query.resourceVersion) > 0, 'watches from the list');
  });

  test('pod to pod: namespace, pod, service and deployment on both ends', () => {
    assert.deepEqual(tagsOf(k, '10.1.0.20', '*', '10.1.0.11', 8080), {
      direction: 'outgoing',
      sub_source: 'K8s',
      src_k8s_namespace: 'tools',
      src_k8s_pod_name: 'client',
      src_k8s_service_name: 'N/A',
      src_k8s_deployment_name: 'N/A',
      dst_k8s_namespace: 'shop',
      dst_k8s_pod_name: 'web-5d8f-aaaaa',
      dst_k8s_service_name: 'web',
      dst_k8s_deployment_name: 'web',
    });
  });

  test('a ClusterIP end is the service, with pod N/A; the end outside the cluster is all N/A', () => {
    const t = tagsOf(k, '203.0.113.5', '*', '10.96.0.10', 80);
    assert.deepEqual(t, {
      direction: 'outgoing',
      sub_source: 'K8s',
      src_k8s_namespace: 'N/A',
      src_k8s_pod_name: 'N/A',
      src_k8s_service_name: 'N/A',
      src_k8s_deployment_name: 'N/A',
      dst_k8s_namespace: 'shop',
      dst_k8s_pod_name: 'N/A',
      dst_k8s_service_name: 'web',
      dst_k8s_deployment_name: 'web',
    });
  });

  test('neither end in the cluster: no k8s tags at all', () => {
    assert.deepEqual(tagsOf(k, '203.0.113.5', '*', '203.0.113.6', 443), { direction: 'outgoing' });
  });

  test('host-network pod: told apart by endpoint port; serving it makes the flow incoming', () => {
    const t = tagsOf(k, '192.0.2.1', 9100, '10.1.0.20', '*', 'outgoing');
    assert.equal(t.direction, 'incoming', 'a service backend port is the serving side');
    assert.equal(t.src_k8s_pod_name, 'agent-x1');
    assert.equal(t.src_k8s_service_name, 'agent');
    assert.equal(t.dst_k8s_pod_name, 'client');
    // the same node address on another port is not that pod
    const other = tagsOf(k, '192.0.2.1', 22, '203.0.113.9', '*');
    assert.deepEqual(other, { direction: 'outgoing' });
    // a NodePort on a node address is the service
    const np = tagsOf(k, '203.0.113.9', '*', '192.0.2.2', 30080);
    assert.equal(np.dst_k8s_service_name, 'web');
    assert.equal(np.dst_k8s_pod_name, 'N/A');
  });

  test('watch events: a pod moving and a pod deleted change the tags', async () => {
    api.delete(PODS, 'shop', 'web-5d8f-aaaaa');
    api.apply(PODS, pod('shop', 'web-5d8f-ccccc', '10.1.0.11', { labels: { app: 'web' }, replicaSet: 'web-5d8f' }));
    await waitFor('new pod', () => tagsOf(k, '10.1.0.20', '*', '10.1.0.11', 8080).dst_k8s_pod_name === 'web-5d8f-ccccc');
    api.delete(PODS, 'tools', 'client');
    await waitFor('client gone', () => tagsOf(k, '10.1.0.20', '*', '10.1.0.11', 8080).src_k8s_pod_name === 'N/A');
    // the endpoint slice still names the old pod, which is gone: the IP alone finds the new one
    assert.equal(tagsOf(k, '10.1.0.20', '*', '10.1.0.11', 8080).dst_k8s_deployment_name, 'web');
  });

  test('bookmarks move the version a new watch resumes from', async () => {
    const before = api.count('watch', DEPLOYMENTS);
    const lists = api.count('list', DEPLOYMENTS);
    await new Promise((r) => setTimeout(r, 250)); // a bookmark or two
    const rvNow = api.resourceVersion;
    api.cutWatches();
    await waitFor('re-watch', () => api.count('watch', DEPLOYMENTS) > before);
    const w = api.requests.filter((r) => r.path === DEPLOYMENTS && r.verb === 'watch').at(-1)!;
    assert.equal(w.query.resourceVersion, String(rvNow), 'resumed at the bookmark, not at the list');
    assert.equal(api.count('list', DEPLOYMENTS), lists, 'no new list');
  });

  test('cut connections: changes made meanwhile arrive on the new watch, without a new list', async () => {
    await waitFor('watches', () => api.openWatches() === 5);
    const lists = api.count('list');
    assert.equal(api.cutWatches(), 5);
    api.apply(PODS, pod('tools', 'client', '10.1.0.20'));
    await waitFor('client back', () => tagsOf(k, '10.1.0.20', '*', '10.1.0.11', 8080).src_k8s_pod_name === 'client');
    await waitFor('watches again', () => api.openWatches() === 5);
    assert.equal(api.count('list'), lists);
  });

  test('410 Gone after compaction: one new list, and deletions missed meanwhile are applied', async () => {
    await waitFor('watches', () => api.openWatches() === 5);
    const podLists = api.count('list', PODS);
    const relists = k.stats().relists_gone;
    // while disconnected: a pod is deleted and the history that said so is compacted away
    api.cutWatches();
    api.delete(PODS, 'tools', 'client');
    api.compact();
    await waitFor('relist', () => api.count('list', PODS) > podLists);
    await waitFor('client gone', () => tagsOf(k, '10.1.0.20', '*', '10.1.0.11', 8080).src_k8s_pod_name === 'N/A');
    assert.ok(k.stats().relists_gone > relists);
    assert.equal(k.stats().pods, 3);
  });
});

describe('k8s: connection settings and failures', () => {
  test('in a pod with nothing configured: the in-cluster service account', () => {
    const c = k8sConnection({}, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' });
    assert.equal(c?.url, 'https://10.96.0.1:443');
    assert.equal(c?.tokenPath, '/var/run/secrets/kubernetes.io/serviceaccount/token');
    assert.equal(c?.insecureSkipTlsVerify, false);
    assert.equal(k8sConnection({}, { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' })?.url, 'https://[fd00::1]:443');
    assert.equal(k8sConnection({}, {}), undefined, 'off outside a cluster');
    const explicit = k8sConnection({ url: 'https://api:6443', bearerTokenString: 's3cret' }, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' });
    assert.deepEqual(explicit, { url: 'https://api:6443', tokenPath: undefined, token: 's3cret', caPath: undefined, insecureSkipTlsVerify: false });
    const both = k8sConnection({ url: 'https://api:6443', bearerTokenString: 's3cret', bearerTokenPath: '/t' }, {});
    assert.equal(both?.token, undefined, 'the token file wins');
  });

  test("a pod's mounted cluster CA is used even with an explicit URL, unless another is configured", () => {
    const sa = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-sa-'));
    try {
      fs.writeFileSync(path.join(sa, 'ca.crt'), 'PEM');
      const seed = { url: 'https://kubernetes.default:443', bearerTokenPath: '/run/secrets/kubernetes.io/serviceaccount/token' };
      assert.equal(k8sConnection(seed, {}, sa)?.caPath, path.join(sa, 'ca.crt'));
      assert.equal(k8sConnection({ ...seed, caPath: '/etc/my-ca.pem' }, {}, sa)?.caPath, '/etc/my-ca.pem');
      const inCluster = k8sConnection({}, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, sa);
      assert.deepEqual(inCluster, { url: 'https://10.96.0.1:443', tokenPath: path.join(sa, 'token'), token: undefined, caPath: path.join(sa, 'ca.crt'), insecureSkipTlsVerify: false });
    } finally {
      fs.rmSync(sa, { recursive: true, force: true });
    }
  });

  test('cgroup paths of both cgroup drivers name the pod UID', () => {
    assert.equal(
      podUidFromCgroup('0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1e2a3b_4c5d_6e7f_8091_a2b3c4d5e6f7.slice/cri-containerd-0123.scope\n'),
      '6f1e2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7',
    );
    assert.equal(podUidFromCgroup('0::/kubepods/besteffort/pod6f1e2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7/0123abcd\n'), '6f1e2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7');
    assert.equal(podUidFromCgroup('0::/user.slice/user-0.slice/session-1.scope\n'), undefined);
  });

  test('cgroup ids of pods and their containers lead to the pod UID, found by walking the hierarchy', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-cg-'));
    try {
      const pod = path.join(root, 'kubepods.slice', 'kubepods-besteffort.slice', 'kubepods-besteffort-pod6f1e2a3b_4c5d_6e7f_8091_a2b3c4d5e6f7.slice');
      const container = path.join(pod, 'cri-containerd-0123.scope');
      fs.mkdirSync(container, { recursive: true });
      fs.mkdirSync(path.join(root, 'system.slice'));
      const ino = (p: string) => Number(fs.statSync(p, { bigint: true }).ino);
      const pods = new CgroupPods(root, 0);
      assert.equal(pods.podUid(ino(container)), '6f1e2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7');
      assert.equal(pods.podUid(ino(pod)), '6f1e2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7');
      assert.equal(pods.podUid(ino(path.join(root, 'system.slice'))), undefined);
      // a pod started later is found on the next walk
      const later = path.join(root, 'kubepods', 'burstable', 'pod11111111-2222-3333-4444-555555555555', 'abc');
      fs.mkdirSync(later, { recursive: true });
      assert.equal(pods.podUid(ino(later)), '11111111-2222-3333-4444-555555555555');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('a token read from a file; a wrong token is an error retried with backoff', async () => {
    const api = await new KubeApiEmulator({ token: TOKEN }).start();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-token-'));
    const tokenPath = path.join(dir, 'token');
    fs.writeFileSync(tokenPath, 'wrong\n');
    const k = new Kubernetes({ url: api.url, tokenPath, insecureSkipTlsVerify: false }, fast);
    try {
      k.start();
      const collections = [PODS, SERVICES, ENDPOINTSLICES, REPLICASETS, DEPLOYMENTS];
      await waitFor('retries', () => collections.every((c) => api.count('list', c) >= 3));
      k.stop();
      await new Promise((r) => setTimeout(r, 100)); // requests in flight end
      assert.equal(k.synced, false);
      const s = k.stats();
      assert.equal(s.list_failures, s.list_requests, 'every list failed, and was counted');
      assert.equal(s.watch_requests, 0, 'no watch without a list');
    } finally {
      k.stop();
      await api.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a watch that outlives its timeout is dropped and made again, without a new list', async () => {
    const api = await new KubeApiEmulator({ hangWatches: true }).start();
    const k = new Kubernetes({ url: api.url, insecureSkipTlsVerify: false }, { ...fast, watchSeconds: () => 1, stallGraceSeconds: 1 });
    try {
      k.start();
      await waitFor('sync', () => k.synced);
      await waitFor('second watch of pods', () => api.count('watch', PODS) >= 2, 6000);
      assert.equal(api.count('list', PODS), 1, 'resumed from its version');
    } finally {
      k.stop();
      await api.stop();
    }
  });

  test('TLS: a server whose certificate does not chain to the CA is refused unless verification is skipped', async () => {
    const api = await new KubeApiEmulator({ tls: true }).start();
    const strict = new Kubernetes({ url: api.url, insecureSkipTlsVerify: false }, fast); // system CAs only
    const lax = new Kubernetes({ url: api.url, insecureSkipTlsVerify: true }, fast);
    try {
      strict.start();
      lax.start();
      await waitFor('lax syncs', () => lax.synced);
      await waitFor('strict fails', () => strict.stats().list_failures >= 2);
      assert.equal(strict.synced, false);
    } finally {
      strict.stop();
      lax.stop();
      await api.stop();
    }
  });

  test('an unreadable CA or token file is one clear error before anything starts', () => {
    const k = new Kubernetes({ url: 'https://127.0.0.1:1', caPath: '/nonexistent/ca.crt', insecureSkipTlsVerify: false });
    assert.throws(() => k.prepare(), /^Error: cannot read the Kubernetes CA \/nonexistent\/ca.crt: ENOENT$/);
    const t = new Kubernetes({ url: 'https://127.0.0.1:1', tokenPath: '/nonexistent/token', insecureSkipTlsVerify: false });
    assert.throws(() => t.prepare(), /^Error: cannot read the Kubernetes token \/nonexistent\/token: ENOENT$/);
  });
});
