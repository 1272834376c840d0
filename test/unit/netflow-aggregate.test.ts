import assert from 'node:assert/strict';
import { test } from 'node:test';
import { guessDirection, NetflowAggregator } from '../../src/aggregate/netflow';
import {
  CONN_F_ESTABLISHED,
  CONN_F_PREEXISTING,
  CONN_STATS,
  ConnSample,
  decodeConnStats,
  DIR_INCOMING,
  DIR_OUTGOING,
  DIR_UNKNOWN,
  formatV6,
  TUPLE,
} from '../../src/plugins/netflow/decode';

let nextId = 1;
function conn(over: Partial<ConnSample> = {}): ConnSample {
  return {
    id: nextId++,
    family: 'IPv4',
    transport: 'tcp',
    srcIp: '198.51.100.1',
    dstIp: '198.51.100.2',
    srcPort: 40000,
    dstPort: 80,
    netns: 1,
    bytesSent: 0,
    bytesRecv: 0,
    pid: 42,
    processName: 'curl',
    retransmits: 0,
    rttUs: 100,
    rttVarUs: 10,
    direction: DIR_OUTGOING,
    flags: CONN_F_ESTABLISHED,
    cgroupId: 0,
    ...over,
  };
}

test('connections differing only in the ephemeral port merge; rtt is averaged', () => {
  const agg = new NetflowAggregator();
  agg.addClosed(conn({ srcPort: 40000, bytesSent: 100, bytesRecv: 1000, rttUs: 100, rttVarUs: 10, retransmits: 1 }));
  agg.addClosed(conn({ srcPort: 40001, bytesSent: 200, bytesRecv: 2000, rttUs: 300, rttVarUs: 30 }));
  agg.addLive(conn({ srcPort: 40002, bytesSent: 300, bytesRecv: 0, rttUs: 200, rttVarUs: 20 }));
  const flows = agg.takeFlows();
  assert.equal(flows.length, 1);
  assert.deepEqual(flows[0], {
    direction: 'outgoing',
    transport: 'tcp',
    family: 'IPv4',
    pid: 42,
    processName: 'curl',
    srcIp: '198.51.100.1',
    srcPort: '*',
    dstIp: '198.51.100.2',
    dstPort: '80',
    bytesRead: 3000,
    bytesWritten: 600,
    retransmits: 1,
    tcpEstablished: 3,
    tcpClosed: 2,
    rtt: 200,
    rttVar: 20,
    cgroupId: 0,
  });
});

test('incoming flows collapse the peer port; non-ephemeral ports stay', () => {
  const agg = new NetflowAggregator();
  agg.addLive(conn({ direction: DIR_INCOMING, srcPort: 80, dstPort: 50000, bytesRecv: 5 }));
  agg.addLive(conn({ direction: DIR_OUTGOING, srcPort: 1023, dstPort: 22, bytesSent: 5 }));
  const flows = agg.takeFlows().map((f) => `${f.direction} ${f.srcPort}->${f.dstPort}`).sort();
  assert.deepEqual(flows, ['incoming 80->*', 'outgoing 1023->22']);
});

test('a long-lived connection reports per-interval deltas and is established once', () => {
  const agg = new NetflowAggregator();
  const c = conn({ bytesSent: 10, bytesRecv: 20 });
  agg.addLive(c);
  agg.endMapRead();
  let [f] = agg.takeFlows();
  assert.equal(f.bytesWritten, 10);
  assert.equal(f.tcpEstablished, 1);

  agg.addLive({ ...c, bytesSent: 15, bytesRecv: 20 });
  agg.endMapRead();
  [f] = agg.takeFlows();
  assert.equal(f.bytesWritten, 5);
  assert.equal(f.bytesRead, 0);
  assert.equal(f.tcpEstablished, 0);

  agg.addLive({ ...c, bytesSent: 15, bytesRecv: 20 });
  agg.endMapRead();
  assert.deepEqual(agg.takeFlows(), [], 'an idle interval produces no point');

  agg.addClosed({ ...c, bytesSent: 16, bytesRecv: 30 });
  [f] = agg.takeFlows();
  assert.equal(f.bytesWritten, 1);
  assert.equal(f.bytesRead, 10);
  assert.equal(f.tcpClosed, 1);
  assert.equal(f.tcpEstablished, 0);
  assert.equal(agg.tracked, 0);
});

