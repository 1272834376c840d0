// Entry point of bin/datakit-ebpf.
import { Collector, commonTags } from './collector';
import { Config, loadConfigOrExit } from './config';
import { configureLog, log, toStderr } from './log';
import { createOutput, reportLastError } from './output/datakit';
import { BashPlugin } from './plugins/bash/plugin';
import { DnsflowPlugin } from './plugins/dnsflow/plugin';
import { HttpflowPlugin } from './plugins/httpflow/plugin';
import { NetflowPlugin } from './plugins/netflow/plugin';
import { DnsCache } from './enrich/dns-cache';
import { Containers } from './enrich/containers';
import { k8sConnection, Kubernetes } from './enrich/k8s';
import type { Plugin } from './plugins/plugin';
import { metricsRegistry, serveMetrics } from './metrics';
import { ProcessGuard } from './process';
import { Cgroup2, checkRuntime, StartupError } from './runtime';

/** Addresses remembered for dst_domain. */
const DNS_CACHE_ENTRIES = 50_000;

function buildPlugins(config: Config, cgroup2: Cgroup2, k8s?: Kubernetes): Plugin[] {
  const plugins: Plugin[] = [];
  if (config.enabled.includes('ebpf-net')) {
    // dnsflow learns names from answers, netflow reports them as dst_domain
    const domains = new DnsCache(DNS_CACHE_ENTRIES, config.intervalMs);
    // container_id: from the cgroup id recorded with a connection, else the process's cgroup
    const containers = new Containers(cgroup2.hostMount());
    const common = { includeLoopback: config.includeLoopback, cgroup2: () => cgroup2.path(), k8s, containers };
    const netflow = new NetflowPlugin({ ...common, domains, hooks: config.hooks, maxConnections: config.maxConnections });
    // the cluster is followed first and let go of last; httpflow reads
    // netflow's connection table, so it must start after netflow
    if (k8s) plugins.push(k8s);
    const dns = new DnsflowPlugin({ ...common, cache: domains, netflow, perQuery: config.l7PerRequest, maxSeries: config.l7MaxSeries });
    // dnsflow starts first: httpflow's packet programs then call its programs
    const http = new HttpflowPlugin(netflow, { ...common, perRequest: config.l7PerRequest, maxSeries: config.l7MaxSeries, dnsPackets: dns });
    plugins.push(netflow, dns, http);
  }
  if (config.enabled.includes('ebpf-bash')) plugins.push(new BashPlugin());
  return plugins;
}

/** Start-up failure that is not a usage error: one line, status 1, and DataKit is told. */
async function fatal(config: Config, message: string): Promise<never> {
  log.error(message);
  // with --log the line above went to the file: say it on stderr as well
  if (config.logPath) toStderr(`datakit-ebpf: ${message}`);
  process.exitCode = 1;
  if (config.apiServer) await reportLastError(config.apiServer, message);
  process.exit(1);
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const config = loadConfigOrExit(argv, process.env);
  configureLog(config.logLevel, config.logPath);
  const guard = new ProcessGuard({ echoToStderr: !!config.logPath });
  guard.install();
  for (const w of config.warnings) log.warn(w);

  try {
    checkRuntime();
  } catch (err) {
    if (err instanceof StartupError) return fatal(config, err.message);
    throw err;
  }
  // mounted only if a plugin needs it and the host has none mounted
  const cgroup2 = new Cgroup2();

  // Kubernetes enrichment serves ebpf-net's flows; a CA or token that cannot be read stops start-up
  const k8sConn = config.enabled.includes('ebpf-net') ? k8sConnection(config.k8s, process.env) : undefined;
  const k8s = k8sConn ? new Kubernetes(k8sConn, {}, cgroup2.hostMount()) : undefined;
  try {
    k8s?.prepare();
  } catch (err) {
    return fatal(config, (err as Error).message);
  }

  const output = createOutput(config, commonTags(config));
  const collector = new Collector(config, buildPlugins(config, cgroup2, k8s), output);
  try {
    collector.start();
  } catch (err) {
    if (err instanceof StartupError) return fatal(config, err.message);
    return fatal(config, `cannot start: ${(err as Error).message.split('\n')[0]}`);
  } finally {
    // programs are attached: a private cgroup2 mount is no longer needed
    cgroup2.release();
  }
  if (config.metricsListen) {
    try {
      await serveMetrics(config.metricsListen, metricsRegistry(() => collector.startedPlugins, output, () => guard.errors));
      log.info(`metrics at http://${config.metricsListen}/metrics`);
    } catch (err) {
      return fatal(config, `cannot serve metrics on ${config.metricsListen}: ${(err as Error).message}`);
    }
  }
  log.info(
    `datakit-ebpf started: plugins ${collector.running.join(',')}, interval ${config.intervalMs} ms, ` +
      `output ${config.apiServer ? `http://${config.apiServer}` : 'stdout'}`,
  );

  guard.running({ stop: () => collector.stop(), abandon: () => collector.abandon() });
}
