// DNS load against the collector: dnsperf against dnsmasq between two test
// namespaces, with and without the collector, alternating. Prints the query
// rate, the queries dnsflow reported against those sent, and its counters.
//   [QPS=N] node dist/bench/dnsflow-load.js [seconds] [rounds]   (QPS caps dnsperf's rate)
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCollector } from '../test/helpers/collector';
import { createHostPair } from '../test/helpers/netns';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);

function dnsperf(ns: string, server: string, queries: string): Promise<{ sent: number; completed: number; qps: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'dnsperf', '-s', server, '-d', queries, '-l', String(seconds), '-c', '4', '-q', '200', ...(process.env.QPS ? ['-Q', process.env.QPS] : [])]);
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`dnsperf exited ${code}: ${out}`));
      resolve({
        sent: Number(/Queries sent:\s+(\d+)/.exec(out)?.[1]),
        completed: Number(/Queries completed:\s+(\d+)/.exec(out)?.[1]),
        qps: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]),
      });
    });
  });
}

async function main(): Promise<void> {
  const hosts = createHostPair(8);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-dnsbench-'));
  const queries = path.join(dir, 'queries');
  fs.writeFileSync(queries, 'www.example.test A\nnx.example.test A\nwww.example.test AAAA\n');
  const dnsmasq = spawn('ip', ['netns', 'exec', hosts.server, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
    `--listen-address=${hosts.serverV4}`, '--pid-file=', '--user=root', `--host-record=www.example.test,${hosts.serverV4},${hosts.serverV6}`,
    '--address=/nx.example.test/', '--log-facility=/dev/null', '--dns-forward-max=1000'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000));
  try {
    for (let round = 1; round <= rounds; round++) {
      const base = await dnsperf(hosts.client, hosts.serverV4, queries);
      const collector = await startCollector(['--interval', '5s'], {}, path.join(dir, 'points'));
      const withCollector = await dnsperf(hosts.client, hosts.serverV4, queries);
      await new Promise((r) => setTimeout(r, 500));
      const { code } = await collector.stop('SIGTERM', 120_000);
      if (code !== 0) throw new Error(`collector exited ${code}: ${collector.stderr()}`);
      const reported = collector.points('dnsflow').filter((p) => p.tags.dst_ip === hosts.serverV4);
      const answered = reported.filter((p) => p.fields.timeout === false).length;
      const stats = collector.stderr().split('\n').filter((l) => l.includes('dnsflow: ') && l.includes(' points; ')).pop() ?? '';
      const counters = ['ringbuf_full', 'parse_errors', 'unmatched_responses', 'pending_overflow', 'timeouts']
        .map((k) => `${k}=${new RegExp(`${k}=(\\d+)`).exec(stats)?.[1] ?? '?'}`)
        .join(' ');
      console.log(
        `round ${round}: baseline ${base.qps.toFixed(0)} q/s, with collector ${withCollector.qps.toFixed(0)} q/s ` +
          `(ratio ${(withCollector.qps / base.qps).toFixed(3)}); sent ${withCollector.sent}, completed ${withCollector.completed}, ` +
          `reported ${reported.length} (answered ${answered}); ${counters}`,
      );
    }
  } finally {
    dnsmasq.kill('SIGKILL');
    hosts.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
