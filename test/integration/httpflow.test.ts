// httpflow against nginx (and an app server behind it) on a test host, with
// curl and Node's http client: exact method, path, status, version and pid on
// both sides, keep-alive, latency, and silence for non-HTTP bytes.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, run, sleep, spawnGroup, startCollector, startDaemon } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

function childrenOf(pid: number): number[] {
  const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return kids ? kids.split(' ').map(Number) : [];
}

describe('httpflow', { skip }, () => {
  let hosts: HostPair;
  let dir: string;
  let nginx: ChildProcess;
  let worker: number;
  const daemons: ChildProcess[] = [];

  before(async () => {
    hosts = createHostPair(5);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-http-'));
    fs.chmodSync(dir, 0o755); // nginx's worker does not run as root
    fs.writeFileSync(path.join(dir, 'index.html'), '<p>hello</p>\n');
    daemons.push(await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'http-app', '127.0.0.1', '9000'], 'listening'));
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events {}
http {
  access_log off;
  server {
    listen ${hosts.serverV4}:80; listen [${hosts.serverV6}]:80;
    root ${dir};
    location = /old { return 301 /new; }
    location /app/ { proxy_pass http://127.0.0.1:9000; proxy_http_version 1.1; }
  }
}
`,
    );
    nginx = spawnGroup('ip', ['netns', 'exec', hosts.server, 'nginx', '-c', path.join(dir, 'nginx.conf')], { stdio: 'ignore' });
    for (let i = 0; i < 50 && !worker; i++) {
      await sleep(100);
      worker = childrenOf(nginx.pid!)[0];
    }
    assert.ok(worker, 'nginx worker started');
  });
  after(() => {
    killGroup(nginx);
    for (const d of daemons) killGroup(d);
    hosts?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** One curl (one kept-alive connection) for all `urls`; prints each status. */
  const curl = (options: string[], ...urls: string[]) =>
    run('ip', ['netns', 'exec', hosts.client, 'curl', '-s', '-w', '%{http_code}\\n', ...options, ...urls.flatMap((u) => ['-o', '/dev/null', u])]);

  test('both sides of each request: method, path, status, version, pid, latency', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const base = `http://${hosts.serverV4}`;
      const a = await curl([], `${base}/index.html?query=dropped#frag`, `${base}/missing`);
      const b = await curl(['--http1.0', '-X', 'POST', '-d', 'x=1'], `${base}/old`);
      const c = await curl([], `${base}/app/fail`, `${base}/app/slow`);
      const d = await curl([], `http://[${hosts.serverV6}]/index.html`);
      assert.deepEqual([a.stdout, b.stdout, c.stdout, d.stdout], ['200\n404\n', '301\n', '500\n200\n', '200\n']);
      await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'noise', hosts.serverV4, '80', '3000']);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());

      const points = collector.points('httpflow');
      const summary = (p: ParsedPoint) => [p.tags.direction, p.tags.pid, p.fields.method, p.fields.path, p.fields.status_code, p.fields.http_version, p.tags.family].join(' ');
      const expected = [
        [a.pid, 'GET', '/index.html', 200, '1.1', 'IPv4'],
        [a.pid, 'GET', '/missing', 404, '1.1', 'IPv4'],
        [b.pid, 'POST', '/old', 301, '1.0', 'IPv4'],
        [c.pid, 'GET', '/app/fail', 500, '1.1', 'IPv4'],
        [c.pid, 'GET', '/app/slow', 200, '1.1', 'IPv4'],
        [d.pid, 'GET', '/index.html', 200, '1.1', 'IPv6'],
      ];
      const want = expected.flatMap(([pid, ...rest]) => [
        ['outgoing', pid, ...rest].join(' '),
        ['incoming', worker, ...rest].join(' '),
      ]);
      assert.deepEqual(points.map(summary).sort(), want.sort(), 'exactly these, and nothing for the binary noise');

      for (const p of points) {
        assert.equal(p.tags.transport, 'tcp');
        assert.equal(p.tags.source, 'httpflow');
        const v6 = p.tags.family === 'IPv6';
        const [client, server] = v6 ? [hosts.clientV6, hosts.serverV6] : [hosts.clientV4, hosts.serverV4];
        if (p.tags.direction === 'outgoing') {
          assert.deepEqual([p.tags.src_ip, p.tags.src_port, p.tags.dst_ip, p.tags.dst_port, p.tags.process_name], [client, '*', server, '80', 'curl']);
        } else {
          assert.deepEqual([p.tags.src_ip, p.tags.src_port, p.tags.dst_ip, p.tags.dst_port, p.tags.process_name], [server, '80', client, '*', 'nginx']);
        }
        const latency = p.fields.latency as number;
        if (p.fields.path === '/app/slow') assert.ok(latency >= 300e6 && latency < 2e9, `slow handler shows: ${latency}`);
        else assert.ok(latency > 0 && latency < 300e6, `latency of ${p.fields.path}: ${latency}`);
      }
      // the client waits longer than the server takes: it sees the network too
      const slowOut = points.find((p) => p.fields.path === '/app/slow' && p.tags.direction === 'outgoing')!;
      const slowIn = points.find((p) => p.fields.path === '/app/slow' && p.tags.direction === 'incoming')!;
      assert.ok((slowOut.fields.latency as number) >= (slowIn.fields.latency as number), show([slowOut, slowIn]));
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('pipelining: requests sent before any answer pair with their responses in order', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const paths = ['/app/slow/1', '/app/slow/2', '/app/slow/3'];
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-pipeline', hosts.serverV4, '80', ...paths]);
      assert.deepEqual(JSON.parse(client.stdout).statuses, [200, 200, 200]);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const out = collector.points('httpflow').filter((p) => p.tags.pid === String(client.pid));
      assert.deepEqual(out.map((p) => [p.fields.path, p.fields.status_code]), paths.map((p) => [p, 200]), show(out));
      // answered one after the other: each waited for those before it
      const latencies = out.map((p) => p.fields.latency as number);
      assert.ok(latencies[0] >= 300e6 && latencies[1] >= 300e6 && latencies[2] >= latencies[1], show(latencies));
      const served = collector.points('httpflow').filter((p) => p.tags.pid === String(worker));
      assert.deepEqual(served.map((p) => p.fields.path), paths);
      // with more than one request waiting the kernel sends each on its own, and user space pairs them
      assert.match(collector.stderr(), /httpflow: \d+ points; .*requests=6 responses=6 kernel_paired=0 /);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('keep-alive: many requests on one connection, each its own point', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const N = 200;
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-keepalive', hosts.serverV4, '80', String(N), '/index.html']);
      assert.deepEqual(JSON.parse(client.stdout).statuses, Array(N).fill(200));
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      const out = points.filter((p) => p.tags.pid === String(client.pid));
      assert.equal(out.length, N);
      assert.ok(out.every((p) => p.tags.direction === 'outgoing' && p.fields.path === '/index.html' && p.fields.status_code === 200 && p.tags.process_name === 'node'));
      const inc = points.filter((p) => p.tags.pid === String(worker));
      assert.equal(inc.length, N);
      // one request at a time: the kernel pairs every exchange itself, on both sides
      assert.match(collector.stderr(), new RegExp(`httpflow: \\d+ points; .*requests=${2 * N} responses=${2 * N} kernel_paired=${2 * N} `));
      const netflow = collector.points('netflow').filter((p) => p.tags.pid === String(client.pid));
      assert.equal(netflow.reduce((a, p) => a + (p.fields.tcp_established as number), 0), 1, 'one connection');
    } finally {
      await collector.stop('SIGKILL');
    }
  });
});
