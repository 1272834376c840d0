// Kubernetes enrichment end to end: real flows between test hosts whose
// addresses the API server emulator gives to pods and a service, the collector
// reaching it over TLS with a token file, exactly as it would a cluster.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, run, RunningCollector, sleep, startCollector, startDaemon, waitFor } from '../helpers/collector';
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
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';
import { Cgroup2 } from '../../src/runtime';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const TOKEN = 'integration-token';
const CLUSTER_IP = '10.96.7.7';
const TCP_PORT = 8080;
const HTTP_PORT = 8081;
const REQUEST = 1000;
const RESPONSE = 5000;
const CONNS = 3;
/** The pod whose UID names the cgroup a host-network process runs in. */
const BATCH_UID = '3f2a1b4c-5d6e-4f70-8192-a3b4c5d6e7f8';

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));
const sum = (ps: ParsedPoint[], f: string) => ps.reduce((a, p) => a + (p.fields[f] as number), 0);

function k8sTags(p: ParsedPoint): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { sub_source: p.tags.sub_source };
  for (const side of ['src', 'dst']) {
    for (const t of ['namespace', 'pod_name', 'service_name', 'deployment_name']) out[`${side}_k8s_${t}`] = p.tags[`${side}_k8s_${t}`];
  }
  return out;
}

function ends(src: [string, string, string, string], dst: [string, string, string, string]) {
  const [sn, sp, ss, sd] = src;
  const [dn, dp, ds, dd] = dst;
  return {
    sub_source: 'K8s',
    src_k8s_namespace: sn,
    src_k8s_pod_name: sp,
    src_k8s_service_name: ss,
    src_k8s_deployment_name: sd,
    dst_k8s_namespace: dn,
    dst_k8s_pod_name: dp,
    dst_k8s_service_name: ds,
    dst_k8s_deployment_name: dd,
  };
}

