// dnsflow against a real DNS server (dnsmasq) on a test host, with dig as the
// client: exact rcodes, response times, a timeout, TCP, IPv6, and the answer
// feeding netflow's dst_domain; by default summed in the kernel per interval
// (exact counts per outcome, response times against a second collector that
// reports every query, overflow series), and with --l7-per-request a point
// per query.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, pluginStats, run, sleep, spawnGroup, startCollector, startDaemon, until } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';
import type { Point } from '../../src/output/point';
import { DEFAULT_MAX_CONNECTIONS } from '../../src/config/config';
import { DnsflowPlugin } from '../../src/plugins/dnsflow/plugin';
import { HttpflowPlugin } from '../../src/plugins/httpflow/plugin';
import { NetflowPlugin } from '../../src/plugins/netflow/plugin';
import { Cgroup2 } from '../../src/runtime';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

describe('dnsflow', { skip }, () => {
  let hosts: HostPair;
  let silent: HostPair; // a host with no DNS server at all
  const daemons: ChildProcess[] = [];

  before(async () => {
    hosts = createHostPair(4);
    silent = createHostPair(6);
    // upstream for fail.example.test, inside the server's namespace: answers SERVFAIL
    daemons.push(await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'dns-servfail', '127.0.0.1', '5399'], 'listening'));
    // upstream for slow.example.test: answers after 40 ms
    daemons.push(await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'dns-servfail', '127.0.0.1', '5398', '40'], 'listening'));
    const dnsmasq = spawnGroup(
      'ip',
      [
        'netns', 'exec', hosts.server, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
        `--listen-address=${hosts.serverV4}`, `--listen-address=${hosts.serverV6}`, '--pid-file=', '--user=root', '--cache-size=0',
        `--host-record=www.example.test,${hosts.serverV4},${hosts.serverV6}`, // --cname needs a host record
        '--cname=alias.example.test,www.example.test', '--address=/nx.example.test/',
        '--server=/fail.example.test/127.0.0.1#5399', '--server=/slow.example.test/127.0.0.1#5398', '--log-facility=/dev/null',
      ],
      { stdio: 'ignore' },
    );
    daemons.push(dnsmasq);
    daemons.push(await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'server', hosts.serverV4, '8080', '100'], 'listening'));
    // until dnsmasq answers on both addresses
    for (const server of [hosts.serverV4, hosts.serverV6]) {
      for (let i = 0; ; i++) {
        try {
          execFileSync('ip', ['netns', 'exec', hosts.client, 'dig', '+tries=1', '+timeout=1', `@${server}`, 'ready.example.test'], { stdio: 'ignore' });
          break;
        } catch (err) {
          if (i === 30) throw new Error(`dnsmasq does not answer on ${server}: ${err}`);
          await sleep(100);
        }
      }
    }
  });
  after(() => {
    for (const d of daemons) killGroup(d);
    hosts?.destroy();
    silent?.destroy();
  });

  /** dig in the client namespace; returns its pid and the status it printed. */
  async function dig(ns: string, ...args: string[]): Promise<string> {
    try {
      const { stdout } = await run('ip', ['netns', 'exec', ns, 'dig', '+tries=1', '+timeout=1', ...args]);
      return /status: (\w+)/.exec(stdout)?.[1] ?? 'none';
    } catch {
      return 'no answer';
    }
  }

  for (const perQuery of [true, false]) {
    const mode = perQuery ? 'per query' : 'series';
    test(`${mode}: rcodes, response times, TCP, IPv6, a timeout, and dst_domain for the next connection`, async () => {
      const collector = await startCollector(['--interval', '60s', ...(perQuery ? ['--l7-per-request'] : [])]);
      try {
        const t0 = Date.now();
        assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, 'alias.example.test'), 'NOERROR');
        assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, 'www.example.test'), 'NOERROR');
        assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, 'nx.example.test'), 'NXDOMAIN');
        assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, 'elsewhere.test'), 'REFUSED');
        assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, 'x.fail.example.test'), 'SERVFAIL');
        assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, '+tcp', 'www.example.test'), 'NOERROR');
        assert.equal(await dig(hosts.client, `@${hosts.serverV6}`, 'AAAA', 'www.example.test'), 'NOERROR');
        assert.equal(await dig(silent.client, `@${silent.serverV4}`, 'never.example.test'), 'no answer');
        // a connection to the address just resolved
        const conn = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'client', hosts.serverV4, '8080', '1', '10']);
        await sleep(7000); // past the 6 s timeout (and the once-a-second walk that finds it)
        const stopped = Date.now();
        assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());

        const dns = collector.points('dnsflow');
        const byDomain = (d: string, extra: Record<string, string> = {}) =>
          dns.filter((p) => p.tags.domain === d && Object.entries(extra).every(([k, v]) => p.tags[k] === v));
        const one = (ps: ParsedPoint[], what: string) => {
          assert.equal(ps.length, 1, `${what}: ${show(ps)}`);
          return ps[0];
        };
        const expectAnswered = (p: ParsedPoint, rcode: number) => {
          assert.equal(p.fields.rcode, rcode);
          assert.equal(p.fields.timeout, false);
          const rt = p.fields.resp_time as number;
          assert.ok(rt > 0 && rt < 1e9, `plausible resp_time ${rt} ns`);
          const ms = Number(p.time / 1_000_000n);
          if (perQuery) {
            assert.ok(ms >= t0 - 5 && ms <= Date.now(), 'timestamp: when the query was seen');
          } else {
            assert.ok(ms >= stopped, 'timestamp: the end of the interval');
            assert.equal(p.fields.count, 1);
            for (const f of ['resp_time_max', 'resp_time_p50', 'resp_time_p99']) assert.ok((p.fields[f] as number) > 0, f);
            // the process comes from netflow's tables: a UDP answer that beats the sender's
            // return from sendmsg (seen under emulation) finds none yet, and goes without
            if (p.tags.pid !== undefined || p.tags.transport === 'tcp') assert.deepEqual([p.tags.process_name, /^\d+$/.test(p.tags.pid)], ['dig', true]);
          }
        };

        const a = one(byDomain('alias.example.test'), 'alias');
        expectAnswered(a, 0);
        assert.deepEqual(
          [a.tags.transport, a.tags.family, a.tags.src_ip, a.tags.dst_ip, a.tags.dst_port, a.tags.qtype, a.tags.source],
          ['udp', 'IPv4', hosts.clientV4, hosts.serverV4, '53', 'A', 'dnsflow'],
        );
        // a point per query keeps the client's port; a series collapses the ephemeral one
        assert.match(a.tags.src_port, perQuery ? /^\d+$/ : /^\*$/);
        expectAnswered(one(byDomain('www.example.test', { transport: 'udp', family: 'IPv4' }), 'www udp'), 0);
        expectAnswered(one(byDomain('nx.example.test'), 'nx'), 3);
        expectAnswered(one(byDomain('elsewhere.test'), 'refused'), 5);
        expectAnswered(one(byDomain('x.fail.example.test'), 'servfail'), 2);
        expectAnswered(one(byDomain('www.example.test', { transport: 'tcp' }), 'tcp'), 0);
        const v6 = one(byDomain('www.example.test', { family: 'IPv6' }), 'ipv6');
        expectAnswered(v6, 0);
        assert.deepEqual([v6.tags.qtype, v6.tags.src_ip, v6.tags.dst_ip], ['AAAA', hosts.clientV6, hosts.serverV6]);

        const never = one(byDomain('never.example.test'), 'timeout');
        assert.deepEqual(never.fields, perQuery ? { timeout: true } : { count: 1, timeout: true });
        assert.equal(never.tags.dst_ip, silent.serverV4);

        const flow = collector.points('netflow').filter((p) => p.tags.pid === String(conn.pid));
        assert.equal(flow.length, 1, show(flow));
        assert.equal(flow[0].tags.dst_domain, 'www.example.test');
        // dig sends from a worker thread named isc-net-0000: process_name is the process's
        // (the test's own servers only: the host's other processes may ask their resolver meanwhile)
        const ours = [hosts.serverV4, hosts.serverV6, silent.serverV4];
        const digFlows = collector.points('netflow').filter((p) => p.tags.dst_port === '53' && p.tags.direction === 'outgoing' && ours.includes(p.tags.dst_ip));
        assert.ok(digFlows.length > 0 && digFlows.every((p) => p.tags.process_name === 'dig'), show(digFlows.map((p) => p.tags)));
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }

  test('series: exact counts per outcome from one process; response times against every query reported apart', async () => {
    // a second collector reports every query on its own: the exact values for the same packets
    const collector = await startCollector(['--interval', '60s']);
    const exact = await startCollector(['--interval', '60s', '--l7-per-request']);
    try {
      // one dig, several queries: one process, a fresh ephemeral port each; slow.example.test is
      // answered after 40 ms, so that the microseconds between the two collectors' clocks do not count
      const r = await run('ip', ['netns', 'exec', hosts.client, 'dig', '+tries=1', '+timeout=2', `@${hosts.serverV4}`,
        'www.example.test', 'www.example.test', 'nx.example.test', 'www.example.test', 'nx.example.test', 'elsewhere.test',
        'a.slow.example.test', 'a.slow.example.test', 'a.slow.example.test']);
      assert.deepEqual(
        r.stdout.match(/status: \w+/g),
        ['NOERROR', 'NOERROR', 'NXDOMAIN', 'NOERROR', 'NXDOMAIN', 'REFUSED', 'SERVFAIL', 'SERVFAIL', 'SERVFAIL'].map((x) => `status: ${x}`),
      );
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      assert.equal((await exact.stop('SIGTERM')).code, 0, exact.stderr());
      const mine = (c: typeof collector) => c.points('dnsflow').filter((p) => p.tags.dst_ip === hosts.serverV4 && p.tags.src_ip === hosts.clientV4);
      const series = mine(collector);
      assert.deepEqual(series.map((p) => `${p.tags.domain} ${p.fields.rcode} ${p.fields.count}`).sort(), [
        'a.slow.example.test 2 3',
        'elsewhere.test 5 1',
        'nx.example.test 3 2',
        'www.example.test 0 3',
      ]);
      // every add counted itself out of dns_series_in_progress: the read found the CPUs quiet
      assert.equal(pluginStats(collector.stderr(), 'dnsflow').series_reads_busy, 0);
      const slow = series.find((p) => p.tags.domain === 'a.slow.example.test')!;
      const each = mine(exact).filter((q) => q.tags.domain === 'a.slow.example.test').map((q) => q.fields.resp_time as number);
      assert.equal(each.length, 3);
      const want = { resp_time: each.reduce((a, x) => a + x, 0) / 3, resp_time_max: Math.max(...each) };
      assert.ok(want.resp_time >= 40e6, `the delay shows: ${want.resp_time}`);
      for (const [field, w] of Object.entries(want)) {
        const got = slow.fields[field] as number;
        assert.ok(Math.abs(got - w) <= 0.05 * w, `${field}: ${got} ns, exactly ${w} ns`);
      }
    } finally {
      await collector.stop('SIGKILL');
      await exact.stop('SIGKILL');
    }
  });

  test('series: past --l7-max-series, answers count in one overflow series per endpoint pair and rcode', async () => {
    const collector = await startCollector(['--interval', '60s', '--l7-max-series', '2']);
    try {
      const names = ['a', 'b', 'c', 'd', 'e'].map((x) => `${x}.nx.example.test`);
      await run('ip', ['netns', 'exec', hosts.client, 'dig', '+tries=1', '+timeout=1', `@${hosts.serverV4}`, ...names]);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('dnsflow').filter((p) => p.tags.dst_ip === hosts.serverV4);
      assert.equal(points.reduce((a, p) => a + (p.fields.count as number), 0), 5, show(points));
      const overflow = points.filter((p) => p.tags.domain === '*');
      assert.deepEqual(overflow.map((p) => `${p.tags.qtype} ${p.fields.rcode} ${p.fields.count}`), ['* 3 3']);
      assert.match(collector.stderr(), /WARN dnsflow: overflow \+3 /);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('one packet program per side: dnsflow alone keeps its own; beside httpflow, httpflow\'s call its programs and each query is reported once', async () => {
    const cgroup2 = new Cgroup2();
    const root = cgroup2.path();
    const points: Point[] = [];
    const sink = { points: (p: Point[]) => void points.push(...p) };
    const dns = new DnsflowPlugin({ includeLoopback: false, cgroup2: () => root, perQuery: true });
    const http = new HttpflowPlugin(new NetflowPlugin({ includeLoopback: false, maxConnections: DEFAULT_MAX_CONNECTIONS }), { includeLoopback: false, cgroup2: () => root, tls: false, dnsPackets: dns });
    /** Names of the packet programs attached to a cgroup (by their links: bpftool's cgroup queries fail on 5.10). */
    const attached = () => {
      const json = (...args: string[]) => JSON.parse(execFileSync('bpftool', [...args, '-j'], { encoding: 'utf8' }));
      const names = new Map((json('prog', 'show') as { id: number; name: string }[]).map((p) => [p.id, p.name]));
      return (json('link', 'show') as { type: string; prog_id: number }[])
        .filter((l) => l.type === 'cgroup')
        .map((l) => names.get(l.prog_id) ?? '')
        .filter((n) => /^(dns|http)_/.test(n))
        .sort();
    };
    /** Points for `name` after one dig of it (per query: reported at its answer). */
    const reported = async (name: string) => {
      const from = points.length;
      assert.equal(await dig(hosts.client, `@${hosts.serverV4}`, name), 'NOERROR');
      const of = () => points.slice(from).filter((p) => p.measurement === 'dnsflow' && p.tags.domain === name);
      // past dnsflow's drain (100 ms), which an emulated kernel may take longer to reach: the
      // first point waited for up to 5 s, then one more drain's time for any that should not come
      await until(() => of().length > 0, 5000);
      await sleep(300);
      return of();
    };
    try {
      dns.start(sink);
      assert.deepEqual(attached(), ['dns_egress', 'dns_ingress']);
      const alone = await reported('www.example.test');
      assert.deepEqual(alone.map((p) => [p.tags.qtype, p.fields.rcode]), [['A', 0]], show(alone));

      http.start(sink);
      assert.deepEqual(attached(), ['http_egress', 'http_ingress']);
      for (const name of ['www.example.test', 'alias.example.test']) {
        const called = await reported(name);
        assert.deepEqual(called.map((p) => [p.tags.qtype, p.fields.rcode]), [['A', 0]], show(called));
      }
    } finally {
      http.stop();
      dns.stop();
      cgroup2.release();
    }
  });

  test('loopback DNS servers are dropped unless --include-loopback', async () => {
    // dnsmasq on the server's own loopback, queried from inside that namespace
    const lo = spawnGroup('ip', ['netns', 'exec', hosts.server, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', '--except-interface=veth*', '--pid-file=', '--user=root', '--address=/lo.example.test/198.51.100.99', '--log-facility=/dev/null', '--port=53'], { stdio: 'ignore' });
    daemons.push(lo);
    await sleep(300);
    for (const include of [false, true]) {
      const collector = await startCollector(['--interval', '60s', ...(include ? ['--include-loopback'] : [])]);
      try {
        assert.equal(await dig(hosts.server, '@127.0.0.1', 'lo.example.test'), 'NOERROR');
        await sleep(300);
        assert.equal((await collector.stop('SIGTERM')).code, 0);
        const seen = collector.points('dnsflow').filter((p) => p.tags.domain === 'lo.example.test');
        assert.equal(seen.length, include ? 1 : 0, show(seen));
        if (include) assert.equal(seen[0].tags.dst_ip, '127.0.0.1');
      } finally {
        await collector.stop('SIGKILL');
      }
    }
  });
});
