// Short-connection load against the collector: wrk with `Connection: close`
// against nginx, between two test namespaces, with and without the collector,
// alternating. Prints the connection rate, the connections the collector
// reported against those made, and its loss counters.
//   node dist/bench/netflow-conns.js [seconds] [rounds]
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCollector } from '../test/helpers/collector';
import { createHostPair } from '../test/helpers/netns';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);

function wrk(ns: string, url: string): Promise<{ pid: number; requests: number; errors: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'wrk', '-t1', '-c50', `-d${seconds}s`, '-H', 'Connection: close', url]);
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
      const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      resolve({ pid: p.pid!, requests, errors: errs ? errs.slice(1).reduce((a, x) => a + Number(x), 0) : 0 });
    });
  });
}

async function main(): Promise<void> {
  const hosts = createHostPair(9);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-bench-'));
  fs.writeFileSync(
    path.join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http { access_log off; server { listen ${hosts.serverV4}:80 reuseport; location / { return 200 "ok\\n"; } } }
`,
  );
  const nginx = spawn('ip', ['netns', 'exec', hosts.server, 'nginx', '-c', `${dir}/nginx.conf`], { stdio: 'ignore' });
  // short connections exhaust the client's ports in TIME_WAIT otherwise
  execFileSync('ip', ['netns', 'exec', hosts.client, 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']);
  await new Promise((r) => setTimeout(r, 500));
  const url = `http://${hosts.serverV4}/`;
  try {
    const rows: string[] = [];
    for (let round = 1; round <= rounds; round++) {
      const base = await wrk(hosts.client, url);
      const collector = await startCollector(['--interval', '5s']);
      const withCollector = await wrk(hosts.client, url);
      await new Promise((r) => setTimeout(r, 500));
      await collector.stop('SIGTERM');
      const mine = collector.points('netflow').filter((p) => p.tags.pid === String(withCollector.pid));
      const reported = mine.reduce((a, p) => a + (p.fields.tcp_established as number), 0);
      const closed = mine.reduce((a, p) => a + (p.fields.tcp_closed as number), 0);
      const stats = collector.stderr().split('\n').filter((l) => l.includes(' points; ')).pop() ?? '';
      const losses = ['conn_map_full', 'ringbuf_full', 'close_lost', 'conns_vanished']
        .map((k) => `${k}=${new RegExp(`${k}=(\\d+)`).exec(stats)?.[1] ?? '?'}`)
        .join(' ');
      rows.push(
        `round ${round}: baseline ${(base.requests / seconds).toFixed(0)} conn/s, with collector ${(withCollector.requests / seconds).toFixed(0)} conn/s ` +
          `(ratio ${(withCollector.requests / base.requests).toFixed(3)}); connections made ${withCollector.requests} ` +
          `(+${withCollector.errors} errors, up to 50 in flight at the end), reported established ${reported}, closed ${closed}; ${losses}`,
      );
      console.log(rows[rows.length - 1]);
    }
  } finally {
    nginx.kill('SIGKILL');
    hosts.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
