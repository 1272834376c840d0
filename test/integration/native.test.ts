// The native layer against the real kernel: every kind of attach point it
// offers, map operations, ring buffer draining, errors and clean-up.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { BpfError, BpfMap, BpfObject, forEachRecord, nativeAddonFile, probeTarget, RingBuffer } from '../../src/bpf/native';
import { Cgroup2 } from '../../src/runtime';
import { InProgress } from '../../src/aggregate/in-progress';
import { loadedProgramIds, programsGone, skip } from '../helpers/privileged';
import { sleep, until } from '../helpers/collector';

const MAGIC = 0xfeedbeef;
const SLOT = { uprobe: 0, uretprobe: 1, tracepoint: 2, rawTracepoint: 3, egress: 4, sockops: 5, socketFilter: 6, ringFull: 7 };

function hits(map: BpfMap, slot: number): number {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(slot);
  return Number(map.lookup(key)!.readBigUInt64LE(0));
}

describe('native layer', { skip }, () => {
  let obj: BpfObject;
  let hitMap: BpfMap;

  before(() => {
    obj = BpfObject.open('selftest');
    const cfg = Buffer.alloc(8);
    cfg.writeUInt32LE(process.pid, 0);
    cfg.writeUInt32LE(MAGIC, 4);
    obj.setConfig(cfg);
    obj.load();
    hitMap = obj.map('hits');
  });
  after(() => obj?.close());

  test('uprobe and uretprobe by symbol; ring buffer drained in bulk, in order, nothing lost', () => {
    obj.attachUprobe('on_probe_target', { binary: nativeAddonFile, func: 'datakit_ebpf_probe_target' });
    obj.attachUprobe('on_probe_target_ret', { binary: nativeAddonFile, func: 'datakit_ebpf_probe_target', retprobe: true });
    const values: number[] = [];
    let chunks = 0;
    // a small buffer forces many chunks: records must never straddle or drop
    const ring = new RingBuffer(obj.map('records'), (buf, bytes) => {
      chunks++;
      forEachRecord(buf, bytes, (off, len) => {
        assert.equal(len, 16);
        assert.equal(buf.readUInt32LE(off + 4), MAGIC, '.rodata config reached the program');
        values.push(buf.readUInt32LE(off));
      });
    }, 4096);
    try {
      const N = 5000;
      for (let i = 0; i < N; i++) assert.equal(probeTarget(i), i + 1);
      while (ring.drain()); // each call takes a bounded share
      assert.equal(values.length, N);
      assert.deepEqual(values, Array.from({ length: N }, (_, i) => i));
      assert.ok(chunks >= (N * 24) / 4096, `delivered in ${chunks} chunks`);
      assert.equal(hits(hitMap, SLOT.uprobe), N);
      assert.equal(hits(hitMap, SLOT.uretprobe), N);
      assert.equal(hits(hitMap, SLOT.ringFull), 0);

      // more than the ring holds without draining: the overflow is counted, the rest delivered
      values.length = 0;
      const M = 20000;
      for (let i = 0; i < M; i++) probeTarget(i);
      while (ring.drain());
      const lost = hits(hitMap, SLOT.ringFull);
      assert.ok(lost > 0, 'a full ring buffer is counted');
      assert.equal(values.length + lost, M, 'every event delivered or counted');
    } finally {
      ring.close();
    }
  });

  test('a ring read once per drain: the first record wakes us, the next wait for drain(), which re-arms the wake-up', async () => {
    // the uprobe of the test before is still attached: one record per probeTarget() call
    const values: number[] = [];
    const ring = new RingBuffer(obj.map('records'), (buf, bytes) => {
      forEachRecord(buf, bytes, (off) => values.push(buf.readUInt32LE(off)));
    }).wakeOncePerDrain();
    try {
      probeTarget(1);
      assert.ok(await until(() => values.length === 1, 2000), 'the first record woke us');
      probeTarget(2);
      probeTarget(3);
      await sleep(200);
      assert.deepEqual(values, [1], 'no wake-up until the next drain');
      assert.ok(ring.drain() > 0);
      assert.deepEqual(values, [1, 2, 3]);
      probeTarget(4);
      assert.ok(await until(() => values.length === 4, 2000), 'drain() re-armed the wake-up');
      assert.deepEqual(values, [1, 2, 3, 4]);
    } finally {
      ring.close();
    }
  });

  test('classic and raw tracepoints', () => {
    obj.attachTracepoint('on_getppid', 'syscalls', 'sys_enter_getppid');
    const link = obj.attachRawTracepoint('on_raw_sys_enter', 'sys_enter');
    for (let i = 0; i < 100; i++) assert.ok(process.ppid > 0); // one getppid() each
    assert.equal(hits(hitMap, SLOT.tracepoint), 100);
    assert.ok(hits(hitMap, SLOT.rawTracepoint) >= 100);
    link.detach();
    const before = hits(hitMap, SLOT.rawTracepoint);
    for (let i = 0; i < 10; i++) void process.ppid;
    assert.equal(hits(hitMap, SLOT.rawTracepoint), before, 'detached: no more hits');
  });

  test('cgroup_skb and sockops on a cgroup of our own', async () => {
    const cgroup = `${new Cgroup2().path()}/datakit-ebpf-test-${process.pid}`;
    fs.mkdirSync(cgroup);
    const server = net.createServer((s) => s.end()).listen(0, '127.0.0.1');
    try {
      await new Promise((r) => server.once('listening', r));
      const port = (server.address() as net.AddressInfo).port;
      obj.attachCgroup('on_egress', cgroup);
      obj.attachCgroup('on_sockops', cgroup);
      // a child joins the cgroup, then makes three connections
      const script = `const net=require('net');let n=0;const go=()=>{if(n++===3)return;const c=net.connect(${port},'127.0.0.1');c.on('close',go);c.resume()};go()`;
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn('sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec "${process.execPath}" -e "${script}"`], { stdio: 'inherit' });
        child.on('exit', resolve);
      });
      assert.equal(code, 0);
      assert.equal(hits(hitMap, SLOT.sockops), 3, 'three active establishments in the cgroup');
      assert.ok(hits(hitMap, SLOT.egress) >= 6, 'egress packets seen');
    } finally {
      server.close();
      fs.rmdirSync(cgroup);
    }
  });

  test('socket filter on a packet socket', async () => {
    const link = obj.attachSocketFilter('on_packet');
    const sock = dgram.createSocket('udp4');
    try {
      const start = hits(hitMap, SLOT.socketFilter);
      await new Promise<void>((r) => sock.send(Buffer.from('x'), 9, '127.0.0.1', () => r()));
      for (let i = 0; i < 50 && hits(hitMap, SLOT.socketFilter) === start; i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(hits(hitMap, SLOT.socketFilter) > start);
    } finally {
      sock.close();
      link.detach();
    }
  });

  test('map operations: update, lookup, delete, chunked batch read and batch delete', () => {
    const m = obj.map('scratch');
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(8);
    for (let i = 0; i < 1000; i++) {
      key.writeUInt32LE(i);
      value.writeBigUInt64LE(BigInt(i * 3));
      m.update(key, value);
    }
    key.writeUInt32LE(7);
    assert.equal(m.lookup(key)!.readBigUInt64LE(0), 21n);
    assert.equal(m.delete(key), true);
    assert.equal(m.delete(key), false);
    assert.equal(m.lookup(key), undefined);

    // a chunk at a time through small buffers: every entry exactly once
    const seen = new Map<number, bigint>();
    let chunks = 0;
    const total = m.forEachChunk(64, (c) => {
      chunks++;
      assert.ok(c.count <= 64);
      for (let i = 0; i < c.count; i++) {
        const k = c.keys.readUInt32LE(i * 4);
        assert.equal(seen.has(k), false, `key ${k} twice`);
        seen.set(k, c.values.readBigUInt64LE(i * 8));
      }
    });
    assert.equal(total, 999);
    assert.equal(seen.size, 999);
    assert.equal([...seen.values()].reduce((a, b) => a + b, 0n), BigInt(3 * (999 * 1000) / 2 - 21));
    assert.ok(chunks >= 999 / 64, `${chunks} chunks`);
    for (const [k, v] of seen) assert.equal(v, BigInt(k * 3));
    // a batch of keys to delete, one of them (7) already gone: skipped, the rest deleted
    const keys = Buffer.alloc(4 * 20);
    for (let i = 0; i < 20; i++) keys.writeUInt32LE(i, i * 4);
    assert.equal(m.deleteBatch(keys, 20), 19);
    assert.equal(m.deleteBatch(keys, 0), 0);
    key.writeUInt32LE(19);
    assert.equal(m.lookup(key), undefined);
    key.writeUInt32LE(20);
    assert.equal(m.lookup(key)!.readBigUInt64LE(0), 60n);
    // deleting chunk by chunk empties the map
    assert.equal(m.forEachChunk(100, () => {}, { delete: true }), 980);
    assert.equal(m.forEachChunk(100, () => assert.fail('nothing left')), 0);
  });

  test('programs in progress: quiet once every CPU is seen at 0 after a move, whatever runs later', () => {
    const m = obj.map('in_progress');
    const cpus = m.valueSize / 8;
    const key = Buffer.alloc(4);
    const counts = Buffer.alloc(m.valueSize);
    const running = (cpu: number, n: number) => {
      counts.writeBigUInt64LE(BigInt(n), cpu * 8);
      m.update(key, counts);
    };
    const watch = new InProgress(m);
    assert.equal(watch.quiet(), true, 'nothing moved yet');
    watch.moved();
    assert.equal(watch.quiet(), true, 'no program running');
    const last = cpus - 1;
    running(last, 1); // a program that read the old index, still adding
    watch.moved();
    assert.equal(watch.quiet(), false);
    running(last, 0);
    assert.equal(watch.quiet(), true);
    running(last, 2); // programs that started after it was seen at 0 read the new index
    assert.equal(watch.quiet(), true);
    // one that never ends: the wait gives up, and says so
    watch.moved();
    const started = Date.now();
    assert.equal(watch.waitQuiet(), false);
    assert.ok(Date.now() - started >= 200, `gave up after ${Date.now() - started} ms`);
    assert.equal(watch.gaveUp, 1);
    running(last, 0);
    watch.moved();
    assert.equal(watch.waitQuiet(), true);
    assert.equal(watch.gaveUp, 1);
  });

  test('errors carry the operation and errno', () => {
    assert.throws(
      () => obj.attachRawTracepoint('on_raw_sys_enter', 'no_such_tracepoint'),
      (e: unknown) => e instanceof BpfError && e.errno === 2 && /attach raw tracepoint no_such_tracepoint/.test(e.op),
    );
    assert.throws(() => obj.attachUprobe('on_probe_target', { binary: '/nonexistent', func: 'x' }), BpfError);
    assert.throws(() => obj.map('no_such_map'), /no map named no_such_map/);
  });

  test('an object loads while signals keep arriving (a CPU profiler\'s SIGPROF every 50 µs)', async () => {
    // The verifier stops with EAGAIN whenever a signal is pending; libbpf's
    // few retries would all meet one. The addon holds signals for the load.
    const dir = fs.mkdtempSync('/tmp/dkeb-sigprof-');
    const script = [
      `const { BpfObject } = require(${JSON.stringify(require.resolve('../../src/bpf/native'))});`,
      "const o = BpfObject.open('dnsflow');",
      'o.load();',
      'o.close();',
      "process.stdout.write('loaded');",
    ].join('\n');
    try {
      const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '50', '--cpu-prof-dir', dir, '-e', script]);
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.stderr.on('data', (c: Buffer) => (err += c));
      const code = await new Promise<number | null>((res) => child.on('close', res));
      assert.equal(code, 0, err);
      assert.equal(out, 'loaded');
      assert.equal(fs.readdirSync(dir).length, 1, 'the profiler ran');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('close detaches every program', async () => {
    const ids = [...loadedProgramIds()];
    const tmp = BpfObject.open('selftest');
    tmp.load();
    const mine = [...loadedProgramIds()].filter((id) => !ids.includes(id));
    assert.ok(mine.length >= 7);
    tmp.close();
    assert.deepEqual(await programsGone(mine), []);
  });
});
