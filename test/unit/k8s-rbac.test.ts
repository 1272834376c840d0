// The manifests in deploy/: the ClusterRole grants exactly what the collector
// lists and watches, and the other objects agree with each other.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { WATCH_VERBS, WATCHED_RESOURCES } from '../../src/enrich/k8s/resources';
import { repoRoot } from '../../src/paths';

const deployDir = path.join(repoRoot, 'deploy');
const load = (file: string): any => parse(fs.readFileSync(path.join(deployDir, file), 'utf8'));

type Rule = Record<string, unknown>;

/** Rules in a comparable form: every list sorted, rules ordered by API group; other keys kept. */
function normalise(rules: Rule[]): Rule[] {
  const sorted = rules.map((r) =>
    Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Array.isArray(v) ? [...v].sort() : v])),
  );
  return sorted.sort((a, b) => JSON.stringify(a.apiGroups).localeCompare(JSON.stringify(b.apiGroups)));
}

/** One rule per API group: its watched resources, the watch verbs, nothing else. */
function expectedRules(): Rule[] {
  const byGroup = new Map<string, string[]>();
  for (const r of WATCHED_RESOURCES) byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r.resource]);
  return normalise([...byGroup].map(([group, resources]) => ({ apiGroups: [group], resources, verbs: [...WATCH_VERBS] })));
}

test('the ClusterRole grants exactly WATCHED_RESOURCES x WATCH_VERBS', () => {
  const role = load('clusterrole.yaml');
  assert.equal(role.apiVersion, 'rbac.authorization.k8s.io/v1');
  assert.equal(role.kind, 'ClusterRole');
  assert.deepEqual(Object.keys(role).sort(), ['apiVersion', 'kind', 'metadata', 'rules']);
  assert.deepEqual(normalise(role.rules), expectedRules());
  assert.doesNotMatch(JSON.stringify(role.rules), /\*/);
});

test('the ClusterRole comparison catches extra grants', () => {
  const good: Rule[] = load('clusterrole.yaml').rules;
  const variants: [string, (rules: Rule[]) => void][] = [
    ['get', (rules) => (rules[0].verbs as string[]).push('get')],
    ['wildcard verb', (rules) => (rules[0].verbs = ['*'])],
    ['wildcard resource', (rules) => (rules[1].resources as string[]).push('*')],
    ['secrets', (rules) => (rules[0].resources as string[]).push('secrets')],
    ['resourceNames', (rules) => (rules[2].resourceNames = ['x'])],
    ['a missing resource', (rules) => (rules[2].resources as string[]).pop()],
    ['a group split in two', (rules) => rules.push({ ...rules[0], resources: [(rules[0].resources as string[]).pop()] })],
  ];
  for (const [what, change] of variants) {
    const rules = structuredClone(good);
    change(rules);
    assert.notDeepEqual(normalise(rules), expectedRules(), what);
  }
});

test('the binding gives the ClusterRole to the DaemonSet service account', () => {
  const role = load('clusterrole.yaml');
  const binding = load('clusterrolebinding.yaml');
  const sa = load('serviceaccount.yaml');
  const ds = load('daemonset.yaml');
  assert.equal(binding.kind, 'ClusterRoleBinding');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
  assert.equal(sa.kind, 'ServiceAccount');
  assert.equal(ds.spec.template.spec.serviceAccountName, sa.metadata.name);
  assert.equal(sa.metadata.namespace, ds.metadata.namespace);
  assert.equal(load('namespace.yaml').metadata.name, ds.metadata.namespace);
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
});

test('kustomization.yaml lists every manifest in deploy/', () => {
  const listed: string[] = load('kustomization.yaml').resources;
  const files = fs.readdirSync(deployDir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
  assert.deepEqual([...listed].sort(), files.sort());
});

test('the DaemonSet sees the host and has resource bounds', () => {
  const ds = load('daemonset.yaml');
  assert.equal(ds.kind, 'DaemonSet');
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, true);
  assert.deepEqual(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels);
  assert.equal(pod.containers.length, 1);
  const [c] = pod.containers;
  const hostPathOf = new Map<string, string>(pod.volumes.map((v: any) => [v.name, v.hostPath?.path]));
  const mounted = new Map<string, string | undefined>(c.volumeMounts.map((m: any) => [m.mountPath, hostPathOf.get(m.name)]));
  for (const p of ['/sys/fs/cgroup', '/sys/kernel/btf']) assert.equal(mounted.get(p), p, `host ${p} mounted at ${p}`);
  // the root file system is read-only: the buffer dir (default --buffer-dir) is the host's, writable
  const buffer = '/var/lib/datakit-ebpf/buffer';
  assert.equal(mounted.get(buffer), buffer, `host ${buffer} mounted at ${buffer}`);
  assert.ok(!c.volumeMounts.find((m: any) => m.mountPath === buffer).readOnly);
  for (const kind of ['requests', 'limits']) {
    assert.ok(c.resources?.[kind]?.cpu, `resources.${kind}.cpu`);
    assert.ok(c.resources?.[kind]?.memory, `resources.${kind}.memory`);
  }
});
