// dnsflow against a real DNS server (dnsmasq) on a test host, with dig as the
// client: exact rcodes, response times, a timeout, TCP, IPv6, and the answer
// feeding netflow's dst_domain.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, run, sleep, spawnGroup, startCollector, startDaemon } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

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
    const dnsmasq = spawnGroup(
      'ip',
      [
        'netns', 'exec', hosts.server, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
        `--listen-address=${hosts.serverV4}`, `--listen-address=${hosts.serverV6}`, '--pid-file=', '--user=root', '--cache-size=0',
        `--host-record=www.example.test,${hosts.serverV4},${hosts.serverV6}`, // --cname needs a host record
        '--cname=alias.example.test,www.example.test', '--address=/nx.example.test/',
        '--server=/fail.example.test/127.0.0.1#5399', '--log-facility=/dev/null',
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

  test('rcodes, response times, TCP, IPv6, a timeout, and dst_domain for the next connection', async () => {
    const collector = await startCollector(['--interval', '60s']);
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
      await sleep(6500); // past the 6 s timeout
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
        assert.ok(ms >= t0 - 5 && ms <= Date.now(), 'timestamp: when the query was seen');
      };

      const a = one(byDomain('alias.example.test'), 'alias');
      expectAnswered(a, 0);
      assert.deepEqual(
        [a.tags.transport, a.tags.family, a.tags.src_ip, a.tags.dst_ip, a.tags.dst_port, a.tags.qtype, a.tags.source],
        ['udp', 'IPv4', hosts.clientV4, hosts.serverV4, '53', 'A', 'dnsflow'],
      );
      assert.match(a.tags.src_port, /^\d+$/);
      expectAnswered(one(byDomain('www.example.test', { transport: 'udp', family: 'IPv4' }), 'www udp'), 0);
      expectAnswered(one(byDomain('nx.example.test'), 'nx'), 3);
      expectAnswered(one(byDomain('elsewhere.test'), 'refused'), 5);
      expectAnswered(one(byDomain('x.fail.example.test'), 'servfail'), 2);
      expectAnswered(one(byDomain('www.example.test', { transport: 'tcp' }), 'tcp'), 0);
      const v6 = one(byDomain('www.example.test', { family: 'IPv6' }), 'ipv6');
      expectAnswered(v6, 0);
      assert.deepEqual([v6.tags.qtype, v6.tags.src_ip, v6.tags.dst_ip], ['AAAA', hosts.clientV6, hosts.serverV6]);

      const never = one(byDomain('never.example.test'), 'timeout');
      assert.deepEqual(never.fields, { timeout: true });
      assert.equal(never.tags.dst_ip, silent.serverV4);

      const flow = collector.points('netflow').filter((p) => p.tags.pid === String(conn.pid));
      assert.equal(flow.length, 1, show(flow));
      assert.equal(flow[0].tags.dst_domain, 'www.example.test');
      // dig sends from a worker thread named isc-net-0000: process_name is the process's
      const digFlows = collector.points('netflow').filter((p) => p.tags.dst_port === '53' && p.tags.direction === 'outgoing');
      assert.ok(digFlows.length > 0 && digFlows.every((p) => p.tags.process_name === 'dig'), show(digFlows.map((p) => p.tags)));
    } finally {
      await collector.stop('SIGKILL');
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
