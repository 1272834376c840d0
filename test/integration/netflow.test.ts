// netflow from real kernel events: exact bytes, counts, direction and pid for
// traffic between two test hosts (network namespaces) that this test makes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as path from 'node:path';
import { ChildProcess } from 'node:child_process';
import { createHostPair, HostPair, nstat } from '../helpers/netns';
import { killGroup, nodeComm, pluginStats, run, sleep, startCollector, startDaemon, until } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');

/** For assertion messages: points carry bigint timestamps. */
const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

/** Sums the fields of every point (across intervals) that matches `tags`. */
function total(points: ParsedPoint[], tags: Record<string, string>) {
  const matching = points.filter((p) => Object.entries(tags).every(([k, v]) => p.tags[k] === v));
  const sum = (f: string) => matching.reduce((a, p) => a + (p.fields[f] as number), 0);
  return {
    points: matching,
    bytesRead: sum('bytes_read'),
    bytesWritten: sum('bytes_written'),
    established: sum('tcp_established'),
    closed: sum('tcp_closed'),
  };
}

describe('netflow over TCP between test hosts', { skip }, () => {
  let hosts: HostPair;
  let server: ChildProcess | undefined;
  let server6: ChildProcess | undefined;
  const PORT = 8080;
  const PORT6 = 8086;
  const CONNS = 20;
  const REQUEST = 3000;
  const RESPONSE = 70000; // several segments, several reads

  before(async () => {
    hosts = createHostPair(1);
    server = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'server', hosts.serverV4, String(PORT), String(RESPONSE)], 'listening');
    server6 = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'server', hosts.serverV6, String(PORT6), String(RESPONSE)], 'listening');
  });
  after(() => {
    killGroup(server);
    killGroup(server6);
    hosts?.destroy();
  });

  test('both ends of N short connections: merged points with exact totals', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const resentBefore = nstat(hosts.client, 'TcpRetransSegs');
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'client', hosts.serverV4, String(PORT), String(CONNS), String(REQUEST)]);
      const summary = JSON.parse(client.stdout);
      assert.equal(summary.received, CONNS * RESPONSE, 'the peer itself got every byte');
      await sleep(300); // let the server's last ACKs land
      const { code } = await collector.stop('SIGTERM');
      assert.equal(code, 0, collector.stderr());

      const netflow = collector.points('netflow');
      const out = total(netflow, { pid: String(client.pid), direction: 'outgoing' });
      assert.equal(out.points.length, 1, `one merged outgoing point: ${show(out.points)}`);
      assert.deepEqual(
        { ...out.points[0].tags, host: undefined, service: undefined },
        {
          host: undefined,
          service: undefined,
          source: 'netflow',
          direction: 'outgoing',
          transport: 'tcp',
          family: 'IPv4',
          pid: String(client.pid),
          process_name: nodeComm,
          src_ip: hosts.clientV4,
          src_port: '*',
          src_ip_type: 'other',
          dst_ip: hosts.serverV4,
          dst_port: String(PORT),
          dst_ip_type: 'other',
        },
      );
      assert.equal(out.bytesWritten, CONNS * REQUEST);
      assert.equal(out.bytesRead, CONNS * RESPONSE);
      assert.equal(out.established, CONNS);
      assert.equal(out.closed, CONNS);
      // A slow machine (an emulated kernel of the matrix) may make the kernel send
      // again even here: the flow's count is bounded by what the client's namespace,
      // this test's own, counted meanwhile, and is 0 when that is
      const resent = nstat(hosts.client, 'TcpRetransSegs') - resentBefore;
      assert.ok((out.points[0].fields.retransmits as number) <= resent, `retransmits ${out.points[0].fields.retransmits}, the client namespace's TcpRetransSegs grew by ${resent}`);
      assert.ok((out.points[0].fields.rtt as number) > 0, 'rtt measured');

      const inc = total(netflow, { pid: String(server!.pid), direction: 'incoming' });
      assert.equal(inc.points.length, 1, `one merged incoming point: ${show(inc.points)}`);
      assert.equal(inc.points[0].tags.src_ip, hosts.serverV4);
      assert.equal(inc.points[0].tags.src_port, String(PORT));
      assert.equal(inc.points[0].tags.dst_ip, hosts.clientV4);
      assert.equal(inc.points[0].tags.dst_port, '*');
      assert.equal(inc.bytesRead, CONNS * REQUEST);
      assert.equal(inc.bytesWritten, CONNS * RESPONSE);
      assert.equal(inc.established, CONNS);
      assert.equal(inc.closed, CONNS);
      // made and closed before the first read: summed in the kernel, not one event each
      assert.match(collector.stderr(), new RegExp(`netflow: \\d+ points; .*close_events=0 .*closed_summed=${2 * CONNS} `));
      // every close counted itself out of close_in_progress: each read found the CPUs quiet
      assert.equal(pluginStats(collector.stderr(), 'netflow').close_reads_busy, 0);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('IPv6: the same exact totals, family IPv6', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'client', hosts.serverV6, String(PORT6), '5', String(REQUEST)]);
      await sleep(300);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const netflow = collector.points('netflow');
      const out = total(netflow, { pid: String(client.pid), direction: 'outgoing' });
      assert.equal(out.points.length, 1, show(out.points));
      assert.equal(out.points[0].tags.family, 'IPv6');
      assert.equal(out.points[0].tags.src_ip, hosts.clientV6);
      assert.equal(out.points[0].tags.dst_ip, hosts.serverV6);
      assert.equal(out.points[0].tags.dst_port, String(PORT6));
      assert.equal(out.points[0].tags.src_port, '*');
      assert.equal(out.bytesWritten, 5 * REQUEST);
      assert.equal(out.bytesRead, 5 * RESPONSE);
      assert.equal(out.established, 5);
      assert.equal(out.closed, 5);
      const inc = total(netflow, { pid: String(server6!.pid), direction: 'incoming' });
      assert.equal(inc.points.length, 1);
      assert.equal(inc.points[0].tags.family, 'IPv6');
      assert.equal(inc.bytesRead, 5 * REQUEST);
      assert.equal(inc.bytesWritten, 5 * RESPONSE);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('points appear within one interval while the collector runs', async () => {
    const collector = await startCollector(['--interval', '1s']);
    try {
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'client', hosts.serverV4, String(PORT), '3', String(REQUEST)]);
      const line = await collector.waitForLine((l) => l.startsWith('netflow,') && l.includes(`pid=${client.pid},`), 3000);
      assert.match(line, / \d{19}$/, 'nanosecond timestamp');
      // the process may have been reported over two intervals: sum them once it is all in (the
      // next interval's report, which a slow machine may print late: waited for up to 10 s)
      const outgoing = () => total(collector.points('netflow'), { pid: String(client.pid), direction: 'outgoing' });
      await until(() => outgoing().closed >= 3, 10_000);
      await sleep(1100); // one more interval: nothing more may come
      const out = outgoing();
      assert.equal(out.bytesWritten, 3 * REQUEST);
      assert.equal(out.bytesRead, 3 * RESPONSE);
      assert.equal(out.established, 3);
      assert.equal(out.closed, 3);
    } finally {
      await collector.stop('SIGKILL');
    }
  });
});

