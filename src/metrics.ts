// The collector's own health at an optional Prometheus endpoint
// (--metrics-listen HOST:PORT): every plugin's counters (events, losses,
// table sizes), the output's, the log's, and the process's (CPU, memory, event
// loop, unexpected errors).
import * as http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { recordFailures } from './bpf/native';
import { log, logStats } from './log';
import type { Output } from './output/point';
import type { Plugin } from './plugins/plugin';

/** Turns running totals read at scrape time into increments of a prom-client Counter. */
class Totals {
  private readonly last = new Map<string, number>();
  constructor(private readonly counter: Counter<string>) {}
  set(labels: Record<string, string>, total: number): void {
    const key = JSON.stringify(labels);
    const prev = this.last.get(key);
    this.last.set(key, total);
    // inc(0) too: the series exists from the first scrape on
    this.counter.inc(labels, prev === undefined ? total : Math.max(0, total - prev));
  }
}

export function metricsRegistry(
  plugins: () => Plugin[],
  output: Output,
  unexpectedErrors: () => Record<string, number> = () => ({}),
): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'datakit_ebpf_' });
  // gauges named like counters: promtool rejects them, and they say little about us
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(`datakit_ebpf_${name}`);
  }

  const events: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_plugin_events_total',
      help: 'Running totals of each plugin: events seen, points made, and losses (ringbuf_full, *_map_full, *_overflow, ...).',
      labelNames: ['plugin', 'event'],
      registers: [registry],
      collect() {
        for (const p of plugins()) {
          for (const [event, v] of Object.entries(p.stats())) if (!p.gauges?.has(event)) events.set({ plugin: p.name, event }, v);
        }
      },
    }),
  );
  new Gauge({
    name: 'datakit_ebpf_plugin_entries',
    help: 'Current sizes of the tables each plugin keeps (pending queries, remembered connections, ...).',
    labelNames: ['plugin', 'table'],
    registers: [registry],
    collect() {
      for (const p of plugins()) {
        for (const [table, v] of Object.entries(p.stats())) if (p.gauges?.has(table)) this.set({ plugin: p.name, table }, v);
      }
    },
  });
  const points: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_output_points_total',
      help:
        'Points by what became of them: sent (to stdout or DataKit), dropped (stdout closed), ' +
        'dropped_full (oldest dropped: buffer full), rejected (DataKit refused their batch), unencodable (line protocol cannot carry them).',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        const o = output.stats();
        for (const result of ['sent', 'dropped', 'dropped_full', 'rejected', 'unencodable'] as const) points.set({ result }, o[result]);
      },
    }),
  );
  const logLines: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_log_lines_total',
      help: 'Log lines by what became of them: written, or failed (lost: a full disk, a full or closed pipe).',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        for (const [result, v] of Object.entries(logStats())) logLines.set({ result }, v);
      },
    }),
  );
  const errors: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_unexpected_errors_total',
      help: 'Exceptions and promise rejections nothing caught: logged, and the collector carried on (or exited 1).',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        for (const [kind, v] of Object.entries(unexpectedErrors())) errors.set({ kind }, v);
      },
    }),
  );
  const records: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_records_failed_total',
      help: 'Kernel records lost because the code that decodes them failed (logged with the latest error).',
      registers: [registry],
      collect() {
        records.set({}, recordFailures().count);
      },
    }),
  );
  const failedPosts: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_output_posts_failed_total',
      help: 'Posts to DataKit that failed (unreachable, timeout, 5xx, 408, 429); their points wait and are retried.',
      registers: [registry],
      collect() {
        failedPosts.set({}, output.stats().failed);
      },
    }),
  );
  const corrupt: Totals = new Totals(
    new Counter({
      name: 'datakit_ebpf_output_buffer_corrupt_total',
      help: 'Damaged stretches of the buffer dir skipped (a batch or more each).',
      registers: [registry],
      collect() {
        corrupt.set({}, output.stats().corrupt);
      },
    }),
  );
  new Gauge({
    name: 'datakit_ebpf_output_buffered_points',
    help: 'Points waiting for DataKit, in memory or in the buffer dir.',
    registers: [registry],
    collect() {
      this.set(output.stats().buffered);
    },
  });
  return registry;
}

/** Serves GET /metrics on `listen` ("host:port" or "[v6]:port"). */
export function serveMetrics(listen: string, registry: Registry): Promise<http.Server> {
  const sep = listen.lastIndexOf(':');
  const host = listen.slice(0, sep).replace(/^\[(.*)\]$/, '$1');
  const port = Number(listen.slice(sep + 1));
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found: try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => {
        log.error(`metrics: ${err.message}`);
        res.writeHead(500).end();
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.unref();
      resolve(server);
    });
  });
}
