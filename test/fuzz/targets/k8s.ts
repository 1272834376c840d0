// The Kubernetes watch reader: a watch stream (newline-delimited JSON events,
// cut into chunks anywhere, even inside a character) through
// WatchStreamDecoder into the cluster state, as the reflector applies them,
// then lookups that rebuild its tables. Events must come out exactly as an
// independent reading of the whole stream finds them, the first bad line must
// end the watch with a KubeApiError, and nothing else may be thrown.
import assert from 'node:assert/strict';
import { KubeApiError, KubeObject, WatchEvent, WatchStreamDecoder } from '../../../src/enrich/k8s/api';
import { ClusterState } from '../../../src/enrich/k8s/cluster';
import type { ReflectorStore } from '../../../src/enrich/k8s/reflector';
import { deployment, endpointSlice, pod, replicaSet, service } from '../../helpers/kube-apiserver';
import type { FuzzTarget } from '../harness';
import { mutate, mutateText, NASTY_CHARS } from '../mutate';
import { Random } from '../random';

export interface K8sInput {
  /** Which store the events go to: pods, services, endpointslices, replicasets, deployments. */
  store: number;
  /** Longest line the decoder accepts. */
  maxLine: number;
  chunks: Buffer[];
}

const OBJECTS: KubeObject[][] = [
  [
    pod('shop', 'web-5d8f-aaaaa', '10.1.0.11', { labels: { app: 'web' }, replicaSet: 'web-5d8f', hostIp: '192.0.2.1', uid: 'uid-a' }),
    pod('monitoring', 'agent-x1', '192.0.2.1', { hostNetwork: true, labels: { app: 'agent' } }),
    pod('batch', 'job-1', '10.1.0.30', { phase: 'Succeeded' }),
  ],
  [service('shop', 'web', '10.96.0.10', { app: 'web' }, [{ port: 80, targetPort: 8080, nodePort: 30080 }]), service('x', 'headless', 'None', { app: 'x' }, [])],
  [endpointSlice('shop', 'web', [{ ip: '10.1.0.11', pod: 'web-5d8f-aaaaa' }, { ip: '10.1.0.12', pod: 'web-5d8f-bbbbb' }], [{ port: 8080 }, { port: 53, protocol: 'UDP' }])],
  [replicaSet('shop', 'web-5d8f', 'web')],
  [deployment('shop', 'web')],
];

const PATHS = ['/api/v1/pods', '/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices', '/apis/apps/v1/replicasets', '/apis/apps/v1/deployments'];

const JSON_TOKENS = ['{', '}', '[', ']', ',', ':', '"', '\\', '\\u', '\\ud800', 'null', 'true', '1e999', '-0', '"type"', '"object"', '"metadata"', '\n', '\r\n', ' '];

/** A JSON value of any kind, now and then one meant to trip code that trusts shapes. */
function anyValue(rng: Random, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return rng.pick([0, -1, 1.5, 1e308, 2 ** 53 + 1, 80, 65536]);
    case 2:
      return rng.chance(0.5);
    case 3:
      return rng.pick(['', 'None', 'Pod', 'TCP', 'ReplicaSet', 'Deployment', '10.1.0.11', 'shop', 'web']) + (rng.chance(0.3) ? rng.pick(NASTY_CHARS) : '');
    case 4:
      return { toString: 1, valueOf: 2 };
    case 5:
      return JSON.parse('{"__proto__": {"app": "web"}, "constructor": "x"}') as unknown;
    case 6:
      return Array.from({ length: rng.range(0, 3) }, () => anyValue(rng, depth + 1));
    case 7: {
      const o: Record<string, unknown> = {};
      for (let n = rng.range(0, 3); n > 0; n--) o[rng.pick(['name', 'kind', 'ip', 'port', 'controller', 'app', '__proto__', 'x'])] = anyValue(rng, depth + 1);
      return o;
    }
    default: {
      // deep nesting
      let v: unknown = 1;
      for (let d = rng.range(1, 200); d > 0; d--) v = rng.chance(0.5) ? [v] : { a: v };
      return v;
    }
  }
}

