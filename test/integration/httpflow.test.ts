// httpflow against nginx (and an app server behind it) on a test host, with
// curl and Node's http client. By default (series summed in the kernel): exact
// counts per path and status on both sides, over kept-alive and fresh
// connections, percentiles within 5% of the client's own timings, overflow
// series when the table is full, a 100 Continue that is not the answer. With
// --l7-per-request (a point per exchange): exact method, path, status,
// version and pid on both sides, pipelining, keep-alive, latency, and silence
// for non-HTTP bytes.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, nodeComm, pluginStats, run, sleep, startCollector, startDaemon, startNginx } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

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
    ({ nginx, worker } = await startNginx(hosts.server, path.join(dir, 'nginx.conf')));
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

  test('per request: both sides of each request: method, path, status, version, pid, latency', async () => {
    const collector = await startCollector(['--interval', '60s', '--l7-per-request']);
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

  test('per request: pipelining: requests sent before any answer pair with their responses in order', async () => {
    const collector = await startCollector(['--interval', '60s', '--l7-per-request']);
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

  test('per request: keep-alive: many requests on one connection, each its own point', async () => {
    const collector = await startCollector(['--interval', '60s', '--l7-per-request']);
    try {
      const N = 200;
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-keepalive', hosts.serverV4, '80', String(N), '/index.html']);
      assert.deepEqual(JSON.parse(client.stdout).statuses, Array(N).fill(200));
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      const out = points.filter((p) => p.tags.pid === String(client.pid));
      assert.equal(out.length, N);
      assert.ok(out.every((p) => p.tags.direction === 'outgoing' && p.fields.path === '/index.html' && p.fields.status_code === 200 && p.tags.process_name === nodeComm));
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

  /** Series of one side, as "path status count" (method, version and the rest checked apart). */
  const series = (points: ParsedPoint[], pred: (p: ParsedPoint) => boolean) =>
    points.filter(pred).map((p) => `${p.fields.path} ${p.fields.status_code} ${p.fields.count}`).sort();

  test('series: exact counts per path and status on both sides, kept-alive and fresh connections', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const base = `http://${hosts.serverV4}`;
      const kept = await curl([], `${base}/index.html`, `${base}/missing`, `${base}/index.html?q=1`, `${base}/app/fail`, `${base}/missing`, `${base}/index.html`, `${base}/app/fail`);
      const fresh = await curl(['-H', 'Connection: close'], `${base}/index.html`, `${base}/app/fail`, `${base}/index.html`);
      assert.equal(kept.stdout, '200\n404\n200\n500\n404\n200\n500\n');
      assert.equal(fresh.stdout, '200\n500\n200\n');
      await sleep(500);
      const t0 = BigInt(Date.now()) * 1_000_000n;
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      assert.deepEqual(series(points, (p) => p.tags.pid === String(kept.pid)), ['/app/fail 500 2', '/index.html 200 3', '/missing 404 2']);
      assert.deepEqual(series(points, (p) => p.tags.pid === String(fresh.pid)), ['/app/fail 500 1', '/index.html 200 2']);
      assert.deepEqual(series(points, (p) => p.tags.pid === String(worker)), ['/app/fail 500 3', '/index.html 200 5', '/missing 404 2']);
      for (const p of points) {
        assert.deepEqual([p.fields.method, p.fields.http_version, p.tags.transport, p.tags.family], ['GET', '1.1', 'tcp', 'IPv4']);
        const server = p.tags.pid === String(worker);
        assert.equal(p.tags.direction, server ? 'incoming' : 'outgoing');
        const ends = [p.tags.src_ip, p.tags.src_port, p.tags.dst_ip, p.tags.dst_port, p.tags.process_name];
        assert.deepEqual(ends, server ? [hosts.serverV4, '80', hosts.clientV4, '*', 'nginx'] : [hosts.clientV4, '*', hosts.serverV4, '80', 'curl']);
        const f = p.fields as Record<string, number>;
        assert.ok(f.latency > 0 && f.latency <= f.latency_max && f.latency_p50 <= f.latency_p90 && f.latency_p90 <= f.latency_p99 && f.latency_p99 <= f.latency_max, show(p));
        assert.ok(p.time >= t0, 'stamped at the end of the interval');
      }
      assert.match(collector.stderr(), /httpflow: \d+ points; .*overflow=0 series_lost=0 /);
      // every add counted itself out of http_series_in_progress: each read found the CPUs quiet
      assert.equal(pluginStats(collector.stderr(), 'httpflow').series_reads_busy, 0);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('series: p50, p90, p99 and max within 5% of the exact latencies of the same exchanges', async () => {
    // the exact values: a second collector, reporting every exchange on its own, sees the same
    // packets at the same moments (user-space timings would add their own scheduling delays)
    const collector = await startCollector(['--interval', '60s']);
    const exact = await startCollector(['--interval', '60s', '--l7-per-request']);
    try {
      // 50 answers after 50 ms, 40 after 150 ms, 10 after 400 ms, mixed; one path, so one series a side
      const delays = Array.from({ length: 100 }, (_, i) => (i % 10 === 9 ? 400 : i % 10 >= 5 ? 150 : 50));
      const paths = delays.map((ms) => `/app/delay?ms=${ms}`);
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-timed', hosts.serverV4, '80', '10', ...paths]);
      const { pid, latencies } = JSON.parse(client.stdout) as { pid: number; latencies: number[] };
      assert.equal(latencies.length, 100);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      assert.equal((await exact.stop('SIGTERM')).code, 0, exact.stderr());
      const points = collector.points('httpflow').filter((p) => p.fields.path === '/app/delay');
      for (const side of [String(pid), String(worker)]) {
        const series = points.filter((p) => p.tags.pid === side);
        assert.deepEqual([series.length, series[0]?.fields.count], [1, 100], show(points));
        const each = exact.points('httpflow').filter((p) => p.tags.pid === side && p.fields.path === '/app/delay');
        const sorted = each.map((p) => p.fields.latency as number).sort((a, b) => a - b);
        assert.equal(sorted.length, 100);
        const rank = (q: number) => sorted[Math.ceil(q * sorted.length) - 1];
        const want = { latency_p50: rank(0.5), latency_p90: rank(0.9), latency_p99: rank(0.99), latency_max: sorted[99] };
        assert.ok(want.latency_p50 >= 50e6 && want.latency_p99 >= 400e6, `the delays show: ${show(want)}`);
        for (const [field, w] of Object.entries(want)) {
          const got = series[0].fields[field] as number;
          assert.ok(Math.abs(got - w) <= 0.05 * w, `pid ${side} ${field}: ${got} ns, exactly ${w} ns`);
        }
        const mean = sorted.reduce((a, x) => a + x, 0) / 100;
        // each collector reads the clock itself, microseconds apart
        assert.ok(Math.abs((series[0].fields.latency as number) - mean) <= 0.001 * mean, `the mean: ${series[0].fields.latency} vs ${mean}`);
      }
    } finally {
      await collector.stop('SIGKILL');
      await exact.stop('SIGKILL');
    }
  });

  test('series: past --l7-max-series, exchanges count in one overflow series per endpoint pair', async () => {
    const collector = await startCollector(['--interval', '60s', '--l7-max-series', '3']);
    try {
      const base = `http://${hosts.serverV4}`;
      const urls = [1, 2, 3, 4, 5, 6].map((i) => `${base}/o/${i}`);
      const r = await curl([], ...urls);
      assert.equal(r.stdout, '404\n'.repeat(6));
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      for (const pid of [r.pid, worker]) {
        const side = points.filter((p) => p.tags.pid === String(pid));
        assert.equal(side.reduce((a, p) => a + (p.fields.count as number), 0), 6, `every exchange counted: ${show(side)}`);
        const overflow = side.filter((p) => p.fields.path === '*');
        assert.equal(overflow.length, 1, show(side));
        assert.deepEqual([overflow[0].fields.method, overflow[0].fields.status_code], ['*', 0]);
      }
      const named = points.filter((p) => p.fields.path !== '*');
      assert.equal(named.length, 3, `the table held 3 series: ${show(named)}`);
      assert.match(collector.stderr(), /httpflow: \d+ points; .*exchanges=12 overflow=9 series_lost=0 /);
      assert.match(collector.stderr(), /WARN httpflow: overflow \+9 /);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  for (const perRequest of [false, true]) {
    test(`${perRequest ? 'per request' : 'series'}: a 100 Continue is not the answer; the final status is`, async () => {
      const collector = await startCollector(['--interval', '60s', ...(perRequest ? ['--l7-per-request'] : [])]);
      try {
        const body = path.join(dir, 'body');
        fs.writeFileSync(body, 'x'.repeat(4000));
        const r = await curl(['-H', 'Expect: 100-continue', '--data-binary', `@${body}`], `http://${hosts.serverV4}/app/upload`);
        assert.equal(r.stdout, '200\n');
        await sleep(500);
        assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
        const points = collector.points('httpflow').filter((p) => p.fields.path === '/app/upload');
        assert.deepEqual(points.map((p) => `${p.tags.direction} ${p.fields.method} ${p.fields.status_code} ${p.fields.count ?? 1}`).sort(), ['incoming POST 200 1', 'outgoing POST 200 1']);
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }

  test('series: the kernel reads request lines of every length and shape, and counts nothing that is not one', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const long = `/${'x'.repeat(1100)}`; // a path longer than the 1,024 bytes kept
      const cut = `/${'y'.repeat(1200)}`; // a request line longer than the kernel's capture
      const lines = [
        'GET /a HTTP/1.1',
        'GET /abcdefg HTTP/1.1', // the path fills a word exactly
        'GET /abcdefgh HTTP/1.1',
        'GET /abcdefghijklmno HTTP/1.1',
        'GET /abcdefg?x=1 HTTP/1.1', // query and fragment are not the path
        'GET /abcdefg#frag HTTP/1.1',
        'DELETE /é/中 HTTP/1.1',
        `GET ${long} HTTP/1.1`,
        `GET ${cut} HTTP/1.1`,
        'HEAD /h HTTP/1.0',
        'GET /bad\x01x HTTP/1.1', // a control character: not a request target
        'GET /nine', // HTTP/0.9
      ];
      const r = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-raw', hosts.serverV4, '80', ...lines]);
      const { pid, statuses } = JSON.parse(r.stdout) as { pid: number; statuses: number[] };
      assert.equal(statuses.length, lines.length);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      const status = (line: number) => statuses[line];
      const want = [
        `GET /a 1.1 ${status(0)} 1`,
        `GET /abcdefg 1.1 ${status(1)} 3`,
        `GET /abcdefgh 1.1 ${status(2)} 1`,
        `GET /abcdefghijklmno 1.1 ${status(3)} 1`,
        `DELETE /é/中 1.1 ${status(6)} 1`,
        `GET ${long.slice(0, 1024)} 1.1 ${status(7)} 1`,
        `GET ${cut.slice(0, 1024)} 1.1 ${status(8)} 1`,
        `HEAD /h 1.0 ${status(9)} 1`,
      ].sort();
      for (const side of [pid, worker]) {
        const got = points.filter((p) => p.tags.pid === String(side)).map((p) => `${p.fields.method} ${p.fields.path} ${p.fields.http_version} ${p.fields.status_code} ${p.fields.count}`);
        assert.deepEqual(got.sort(), want, `pid ${side}`);
      }
      // ten request lines on each side; the two that are not are counted as such
      assert.match(collector.stderr(), /httpflow: \d+ points; .*exchanges=20 .*not_http=4 /);
    } finally {
      await collector.stop('SIGKILL');
    }
  });
});
