// What following a steady cluster costs the API server and the collector:
// the real client (src/enrich/k8s) against the API server emulator holding
// 1,000 pods, for one hour of the emulator's time. Time is compressed: a
// watch's timeoutSeconds lasts MS_PER_SECOND ms, so the hour takes a few
// seconds; request counts do not depend on the compression.
//   node --expose-gc dist/bench/k8s-api.js     (PODS=1000 MS_PER_SECOND=5 HOURS=1; npm run bench runs it too)
import { Kubernetes } from '../src/enrich/k8s';
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
} from '../test/helpers/kube-apiserver';

const POD_COUNT = Number(process.env.PODS ?? 1000);
const MS_PER_SECOND = Number(process.env.MS_PER_SECOND ?? 5);
const HOURS = Number(process.env.HOURS ?? 1);
const PODS_PER_DEPLOYMENT = 10;

function ip(i: number): string {
  return `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

async function waitFor(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

export async function k8sApiBench(): Promise<string[]> {
  const api = await new KubeApiEmulator({ msPerSecond: MS_PER_SECOND, bookmarkMs: 60 * MS_PER_SECOND }).start();
  const deployments = Math.ceil(POD_COUNT / PODS_PER_DEPLOYMENT);
  for (let d = 0; d < deployments; d++) {
    const ns = `team-${d % 20}`;
    const name = `app-${d}`;
    api.apply(DEPLOYMENTS, deployment(ns, name));
    api.apply(REPLICASETS, replicaSet(ns, `${name}-5f6d7`, name));
    api.apply(SERVICES, service(ns, name, `10.96.${d >> 8}.${d & 255}`, { app: name }, [{ port: 80, targetPort: 8080 }]));
    const eps: { ip: string; pod: string }[] = [];
    for (let i = 0; i < PODS_PER_DEPLOYMENT && d * PODS_PER_DEPLOYMENT + i < POD_COUNT; i++) {
      const n = d * PODS_PER_DEPLOYMENT + i;
      const podName = `${name}-5f6d7-${n.toString(36).padStart(5, '0')}`;
      api.apply(PODS, pod(ns, podName, ip(n), { labels: { app: name, 'pod-template-hash': '5f6d7' }, replicaSet: `${name}-5f6d7`, hostIp: `192.0.2.${n % 50}` }));
      eps.push({ ip: ip(n), pod: podName });
    }
    api.apply(ENDPOINTSLICES, endpointSlice(ns, name, eps, [{ port: 8080 }]));
  }

  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const k = new Kubernetes({ url: api.url, insecureSkipTlsVerify: false });
  const began = Date.now();
  k.start();
  await waitFor(() => k.synced);
  const syncMs = Date.now() - began;
  const t0 = performance.now();
  const probe = k.state.lookup(ip(0), 8080, 'tcp');
  const buildMs = performance.now() - t0;
  if (probe?.deployment !== 'app-0') throw new Error(`lookup failed: ${JSON.stringify(probe)}`);
  global.gc?.();
  const heapMb = global.gc ? ((process.memoryUsage().heapUsed - heapBefore) / 2 ** 20).toFixed(1) : 'n/a (run with --expose-gc)';

  const startLists = api.count('list');
  const startWatches = api.count('watch');
  const hourMs = 3600 * MS_PER_SECOND * HOURS;
  await new Promise((r) => setTimeout(r, hourMs));
  const lists = api.count('list') - startLists;
  const watches = api.count('watch') - startWatches;
  const initialLists = startLists;
  k.stop();
  await api.stop();

  const perHour = (n: number) => (n / HOURS).toFixed(1);
  return [
    `Steady cluster: ${POD_COUNT} pods, ${deployments} deployments, services and endpoint slices; ${HOURS} h of API time at ${MS_PER_SECOND} ms per second.`,
    '',
    '| start-up lists | lists / hour | watches / hour | requests / hour | initial sync | index build | heap for the index |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    `| ${initialLists} | ${perHour(lists)} | ${perHour(watches)} | ${perHour(lists + watches)} | ${syncMs} ms | ${buildMs.toFixed(1)} ms | ${heapMb} MB |`,
  ];
}

if (require.main === module) {
  k8sApiBench().then(
    (lines) => {
      process.stdout.write(`${lines.join('\n')}\n`);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}
