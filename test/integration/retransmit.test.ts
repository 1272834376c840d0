// httpflow under packet loss: two test hosts whose nftables drop 5% of the
// TCP segments each one receives, so both ends retransmit, and segments come
// twice (the sender's copy and its retransmission) or out of order. Requests
// and responses are matched by their place in the byte stream: every
// (path, status) pair is right on both sides, in both modes, and netflow
// counts the retransmits. And requests that come before their connection is
// accepted (the handshake's last ACK lost) still meet their responses, and
// requests whose connection ends unanswered are counted, not kept.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, pluginStats, run, sleep, startCollector, startDaemon } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

/** Paths whose status the server takes from the path. */
const PATHS = ['/status/200/a', '/status/404/b', '/status/503/c', '/status/302/d'];
const CONNECTIONS = 20;
const REPEAT = 500; // 2,000 requests

/** Retransmissions after 10 ms, not the default 200: a test of lost segments takes seconds, not minutes. */
function fastRetransmits(ns: string): void {
  const route = execFileSync('ip', ['-n', ns, '-4', 'route', 'show', 'proto', 'kernel'], { encoding: 'utf8' }).trim().split('\n')[0];
  execFileSync('ip', ['-n', ns, 'route', 'change', ...route.split(/\s+/), 'rto_min', '10ms']);
}

/** Exchanges one side reported, by "path status" (a series counts its exchanges, a point per request one). */
function exchangesOf(points: ParsedPoint[], direction: string, pid: number | undefined): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const p of points.filter((p) => p.tags.direction === direction && p.tags.pid === String(pid))) {
    const key = `${p.fields.path} ${p.fields.status_code}`;
    counts[key] = (counts[key] ?? 0) + ((p.fields.count as number | undefined) ?? 1);
  }
  return counts;
}