test('connections already open count as established once, first time seen', () => {
  const agg = new NetflowAggregator();
  const c = conn({ flags: CONN_F_PREEXISTING, direction: DIR_UNKNOWN, srcPort: 22, dstPort: 51000, bytesRecv: 1 });
  agg.addLive(c);
  agg.endMapRead();
  const [f] = agg.takeFlows();
  assert.equal(f.tcpEstablished, 1);
  assert.equal(f.direction, 'incoming');
  agg.addLive({ ...c, bytesRecv: 2 });
  assert.equal(agg.takeFlows()[0].tcpEstablished, 0);
});

test('a connection missing from two map reads is forgotten and counted', () => {
  const agg = new NetflowAggregator();
  agg.addLive(conn({ bytesSent: 1 }));
  agg.endMapRead();
  agg.endMapRead();
  assert.equal(agg.tracked, 1, 'one missed read is tolerated (its close event may be in flight)');
  agg.endMapRead();
  assert.equal(agg.tracked, 0);
  assert.equal(agg.vanished, 1);
});

test('direction guess for connections first seen already open', () => {
  assert.equal(guessDirection(conn({ srcPort: 45000, dstPort: 443 })), 'outgoing');
  assert.equal(guessDirection(conn({ srcPort: 443, dstPort: 45000 })), 'incoming');
  assert.equal(guessDirection(conn({ srcPort: 22, dstPort: 1022 })), 'incoming');
});

test('decodes conn_stats, IPv4-mapped IPv6 as IPv4', () => {
  const b = Buffer.alloc(CONN_STATS.size);
  b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 1], TUPLE.saddr);
  b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2], TUPLE.daddr);
  b.writeUInt16LE(41000, TUPLE.sport);
  b.writeUInt16LE(80, TUPLE.dport);
  b.writeUInt16LE(10, TUPLE.family);
  b[TUPLE.proto] = 6;
  b.writeUInt32LE(7, CONN_STATS.id);
  b.writeUInt32LE(1, CONN_STATS.id + 4);
  b.writeUInt32LE(123456, CONN_STATS.bytes_sent);
  b.writeUInt32LE(2, CONN_STATS.bytes_sent + 4);
  b.writeUInt32LE(99, CONN_STATS.pid);
  b.write('nginx', CONN_STATS.comm);
  b.writeUInt32LE(4026531835, CONN_STATS.cgroup_id);
  const s = decodeConnStats(b, 0);
  assert.equal(s.cgroupId, 4026531835);
  assert.equal(s.family, 'IPv4');
  assert.equal(s.srcIp, '198.51.100.1');
  assert.equal(s.dstIp, '198.51.100.2');
  assert.equal(s.id, 2 ** 32 + 7);
  assert.equal(s.bytesSent, 2 * 2 ** 32 + 123456);
  assert.equal(s.processName, 'nginx');
  assert.equal(s.transport, 'tcp');
});

