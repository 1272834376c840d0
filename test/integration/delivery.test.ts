// Delivery to DataKit (SPEC §3) with the real collector and real traffic; only
// DataKit is a stand-in, which can be away (connections refused), refuse a batch,
// and records every line it takes. Each HTTP request has a path of its own
// (PREFIX/<connection>/<n>) and gives two httpflow points (--l7-per-request: the
// client's and the server's), so every point is known and "once, in order" can be
// checked line by line: across an outage of more than 200,000 points with a SIGTERM
// and a SIGKILL in it, past a refused batch, and past the bound of the buffer dir.
//
// The counts are exact whatever else runs on the machine: the collector runs in a
// mount namespace where the cgroup v2 root is a cgroup of this test's own, which holds
// the test's peers, so its socket programs (httpflow, dnsflow) see no one else; and
// netflow reports only at exit (--interval 1h).
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, run, RunningCollector, sleep, startCollector, startDaemon } from '../helpers/collector';
import { FakeDataKit, startFakeDataKit } from '../helpers/fake-datakit';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const HTTP_PORT = '8080';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The output's counters, read from /metrics. */
async function outputStats(port: number): Promise<Record<'sent' | 'failed' | 'dropped_full' | 'rejected' | 'corrupt' | 'buffered', number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const sample = (series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    assert.ok(line, `${series} is exposed`);
    return Number(line.split(' ')[1]);
  };
  const points = (result: string) => sample(`datakit_ebpf_output_points_total{result="${result}"}`);
  return {
    sent: points('sent'),
    dropped_full: points('dropped_full'),
    rejected: points('rejected'),
    failed: sample('datakit_ebpf_output_posts_failed_total'),
    corrupt: sample('datakit_ebpf_output_buffer_corrupt_total'),
    buffered: sample('datakit_ebpf_output_buffered_points'),
  };
}

