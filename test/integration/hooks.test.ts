// Every plugin on every set of byte hooks this kernel offers (SPEC §2 --hooks):
// the same traffic gives the same exact numbers whichever set counts the bytes,
// a set the kernel lacks is refused in one line with status 1, and `auto`
// takes the cheapest one there is.
//
// EXPECT_BYTE_HOOKS (set by the kernel matrix, e.g. "fentry,kprobe") names the
// sets this kernel must offer; without it the test learns them by trying.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BYTE_HOOKS, ByteHooks } from '../../src/plugins/netflow/hooks';
import { binPath, killGroup, run, runToExit, RunningCollector, sleep, spawnGroup, startCollector, startDaemon } from '../helpers/collector';
import { startInteractiveBash } from '../helpers/interactive-bash';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

const expected = process.env.EXPECT_BYTE_HOOKS?.split(',').filter(Boolean) as ByteHooks[] | undefined;

const TCP_PORT = 7000;
const HTTP_PORT = 9000;
const REQUEST = 123457;
const RESPONSE = 7654;

describe('hooks: every plugin on every byte-hook set the kernel offers', { skip }, () => {
  // all traffic stays on the loopback of a namespace of the test's own
  let hosts: HostPair;
  let ns: string;
  const daemons: ChildProcess[] = [];
  const offered: ByteHooks[] = [];

  before(async () => {
    hosts = createHostPair(8);
    ns = hosts.client;
    daemons.push(await startDaemon('ip', ['netns', 'exec', ns, process.execPath, peer, 'server', '127.0.0.1', String(TCP_PORT), String(RESPONSE)], 'listening'));
    daemons.push(await startDaemon('ip', ['netns', 'exec', ns, process.execPath, peer, 'http-app', '127.0.0.1', String(HTTP_PORT)], 'listening'));
    daemons.push(
      spawnGroup(
        'ip',
        [
          'netns', 'exec', ns, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
          '--listen-address=127.0.0.1', '--pid-file=', '--user=root', '--cache-size=0', '--log-facility=/dev/null',
          '--host-record=hooks.example.test,198.51.100.80', '--address=/nx.example.test/',
        ],
        { stdio: 'ignore' },
      ),
    );
    for (let i = 0; (await dig('ready.example.test')) === 'no answer'; i++) {
      if (i === 50) throw new Error('dnsmasq does not answer');
      await sleep(100);
    }
  });
  after(() => {
    for (const d of daemons) killGroup(d);
    hosts?.destroy();
  });

  async function dig(name: string): Promise<string> {
    try {
      const { stdout } = await run('ip', ['netns', 'exec', ns, 'dig', '+tries=1', '+timeout=2', '@127.0.0.1', name]);
      return /status: (\w+)/.exec(stdout)?.[1] ?? 'none';
    } catch {
      return 'no answer';
    }
  }

  /** The traffic every set must report the same: TCP, HTTP, DNS and a bash line. */
  async function traffic(collector: RunningCollector, hooks: string) {
    const tcp = await run('ip', ['netns', 'exec', ns, process.execPath, peer, 'client', '127.0.0.1', String(TCP_PORT), '1', String(REQUEST)]);
    assert.deepEqual(JSON.parse(tcp.stdout), { pid: tcp.pid, sent: REQUEST, received: RESPONSE });
    const http = await run('ip', ['netns', 'exec', ns, process.execPath, peer, 'http-keepalive', '127.0.0.1', String(HTTP_PORT), '3', `/hooks/${hooks}`]);
    assert.deepEqual([await dig('hooks.example.test'), await dig('nx.example.test')], ['NOERROR', 'NXDOMAIN']);
    const sh = await startInteractiveBash();
    await sh.type(`echo typed-with-${hooks}`);
    await sh.exit();
    await sleep(700); // last ACKs, drain timers
    assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
    return { tcpPid: tcp.pid, httpPid: http.pid, bashPid: sh.bashPid };
  }

  for (const hooks of BYTE_HOOKS) {
    test(`--hooks ${hooks}: exact bytes, an HTTP exchange, DNS rcodes and a bash line, or one clear refusal`, async () => {
      const args = ['--enabled', 'ebpf-net,ebpf-bash', '--hooks', hooks, '--include-loopback', '--interval', '60s'];
      let collector: RunningCollector;
      try {
        collector = await startCollector(args);
      } catch {
        // refused: the same start-up again, to read how
        const { code, stderr } = await runToExit(binPath, args);
        assert.equal(code, 1, stderr);
        const errors = stderr.split('\n').filter((l) => / ERROR /.test(l));
        assert.equal(errors.length, 1, stderr);
        assert.match(errors[0], new RegExp(`--hooks ${hooks}: `));
        assert.ok(!expected || !expected.includes(hooks), `this kernel must offer ${hooks}: ${stderr}`);
        return;
      }
      offered.push(hooks);
      try {
        assert.ok(!expected || expected.includes(hooks), `${hooks} is not expected on this kernel`);
        const { tcpPid, httpPid, bashPid } = await traffic(collector, hooks);
        assert.match(collector.stderr(), new RegExp(`hooks: bytes=${hooks}, `));

        const netflow = collector.points('netflow');
        const one = (pred: (p: ParsedPoint) => boolean, what: string) => {
          const found = netflow.filter(pred);
          assert.equal(found.length, 1, `${what}: ${show(found)}`);
          return found[0].fields;
        };
        const client = one((p) => p.tags.pid === String(tcpPid), 'the client');
        assert.deepEqual([client.bytes_written, client.bytes_read, client.tcp_established, client.tcp_closed], [REQUEST, RESPONSE, 1, 1]);
        const server = one((p) => p.tags.direction === 'incoming' && p.tags.src_port === String(TCP_PORT), 'the server');
        assert.deepEqual([server.bytes_read, server.bytes_written, server.tcp_established, server.tcp_closed], [REQUEST, RESPONSE, 1, 1]);

        // `ip netns exec` runs the server in its own process: its pid is the app's; one series a side
        const exchanges = collector
          .points('httpflow')
          .filter((p) => p.fields.path === `/hooks/${hooks}`)
          .map((p) => `${p.tags.direction} ${p.tags.pid} ${p.fields.method} ${p.fields.status_code} x${p.fields.count}`);
        assert.deepEqual(exchanges.sort(), [`incoming ${daemons[1].pid} GET 200 x3`, `outgoing ${httpPid} GET 200 x3`]);

        const dns = collector
          .points('dnsflow')
          .filter((p) => p.tags.dst_ip === '127.0.0.1')
          .map((p) => `${p.tags.domain} ${p.fields.rcode} ${p.fields.timeout}`);
        assert.deepEqual(dns.filter((d) => !d.startsWith('ready.')).sort(), ['hooks.example.test 0 false', 'nx.example.test 3 false']);

        const lines = collector.points('bash').filter((p) => p.fields.pid === String(bashPid)).map((p) => p.fields.cmd);
        assert.deepEqual(lines, [`echo typed-with-${hooks}`, 'exit']);
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }

  test('auto takes the cheapest set the kernel offers', async () => {
    assert.ok(offered.length, 'the kernel offers some set');
    if (expected) assert.deepEqual(offered, expected);
    const collector = await startCollector(['--interval', '60s']);
    try {
      assert.match(collector.stderr(), new RegExp(`hooks: bytes=${offered[0]}, `));
    } finally {
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
    }
  });
});