test('formats IPv6 addresses per RFC 5952', () => {
  const v6 = (hex: string) => formatV6(Buffer.from(hex.replace(/:/g, ''), 'hex'), 0);
  assert.equal(v6('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  assert.equal(v6('0000:0000:0000:0000:0000:0000:0000:0001'), '::1');
  assert.equal(v6('0000:0000:0000:0000:0000:0000:0000:0000'), '::');
  assert.equal(v6('2001:0db8:0000:0001:0000:0000:0000:0001'), '2001:db8:0:1::1');
  assert.equal(v6('2001:0db8:0001:0001:0001:0001:0001:0001'), '2001:db8:1:1:1:1:1:1');
  assert.equal(v6('fe80:0000:0000:0000:0000:0000:0000:0000'), 'fe80::');
  // IPv4-mapped: the dotted form of RFC 5952 §5 (only ::ffff:0:0/96)
  assert.equal(v6('0000:0000:0000:0000:0000:ffff:c633:6420'), '::ffff:198.51.100.32');
  assert.equal(v6('0000:0000:0000:0000:0001:ffff:c633:6420'), '::1:ffff:c633:6420');
  assert.equal(v6('0000:0000:0000:0000:0000:fffe:c633:6420'), '::fffe:c633:6420');
});

test('the idle fast path: unchanged connections skip decoding, but becoming established is news', () => {
  const agg = new NetflowAggregator();
  const connecting = conn({ flags: 0 });
  assert.equal(agg.touchIfIdle(connecting.id, 0, 0, 0, 0), undefined, 'unknown: the full path');
  agg.addLive(connecting);
  agg.endMapRead();
  assert.equal(agg.touchIfIdle(connecting.id, 0, 0, 0, 0), 1, 'known and unchanged: idle once');
  agg.endMapRead();
  // the handshake completed without a byte moving: only the full path counts it
  assert.equal(agg.touchIfIdle(connecting.id, 0, 0, 0, CONN_F_ESTABLISHED), undefined);
  agg.addLive({ ...connecting, flags: CONN_F_ESTABLISHED });
  assert.equal(agg.takeFlows()[0].tcpEstablished, 1);
  agg.endMapRead();
  assert.equal(agg.touchIfIdle(connecting.id, 0, 0, 0, CONN_F_ESTABLISHED), 1, 'counted: idle again');
  assert.equal(agg.touchIfIdle(connecting.id, 10, 0, 0, CONN_F_ESTABLISHED), undefined, 'bytes moved');
  assert.equal(agg.tracked, 1);
  assert.equal(agg.vanished, 0, 'touched connections are not forgotten');
});

test('connections the kernel summed join the flow of the same ends: totals, counts, and rtt averaged over all', () => {
  const agg = new NetflowAggregator();
  agg.addClosed(conn({ srcPort: 40000, bytesSent: 100, bytesRecv: 1000, rttUs: 100, rttVarUs: 10 }));
  // three connections the kernel summed; port 0 is the ephemeral port it collapsed
  agg.addSummed({ sample: conn({ srcPort: 0, bytesSent: 30, bytesRecv: 300, retransmits: 2 }), conns: 3, rttSumUs: 600, rttVarSumUs: 60 });
  // another process: its own flow
  agg.addSummed({ sample: conn({ srcPort: 0, pid: 7, bytesSent: 5 }), conns: 1, rttSumUs: 50, rttVarSumUs: 5 });
  // an incoming one: the peer's port was collapsed
  agg.addSummed({ sample: conn({ srcPort: 80, dstPort: 0, direction: DIR_INCOMING, bytesRecv: 9 }), conns: 2, rttSumUs: 20, rttVarSumUs: 2 });
  const flows = agg.takeFlows().sort((a, b) => a.pid - b.pid || a.direction.localeCompare(b.direction));
  assert.deepEqual(
    flows.map((f) => [f.pid, f.direction, f.srcPort, f.dstPort, f.bytesWritten, f.bytesRead, f.retransmits, f.tcpEstablished, f.tcpClosed, f.rtt, f.rttVar]),
    [
      [7, 'outgoing', '*', '80', 5, 0, 0, 1, 1, 50, 5],
      [42, 'incoming', '80', '*', 0, 9, 0, 2, 2, 10, 1],
      [42, 'outgoing', '*', '80', 130, 1300, 2, 4, 4, 175, 18],
    ],
  );
});