describe('Kubernetes enrichment of real flows', { skip }, () => {
  let hosts: HostPair;
  let api: KubeApiEmulator;
  let collector: RunningCollector | undefined;
  let servers: ChildProcess[] = [];
  let tmp: string;
  let cgroupDir: string | undefined;

  const WEB: [string, string, string, string] = ['shop', 'web-6b7c-x1', 'web', 'web'];
  const TOOLBOX: [string, string, string, string] = ['tools', 'toolbox', 'N/A', 'N/A'];
  const NOT_IN_CLUSTER: [string, string, string, string] = ['N/A', 'N/A', 'N/A', 'N/A'];

  /** CONNS connections of exact size from the client host; returns the client's pid. */
  async function tcpRound(dst: string, port: number): Promise<number> {
    const out = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'client', dst, String(port), String(CONNS), String(REQUEST)]);
    const summary = JSON.parse(out.stdout);
    assert.equal(summary.received, CONNS * RESPONSE);
    return summary.pid;
  }

  /**
   * The outgoing flow of client `pid`, once all its CONNS connections were
   * reported closed: its points may straddle a report, so fields are summed and
   * every point must carry the same k8s tags.
   */
  async function flowOf(pid: number) {
    const mine = () => collector!.points('netflow').filter((p) => p.tags.pid === String(pid) && p.tags.direction === 'outgoing');
    await waitFor(`pid ${pid} reported closed`, () => sum(mine(), 'tcp_closed') >= CONNS, 15000);
    const points = mine();
    for (const p of points) assert.deepEqual(k8sTags(p), k8sTags(points[0]), `one set of k8s tags: ${show(points)}`);
    return {
      k8s: k8sTags(points[0]),
      dstIp: points[0].tags.dst_ip,
      bytesWritten: sum(points, 'bytes_written'),
      bytesRead: sum(points, 'bytes_read'),
      established: sum(points, 'tcp_established'),
    };
  }

  /** httpflow series that satisfy `pred`, once they count `count` exchanges (a series per interval). */
  async function exchangesWhen(pred: (p: ParsedPoint) => boolean, count: number): Promise<ParsedPoint[]> {
    const matching = () => collector!.points('httpflow').filter(pred);
    await waitFor(`${count} exchanges`, () => sum(matching(), 'count') >= count, 15000);
    return matching();
  }

  async function settled(): Promise<void> {
    await waitFor('five watches', () => api.openWatches() === 5, 10000);
    await sleep(1300); // lookup tables are rebuilt at most once a second
  }

  before(async () => {
    hosts = createHostPair(7);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-k8s-'));
    fs.writeFileSync(path.join(tmp, 'token'), `${TOKEN}\n`);
    api = await new KubeApiEmulator({ tls: true, token: TOKEN, bookmarkMs: 500 }).start();
    api.apply(DEPLOYMENTS, deployment('shop', 'web'));
    api.apply(REPLICASETS, replicaSet('shop', 'web-6b7c', 'web'));
    api.apply(PODS, pod('shop', 'web-6b7c-x1', hosts.serverV4, { labels: { app: 'web' }, replicaSet: 'web-6b7c' }));
    api.apply(PODS, pod('tools', 'toolbox', hosts.clientV4));
    api.apply(SERVICES, service('shop', 'web', CLUSTER_IP, { app: 'web' }, [{ port: 80, targetPort: TCP_PORT }]));
    api.apply(ENDPOINTSLICES, endpointSlice('shop', 'web', [{ ip: hosts.serverV4, pod: 'web-6b7c-x1' }], [{ port: TCP_PORT }, { port: HTTP_PORT }]));

    servers = [
      await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'server', hosts.serverV4, String(TCP_PORT), String(RESPONSE)], 'listening'),
      await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'http-app', hosts.serverV4, String(HTTP_PORT)], 'listening'),
    ];
    // the ClusterIP, as kube-proxy makes it: DNAT on the client's way out
    execFileSync('ip', ['-n', hosts.client, 'route', 'add', '10.96.0.0/16', 'via', hosts.serverV4]);
    execFileSync('ip', ['netns', 'exec', hosts.client, 'nft', '-f', '-'], {
      input: `table ip kubeproxy {\n chain out {\n  type nat hook output priority -100;\n  ip daddr ${CLUSTER_IP} tcp dport 80 dnat to ${hosts.serverV4}:${TCP_PORT}\n }\n}\n`,
    });

    collector = await startCollector(['--interval', '2s', '--enabled', 'ebpf-net'], {
      K8S_URL: api.url,
      K8S_BEARER_TOKEN_PATH: path.join(tmp, 'token'),
      K8S_CA_PATH: api.caPath,
    });
    await waitFor('k8s synced', () => /k8s: synced: pods=2 services=1 endpointslices=1 replicasets=1 deployments=1/.test(collector!.stderr()), 10000);
    await settled();
  });

  after(async () => {
    await collector?.stop('SIGTERM');
    for (const s of servers) killGroup(s);
    await api?.stop();
    hosts?.destroy();
    if (cgroupDir) await removeCgroup(cgroupDir);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('pod to pod: both ends tagged, on the client and on the server', async () => {
    const pid = await tcpRound(hosts.serverV4, TCP_PORT);
    const out = await flowOf(pid);
    assert.deepEqual(out.k8s, ends(TOOLBOX, WEB));
    assert.equal(out.bytesWritten, CONNS * REQUEST);
    assert.equal(out.bytesRead, CONNS * RESPONSE);
    const served = collector!.points('netflow').filter((p) => p.tags.direction === 'incoming' && p.tags.src_port === String(TCP_PORT) && p.tags.src_ip === hosts.serverV4);
    assert.ok(served.length >= 1, show(served));
    for (const p of served) assert.deepEqual(k8sTags(p), ends(WEB, TOOLBOX));
  });

  test('through the ClusterIP: the service, with pod N/A', async () => {
    const pid = await tcpRound(CLUSTER_IP, 80);
    const out = await flowOf(pid);
    assert.equal(out.dstIp, CLUSTER_IP);
    assert.deepEqual(out.k8s, ends(TOOLBOX, ['shop', 'N/A', 'web', 'web']));
    assert.equal(out.bytesWritten, CONNS * REQUEST);
    assert.equal(out.established, CONNS);
  });

  test('httpflow points carry the same tags', async () => {
    const r = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-keepalive', hosts.serverV4, String(HTTP_PORT), '5', '/app/items']);
    const pid = JSON.parse(r.stdout).pid as number;
    const client = await exchangesWhen((p) => p.tags.pid === String(pid), 5);
    assert.equal(sum(client, 'count'), 5, show(client));
    for (const p of client) {
      assert.equal(p.tags.direction, 'outgoing');
      assert.equal(p.fields.path, '/app/items');
      assert.deepEqual(k8sTags(p), ends(TOOLBOX, WEB));
    }
    const served = await exchangesWhen((p) => p.tags.direction === 'incoming' && p.tags.src_port === String(HTTP_PORT), 5);
    assert.equal(sum(served, 'count'), 5, show(served));
    for (const p of served) assert.deepEqual(k8sTags(p), ends(WEB, TOOLBOX));
  });

  test('after the watch connections are cut: a rescheduled pod and a deleted one show, without a new list', async () => {
    const lists = api.count('list');
    const watches = api.count('watch');
    assert.equal(api.cutWatches(), 5);
    api.delete(PODS, 'shop', 'web-6b7c-x1');
    api.apply(PODS, pod('shop', 'web-6b7c-x2', hosts.serverV4, { labels: { app: 'web' }, replicaSet: 'web-6b7c' }));
    api.apply(ENDPOINTSLICES, endpointSlice('shop', 'web', [{ ip: hosts.serverV4, pod: 'web-6b7c-x2' }], [{ port: TCP_PORT }, { port: HTTP_PORT }]));
    api.delete(PODS, 'tools', 'toolbox');
    await settled();
    assert.ok(api.count('watch') >= watches + 5, 'every resource watched again');
    assert.equal(api.count('list'), lists, 'resumed from the last resourceVersion: no list');

    const pid = await tcpRound(hosts.serverV4, TCP_PORT);
    assert.deepEqual((await flowOf(pid)).k8s, ends(NOT_IN_CLUSTER, ['shop', 'web-6b7c-x2', 'web', 'web']));
  });

  test("a host-network pod's process: the local end from its pod cgroup", async () => {
    // the client host's address now belongs to a node; a batch pod runs there in the host network
    api.apply(PODS, pod('batch', 'report-29', hosts.clientV4, { hostNetwork: true, uid: BATCH_UID }));
    cgroupDir = path.join(new Cgroup2().path(), `dkeb-test-kubepods-pod${BATCH_UID.replace(/-/g, '_')}.slice`);
    fs.mkdirSync(cgroupDir);
    await settled();
    // a short-lived client: gone by the report, found through the cgroup id the kernel recorded
    const out1 = await run('sh', ['-c', `echo $$ > ${cgroupDir}/cgroup.procs && exec "$@"`, 'sh', 'ip', 'netns', 'exec', hosts.client,
      process.execPath, peer, 'client', hosts.serverV4, String(TCP_PORT), String(CONNS), String(REQUEST)]);
    const pid = JSON.parse(out1.stdout).pid as number;
    const out = await flowOf(pid);
    assert.equal(out.established, CONNS);
    assert.deepEqual(out.k8s, ends(['batch', 'report-29', 'N/A', 'N/A'], ['shop', 'web-6b7c-x2', 'web', 'web']));
    // the same host address from a process outside that cgroup is not the pod
    const other = await tcpRound(hosts.serverV4, TCP_PORT);
    assert.deepEqual((await flowOf(other)).k8s, ends(NOT_IN_CLUSTER, ['shop', 'web-6b7c-x2', 'web', 'web']));
  });

  test('410 Gone: compacted history means one new list per resource, and the state is right again', async () => {
    const lists = api.count('list');
    api.cutWatches();
    api.apply(PODS, pod('tools', 'toolbox-2', hosts.clientV4));
    api.delete(PODS, 'batch', 'report-29');
    api.compact();
    await settled();
    assert.equal(api.count('list'), lists + 5, 'each resource listed once more');
    const pid = await tcpRound(hosts.serverV4, TCP_PORT);
    assert.deepEqual((await flowOf(pid)).k8s, ends(['tools', 'toolbox-2', 'N/A', 'N/A'], ['shop', 'web-6b7c-x2', 'web', 'web']));
    const stats = collector!.stderr().split('\n').filter((l) => l.includes('k8s: 0 points')).at(-1) ?? '';
    assert.match(stats, /relists_gone=5/, stats);
  });
});

/** A cgroup can go only once its last process is gone, which takes a moment after a kill. */
async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return fs.rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      if (i >= 50) throw err;
      await sleep(100);
    }
  }
}