describe('httpflow under packet loss', { skip }, () => {
  let hosts: HostPair;
  let server: ChildProcess;

  before(async () => {
    hosts = createHostPair(10);
    for (const ns of [hosts.client, hosts.server]) {
      // 5% of what each host receives is dropped before TCP sees it: the sender retransmits
      execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {
        input: 'table inet loss {\n chain in {\n  type filter hook input priority 0;\n  meta l4proto tcp numgen random mod 100 < 5 drop\n }\n}\n',
      });
      fastRetransmits(ns);
    }
    server = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'http-app', hosts.serverV4, '8080'], 'listening');
  });
  after(() => {
    killGroup(server);
    hosts?.destroy();
  });

  /** 2,000 requests over 20 kept-alive connections; the client's own count per "path status". */
  async function requests(): Promise<{ pid: number; counts: Record<string, number> }> {
    const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-many', hosts.serverV4, '8080', String(CONNECTIONS), String(REPEAT), ...PATHS]);
    const { counts } = JSON.parse(client.stdout) as { counts: Record<string, number> };
    const expected = Object.fromEntries(PATHS.map((p) => [`${p} ${p.split('/')[2]}`, REPEAT]));
    assert.deepEqual(counts, expected, 'the client got each status it asked for');
    return { pid: client.pid, counts };
  }

  function retransmitsSeen(points: ParsedPoint[]): number {
    return points.filter((p) => p.tags.dst_port === '8080' || p.tags.src_port === '8080').reduce((a, p) => a + (p.fields.retransmits as number), 0);
  }

  for (const perRequest of [false, true]) {
    const mode = perRequest ? 'per request: every exchange' : 'summed in the kernel: exact counts';
    test(`${mode} with its own path and status on both sides`, async () => {
      const collector = await startCollector(['--interval', '60s', ...(perRequest ? ['--l7-per-request'] : [])]);
      try {
        const client = await requests();
        await sleep(500);
        assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
        const stats = pluginStats(collector.stderr(), 'httpflow');
        for (const [direction, pid] of [['outgoing', client.pid], ['incoming', server.pid]] as const) {
          assert.deepEqual(exchangesOf(collector.points('httpflow'), direction, pid), client.counts, `${direction}: ${show(stats)}`);
        }
        assert.ok(stats.seen_before > 0, `segments seen twice were skipped: ${show(stats)}`);
        assert.equal(perRequest ? stats.unmatched_responses : stats.unmatched, 0, show(stats));
        assert.ok(retransmitsSeen(collector.points('netflow')) > 0, 'netflow counted retransmits');
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }
});

describe('httpflow: a request that comes before its connection is accepted', { skip }, () => {
  let hosts: HostPair;
  let server: ChildProcess;

  before(async () => {
    hosts = createHostPair(11);
    // the server never gets a bare ACK (IPv4 + TCP with timestamps: 52 bytes), so
    // each handshake ends with the first request, which the kernel hands to the listener
    execFileSync('ip', ['netns', 'exec', hosts.server, 'nft', '-f', '-'], {
      input: 'table inet early {\n chain in {\n  type filter hook input priority 0;\n  tcp flags == ack ip length 52 drop\n }\n}\n',
    });
    fastRetransmits(hosts.server);
    server = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'http-app', hosts.serverV4, '8080'], 'listening');
  });
  after(() => {
    killGroup(server);
    hosts?.destroy();
  });

  for (const mode of ['summed in the kernel', 'per request']) {
    test(`${mode}: the first request of each connection is answered and counted on both sides`, async () => {
      const collector = await startCollector(['--interval', '60s', ...(mode === 'per request' ? ['--l7-per-request'] : [])]);
      try {
        const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-many', hosts.serverV4, '8080', '3', '2', ...PATHS]);
        const { counts } = JSON.parse(client.stdout) as { counts: Record<string, number> };
        assert.deepEqual(counts, Object.fromEntries(PATHS.map((p) => [`${p} ${p.split('/')[2]}`, 2])));
        await sleep(500);
        assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
        const stats = pluginStats(collector.stderr(), 'httpflow');
        assert.equal(stats.early_requests, 3, `one per connection: ${show(stats)}`);
        for (const [direction, pid] of [['outgoing', client.pid], ['incoming', server.pid]] as const) {
          assert.deepEqual(exchangesOf(collector.points('httpflow'), direction, pid), counts, `${direction}: ${show(stats)}`);
        }
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }
});

describe('httpflow: requests whose connection ends before they are answered', { skip }, () => {
  let hosts: HostPair;
  let server: ChildProcess;

  before(async () => {
    hosts = createHostPair(12);
    // reads to the client's half-close, then closes without a word
    server = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'server', hosts.serverV4, '8080', '0'], 'listening');
  });
  after(() => {
    killGroup(server);
    hosts?.destroy();
  });

  const REQUESTS = 3;
  for (const mode of ['summed in the kernel', 'per request']) {
    test(`${mode}: counted as unanswered on both sides, nothing left waiting`, async () => {
      const perRequest = mode === 'per request';
      const collector = await startCollector(['--interval', '60s', ...(perRequest ? ['--l7-per-request'] : [])]);
      try {
        await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'http-unanswered', hosts.serverV4, '8080', String(REQUESTS)]);
        await sleep(500);
        assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
        const stats = pluginStats(collector.stderr(), 'httpflow');
        assert.equal(collector.points('httpflow').length, 0);
        if (perRequest) {
          // pipelined: each side's requests all went to user space, which lets them go at the close
          assert.deepEqual([stats.unanswered, stats.closed_unanswered, stats.pending], [0, 2 * REQUESTS, 0], show(stats));
        } else {
          assert.equal(stats.unanswered, 2 * REQUESTS, show(stats));
        }
        assert.match(collector.stderr(), perRequest ? /WARN httpflow: closed_unanswered \+6 / : /WARN httpflow: unanswered \+6 /);
      } finally {
        await collector.stop('SIGKILL');
      }
    });
  }
});