/** Replaces, removes or adds one node somewhere in a JSON tree (the tree is changed in place). */
function mutateTree(rng: Random, root: Record<string, unknown>): void {
  let node: Record<string, unknown> | unknown[] = root;
  for (let d = rng.range(0, 4); d > 0; d--) {
    const keys = Object.keys(node);
    if (!keys.length) break;
    const next = (node as Record<string, unknown>)[rng.pick(keys)];
    if (typeof next !== 'object' || next === null) break;
    node = next as Record<string, unknown>;
  }
  const keys = Object.keys(node);
  const key = keys.length && rng.chance(0.8) ? rng.pick(keys) : rng.pick(['metadata', 'spec', 'status', 'ownerReferences', 'labels', 'name', 'namespace', 'uid', 'resourceVersion', 'x']);
  if (rng.chance(0.15)) delete (node as Record<string, unknown>)[key];
  else (node as Record<string, unknown>)[key] = anyValue(rng);
}

function eventLine(rng: Random, store: number): string {
  if (rng.chance(0.03)) return JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: rng.pick([410, 500, '410', null]), reason: 'Expired', message: 'too old resource version' } });
  const type = rng.pick(['ADDED', 'MODIFIED', 'DELETED', 'ADDED', 'MODIFIED', 'BOOKMARK']);
  const object =
    type === 'BOOKMARK'
      ? { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(rng.u32()) } }
      : (JSON.parse(JSON.stringify(rng.pick(OBJECTS[rng.chance(0.9) ? store : rng.int(OBJECTS.length)]))) as Record<string, unknown>);
  const ev: Record<string, unknown> = { type, object };
  for (let n = rng.chance(0.6) ? rng.range(1, 4) : 0; n > 0; n--) mutateTree(rng, rng.chance(0.9) ? object : ev);
  let line = JSON.stringify(ev);
  if (rng.chance(0.1)) line = mutateText(rng, line, JSON_TOKENS, [], 4, 1 << 16);
  return line;
}

export function generateK8s(rng: Random): K8sInput {
  const store = rng.int(OBJECTS.length);
  const lines = Array.from({ length: rng.range(0, 8) }, () => eventLine(rng, store));
  let text = lines.map((l) => l + rng.pick(['\n', '\n', '\n', '\r\n', '\n\n', ' \n'])).join('');
  if (rng.chance(0.3)) text = text.slice(0, rng.int(text.length + 1)); // the connection dropped mid-line
  let bytes: Buffer = Buffer.from(text, 'utf8');
  if (rng.chance(0.1)) bytes = mutate(rng, bytes, [], 4, 1 << 17);
  if (rng.chance(0.05)) bytes = Buffer.concat([bytes, Buffer.alloc(rng.range(1, 20_000), rng.pick([0x61, 0x20, 0x7b]))]); // a line that never ends
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const n = rng.chance(0.5) ? rng.range(1, 16) : rng.range(1, 4096);
    chunks.push(bytes.subarray(at, at + n));
    at += n;
  }
  return { store, maxLine: rng.pick([1024, 4096, 65536]), chunks };
}

/** The events of a whole stream, read at once: what the chunked decoder must deliver. */
function expected(stream: Buffer, maxLine: number): { events: unknown[]; fails: boolean } {
  const events: unknown[] = [];
  let start = 0;
  for (;;) {
    const nl = stream.indexOf(0x0a, start);
    const end = nl < 0 ? stream.length : nl;
    if (end - start > maxLine) return { events, fails: true };
    if (nl < 0) return { events, fails: false }; // an unfinished line is never read
    const line = stream.toString('utf8', start, end).trim();
    start = nl + 1;
    if (!line) continue;
    let ev: { type?: unknown; object?: unknown } | null;
    try {
      ev = JSON.parse(line) as typeof ev;
    } catch {
      return { events, fails: true };
    }
    const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isObject(ev) || !['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK'].includes(ev!.type as string) || !isObject(ev!.object)) return { events, fails: true };
    events.push(ev);
  }
}