describe('netflow on loopback', { skip }, () => {
  const PORT = 18080;
  let server: ChildProcess | undefined;
  before(async () => {
    server = await startDaemon(process.execPath, [peer, 'server', '127.0.0.1', String(PORT), '1234'], 'listening');
  });
  after(() => killGroup(server));

  for (const include of [false, true]) {
    test(`loopback flows are ${include ? 'reported with' : 'dropped without'} --include-loopback`, async () => {
      const collector = await startCollector(['--interval', '60s', ...(include ? ['--include-loopback'] : [])]);
      try {
        const client = await run(process.execPath, [peer, 'client', '127.0.0.1', String(PORT), '2', '100']);
        await sleep(200);
        assert.equal((await collector.stop('SIGTERM')).code, 0);
        const out = total(collector.points('netflow'), { pid: String(client.pid) });
        if (!include) {
          assert.equal(out.points.length, 0, 'no loopback point');
          return;
        }
        assert.equal(out.points.length, 1);
        assert.equal(out.points[0].tags.src_ip_type, 'loopback');
        assert.equal(out.points[0].tags.dst_port, String(PORT));
        assert.equal(out.bytesWritten, 200);
        assert.equal(out.bytesRead, 2468);
        assert.equal(out.established, 2);
        assert.equal(out.closed, 2);
        const inc = total(collector.points('netflow'), { pid: String(server!.pid) });
        assert.equal(inc.bytesRead, 200);
        assert.equal(inc.bytesWritten, 2468);
        assert.equal(inc.points[0].tags.direction, 'incoming');
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }
});
