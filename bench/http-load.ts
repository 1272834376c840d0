// HTTP load against the collector: wrk against nginx between two test
// namespaces, with and without the collector, alternating. Short connections
// (`Connection: close`, the default) or keep-alive (KEEPALIVE=1). Prints the
// rate ratio, the connections and requests the collector reported against
// those made, and its loss counters.
//   [KEEPALIVE=1] node dist/bench/http-load.js [seconds] [rounds]
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCollector } from '../test/helpers/collector';
import { createHostPair } from '../test/helpers/netns';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const keepAlive = !!process.env.KEEPALIVE;

function wrk(ns: string, url: string): Promise<{ pid: number; requests: number; errors: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'wrk', '-t1', '-c50', `-d${seconds}s`, ...(keepAlive ? [] : ['-H', 'Connection: close']), url]);
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
      const collector = await startCollector(['--interval', '5s'], {}, path.join(dir, 'points'));
      const withCollector = await wrk(hosts.client, url);
      await new Promise((r) => setTimeout(r, 500));
      const { code } = await collector.stop('SIGTERM', 120_000);
      if (code !== 0) throw new Error(`collector exited ${code}: ${collector.stderr()}`);
      const mine = collector.points('netflow').filter((p) => p.tags.pid === String(withCollector.pid));
      const reported = mine.reduce((a, p) => a + (p.fields.tcp_established as number), 0);
      const closed = mine.reduce((a, p) => a + (p.fields.tcp_closed as number), 0);
      const http = collector.points('httpflow');
      const httpOut = http.filter((p) => p.tags.pid === String(withCollector.pid)).length;
      const httpIn = http.filter((p) => p.tags.direction === 'incoming' && p.tags.process_name === 'nginx').length;
      const stderr = collector.stderr().split('\n');
      const last = (plugin: string) => stderr.filter((l) => l.includes(`${plugin}: `) && l.includes(' points; ')).pop() ?? '';
      const pick = (line: string, keys: string[]) => keys.map((k) => `${k}=${new RegExp(`\\b${k}=(\\d+)`).exec(line)?.[1] ?? '?'}`).join(' ');
      const losses = `netflow ${pick(last('netflow'), ['conn_map_full', 'ringbuf_full', 'close_lost', 'conns_vanished'])}; httpflow ${pick(last('httpflow'), ['ringbuf_full', 'state_full', 'unmatched_responses', 'queue_overflow'])}`;
      rows.push(
        `round ${round}: baseline ${(base.requests / seconds).toFixed(0)} req/s, with collector ${(withCollector.requests / seconds).toFixed(0)} req/s ` +
          `(ratio ${(withCollector.requests / base.requests).toFixed(3)}); requests made ${withCollector.requests} ` +
          `(+${withCollector.errors} errors, up to 50 in flight at the end); connections reported established ${reported}, closed ${closed}; ` +
          `httpflow points outgoing ${httpOut}, incoming ${httpIn}; ${losses}`,
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