const isStr = (v: unknown) => typeof v === 'string';
const isStringMap = (m: unknown) => typeof m === 'object' && m !== null && Object.values(m).every(isStr);
const isPort = (p: { port: unknown; protocol: unknown }) => Number.isInteger(p.port) && isStr(p.protocol);

function checkState(state: ClusterState): void {
  for (const [k, p] of state.pods.items) {
    assert.ok(isStr(k) && isStr(p.namespace) && isStr(p.name) && p.name !== '' && isStr(p.uid), JSON.stringify(p));
    assert.ok(p.ips.every((ip) => isStr(ip) && ip !== '') && (p.hostIp === undefined || isStr(p.hostIp)), JSON.stringify(p));
    assert.ok(typeof p.hostNetwork === 'boolean' && typeof p.finished === 'boolean' && isStringMap(p.labels) && (p.replicaSet === undefined || isStr(p.replicaSet)));
  }
  for (const s of state.services.items.values()) {
    assert.ok(isStr(s.namespace) && isStr(s.name) && s.clusterIps.every(isStr) && isStringMap(s.selector) && s.nodePorts.every(isPort), JSON.stringify(s));
  }
  for (const e of state.endpointSlices.items.values()) {
    assert.ok(isStr(e.namespace) && (e.service === undefined || isStr(e.service)) && e.ports.every(isPort), JSON.stringify(e));
    assert.ok(e.endpoints.every((x) => x.addresses.every(isStr) && (x.pod === undefined || isStr(x.pod))), JSON.stringify(e));
  }
  for (const r of state.replicaSets.items.values()) assert.ok(r.deployment === undefined || isStr(r.deployment));
  // the tables are rebuilt from what the stores hold
  state.lookup('10.1.0.11', 8080, 'tcp');
  state.lookup('192.0.2.1', 30080, 'udp');
  state.isServer('10.1.0.12', 8080, 'tcp');
  state.podByUid('uid-a');
  state.currentGeneration();
}

export const k8sTarget: FuzzTarget<K8sInput> = {
  name: 'k8s',
  describe: 'Kubernetes watch streams in arbitrary chunks: line splitting, event decoding, the cluster state built from them',
  generate: generateK8s,
  run(input) {
    const path = PATHS[input.store];
    const decoder = new WatchStreamDecoder(path, input.maxLine);
    const state = new ClusterState(0);
    const stores: ReflectorStore[] = [state.pods, state.services, state.endpointSlices, state.replicaSets, state.deployments];
    const store = stores[input.store];
    const got: WatchEvent[] = [];
    let failed = false;
    try {
      for (const chunk of input.chunks) {
        decoder.push(chunk, (ev) => {
          got.push(ev);
          // as the reflector applies them
          if (ev.type === 'DELETED') store.remove(ev.object);
          else if (ev.type !== 'BOOKMARK') store.upsert(ev.object);
        });
      }
    } catch (err) {
      if (!(err instanceof KubeApiError)) throw err;
      assert.ok(!/[\r\n]/.test(err.message), 'error of more than one line');
      failed = true;
    }
    const want = expected(Buffer.concat(input.chunks), input.maxLine);
    assert.deepEqual(got, want.events);
    assert.equal(failed, want.fails);
    checkState(state);
  },
  save: (input) => JSON.stringify({ store: input.store, maxLine: input.maxLine, chunks: input.chunks.map((c) => c.toString('base64')) }, null, 1),
  load(text) {
    const o = JSON.parse(text) as { store: number; maxLine: number; chunks: string[] };
    return { store: o.store, maxLine: o.maxLine, chunks: o.chunks.map((c) => Buffer.from(c, 'base64')) };
  },
};