async function until<T>(get: () => Promise<T> | T, ok: (v: T) => boolean, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}; last: ${JSON.stringify(v)}`);
    await sleep(100);
  }
}

/**
 * Points in whole records of the buffer dir's segment files (the layout in
 * src/output/spool.ts), read by the test itself: what a SIGKILL cannot take.
 */
function pointsOnDisk(dir: string): number {
  const segDir = path.join(dir, 'network');
  if (!fs.existsSync(segDir)) return 0;
  let points = 0;
  for (const f of fs.readdirSync(segDir).filter((n) => n.endsWith('.seg'))) {
    const buf = fs.readFileSync(path.join(segDir, f));
    for (let pos = 8; pos + 24 <= buf.length; ) {
      const end = pos + 24 + buf.readUInt32LE(pos + 4);
      if (end > buf.length) break;
      points += buf.readUInt32LE(pos + 8);
      pos = end;
    }
  }
  return points;
}

interface Phase {
  prefix: string;
  conns: number;
  requests: number;
}

interface Seen {
  direction: string;
  phase: number;
  conn: number;
  n: number;
}

const HTTPFLOW = /^httpflow,.*?\bdirection=(incoming|outgoing)\b.*[ ,]path="([^"]*)"/;

/** Our points among `lines`, in order: which phase, connection and request each is. */
function ours(lines: string[], phases: Phase[]): Seen[] {
  const out: Seen[] = [];
  for (const line of lines) {
    const m = HTTPFLOW.exec(line);
    if (!m) continue;
    const [, direction, p] = m;
    const [, prefix, conn, n] = /^(\/\w+)\/(\d+)\/(\d+)$/.exec(p) ?? [];
    const phase = phases.findIndex((ph) => ph.prefix === prefix);
    if (phase >= 0) out.push({ direction, phase, conn: Number(conn), n: Number(n) });
  }
  return out;
}

/**
 * Every point of `phases` but those `missing` arrived exactly once, phases in
 * order, and each connection's requests in order on each side.
 */
function assertOnceInOrder(seen: Seen[], phases: Phase[], missing: (s: Omit<Seen, 'direction'>) => boolean = () => false): void {
  for (let i = 1; i < seen.length; i++) {
    if (seen[i].phase < seen[i - 1].phase) assert.fail(`point ${i} (phase ${phases[seen[i].phase].prefix}) after phase ${phases[seen[i - 1].phase].prefix}`);
  }
  for (const direction of ['outgoing', 'incoming']) {
    phases.forEach((ph, phase) => {
      for (let conn = 0; conn < ph.conns; conn++) {
        const got = seen.filter((s) => s.direction === direction && s.phase === phase && s.conn === conn).map((s) => s.n);
        const want = Array.from({ length: ph.requests }, (_, n) => n).filter((n) => !missing({ phase, conn, n }));
        if (got.length !== want.length || got.some((n, i) => n !== want[i])) {
          const firstBad = got.findIndex((n, i) => n !== want[i]);
          assert.fail(`${direction} ${ph.prefix}/${conn}: ${got.length} points, ${want.length} expected; first difference at ${firstBad}: got ${got[firstBad]}, want ${want[firstBad]}`);
        }
      }
    });
  }
}

describe('delivery to DataKit', { skip }, () => {
  let hosts: HostPair;
  let dk: FakeDataKit;
  let server: ChildProcess | undefined;
  let jail: string;
  let cgroupRoot: string;
  const dirs: string[] = [];
  const bufferDir = () => {
    dirs.push(fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-delivery-')));
    return dirs[dirs.length - 1];
  };
  /** Runs `cmd` inside the test's cgroup. */
  const jailed = (cmd: string[]) => ['sh', '-ec', `echo $$ > ${jail}/cgroup.procs\nexec "$@"`, 'sh', ...cmd];

  before(async () => {
    const mount = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[2] === 'cgroup2');
    assert.ok(mount, 'cgroup v2 is mounted');
    cgroupRoot = mount[1];
    jail = path.join(cgroupRoot, `dkeb-delivery-${process.pid}`);
    fs.mkdirSync(jail);
    hosts = createHostPair(11);
    dk = await startFakeDataKit();
    const [cmd, ...args] = jailed(['ip', 'netns', 'exec', hosts.server, process.execPath, peer, 'http-app', hosts.serverV4, HTTP_PORT]);
    server = await startDaemon(cmd, args, 'listening');
  });
  after(async () => {
    killGroup(server);
    hosts?.destroy();
    await dk?.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    if (jail) {
      await until(() => fs.readFileSync(`${jail}/cgroup.procs`, 'utf8'), (procs) => procs === '', 'the test cgroup empties', 5000);
      fs.rmdirSync(jail);
    }
  });

  /** The collector, posting to the stand-in, retrying at least every 300 ms (a test knob). */
  async function collector(dir: string, extra: string[] = []): Promise<{ c: RunningCollector; port: number }> {
    const port = await freePort();
    const args = ['--l7-per-request', '--interval', '1h', '--datakit-apiserver', dk.address, '--buffer-dir', dir, '--metrics-listen', `127.0.0.1:${port}`, ...extra];
    const inJail = ['unshare', '--mount', '--propagation', 'private', 'sh', '-ec', `mount --bind ${jail} ${cgroupRoot}\nexec "$0" "$@"`];
    return { c: await startCollector(args, { DATAKIT_EBPF_RETRY_MAX_MS: '300' }, undefined, inJail), port };
  }

  /** The requests of a phase, all answered 200; 2 points each. */
  async function traffic(ph: Phase): Promise<void> {
    const [cmd, ...args] = jailed(['ip', 'netns', 'exec', hosts.client, process.execPath, peer, 'http-numbered', hosts.serverV4, HTTP_PORT, String(ph.conns), String(ph.requests), ph.prefix]);
    const { stdout } = await run(cmd, args);
    assert.deepEqual(JSON.parse(stdout).statuses, { 200: ph.conns * ph.requests });
  }
  const pointsOf = (...phases: Phase[]) => phases.reduce((n, ph) => n + 2 * ph.conns * ph.requests, 0);

  test('an outage of 200,000 points, a SIGTERM and a SIGKILL in it: every point arrives once, in order', async () => {
    const dir = bufferDir();
    const phases: Phase[] = [
      { prefix: '/a', conns: 4, requests: 12_500 },
      { prefix: '/b', conns: 4, requests: 12_500 },
      { prefix: '/c', conns: 2, requests: 1_000 },
    ];
    const [a, b, c] = phases;
    await dk.down();

    // a first run, stopped with SIGTERM while DataKit is away
    const first = await collector(dir);
    let kept = 0;
    try {
      await traffic(a);
      await until(() => outputStats(first.port), (s) => s.buffered === pointsOf(a), `${pointsOf(a)} points made`);
      assert.equal((await first.c.stop('SIGTERM')).code, 0, first.c.stderr());
      kept = Number(/datakit: (\d+) points kept in /.exec(first.c.stderr())?.[1]);
      assert.ok(kept >= pointsOf(a), first.c.stderr()); // and netflow's points, made at exit
    } finally {
      await first.c.stop('SIGKILL');
    }

    // a second, SIGKILLed once its points are on disk
    const second = await collector(dir);
    try {
      assert.match(second.c.stderr(), new RegExp(`datakit: ${kept} network points left in .* by an earlier run`));
      await traffic(b);
      await until(() => pointsOnDisk(dir), (n) => n === kept + pointsOf(b), 'every point on disk');
      const s = await outputStats(second.port);
      assert.ok(s.failed >= 1 && s.sent === 0, JSON.stringify(s));
    } finally {
      await second.c.stop('SIGKILL');
    }
    assert.ok(pointsOf(a, b) >= 200_000);

    // DataKit is back, slow enough that the third run makes its own points while it still
    // sends what the others left: those go first
    await dk.up();
    dk.delayMs = 150;
    const third = await collector(dir);
    try {
      await traffic(c);
      await until(() => outputStats(third.port), (v) => v.buffered >= pointsOf(c) && v.sent < kept, 'its own points made before the old ones are through');
      const s = await until(() => outputStats(third.port), (v) => v.buffered === 0 && v.sent >= kept + pointsOf(b, c), 'all delivered', 60_000);
      assert.deepEqual([s.dropped_full, s.rejected, s.corrupt], [0, 0, 0]);
      const lines = dk.lines();
      assert.equal(s.sent, lines.length, 'what the collector counts as sent is what DataKit took');
      assertOnceInOrder(ours(lines, phases), phases);
      assert.deepEqual(fs.readdirSync(path.join(dir, 'network')), [], 'nothing waits: the buffer dir is empty');
      assert.equal((await third.c.stop('SIGTERM')).code, 0, third.c.stderr());
    } finally {
      dk.delayMs = 0;
      await third.c.stop('SIGKILL');
    }
  });

  test('a batch DataKit refuses with 400 is dropped, counted and logged; the ones behind it arrive', async () => {
    dk.requests.length = 0;
    let ourWrites = 0;
    const answer = '{"error":"point 3: invalid field format"}';
    dk.refuse = (r) => (r.url.startsWith('/v1/write/network') && r.body.includes('path="/r') && ++ourWrites === 2 ? [400, answer] : undefined);
    const phases: Phase[] = [0, 1, 2, 3].map((k) => ({ prefix: `/r${k}`, conns: 2, requests: 200 }));
    const col = await collector(bufferDir());
    try {
      // a batch per burst: the collector posts what it has once a second
      for (const ph of phases) {
        await traffic(ph);
        await sleep(1200);
      }
      const s = await until(() => outputStats(col.port), (v) => v.buffered === 0 && v.sent + v.rejected === pointsOf(...phases), 'all dealt with');
      const refused = dk.requests.filter((r) => r.status === 400);
      assert.equal(refused.length, 1, 'refused once, never retried');
      const refusedLines = refused[0].body.split('\n');
      assert.deepEqual([s.rejected, s.failed], [refusedLines.length, 0]);
      const refusedSeen = ours(refusedLines, phases);
      assert.equal(refusedSeen.length, refusedLines.length);
      const isRefused = new Set(refusedSeen.map((x) => `${x.phase}/${x.conn}/${x.n}`));
      assertOnceInOrder(ours(dk.lines(), phases), phases, (x) => isRefused.has(`${x.phase}/${x.conn}/${x.n}`));
      // and later batches went through
      const after = dk.requests.slice(dk.requests.indexOf(refused[0]) + 1).filter((r) => r.status === 200 && r.body.includes('path="/r'));
      assert.ok(after.length >= 1, 'batches after the refused one were taken');
      assert.match(col.c.stderr(), new RegExp(`WARN datakit: network batch of ${refusedLines.length} points refused, dropped: HTTP 400: ${answer.replace(/[{}]/g, '\\$&')}`));
    } finally {
      dk.refuse = undefined;
      await col.c.stop('SIGKILL');
    }
  });

  test('an outage longer than the bound drops only the oldest, counted exactly; the newest arrive in order', async () => {
    dk.requests.length = 0;
    await dk.down();
    // 8 bursts of 800 points (about 250 KB each) into 1 MiB
    const phases: Phase[] = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => ({ prefix: `/q${k}`, conns: 1, requests: 400 }));
    const made = pointsOf(...phases);
    const col = await collector(bufferDir(), ['--buffer-max-size', '1MiB']);
    try {
      for (const ph of phases) {
        await traffic(ph);
        await sleep(1100);
      }
      const during = await until(() => outputStats(col.port), (v) => v.buffered + v.dropped_full === made, 'all made');
      assert.ok(during.dropped_full > 0 && during.buffered > 0, JSON.stringify(during));
      await dk.up();
      const s = await until(() => outputStats(col.port), (v) => v.buffered === 0, 'the rest delivered');
      const seen = ours(dk.lines(), phases);
      assert.equal(seen.length + s.dropped_full, made, 'what was dropped is exactly what never arrived');
      assert.equal(s.sent, seen.length);
      // what arrived is the newest of each side, in order
      for (const direction of ['outgoing', 'incoming']) {
        const all = phases.flatMap((ph, phase) => Array.from({ length: ph.requests }, (_, n) => `${phase}/0/${n}`));
        const got = seen.filter((x) => x.direction === direction).map((x) => `${x.phase}/${x.conn}/${x.n}`);
        assert.deepEqual(got, all.slice(all.length - got.length), `${direction}: the newest ${got.length}`);
      }
      assert.equal((await col.c.stop('SIGTERM')).code, 0);
      assert.match(col.c.stderr(), new RegExp(`WARN output: dropped_full \\+${s.dropped_full} \\(oldest waiting points dropped`));
    } finally {
      await col.c.stop('SIGKILL');
    }
  });
});
