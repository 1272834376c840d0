// Decoders for the structures of bpf/netflow.h. Offsets are checked against
// the object's BTF by test/unit/bpf-layout.test.ts.

export const TUPLE = { saddr: 0, daddr: 16, sport: 32, dport: 34, family: 36, proto: 38, netns: 40, size: 48 } as const;
export const CONN_STATS = {
  t: 0,
  id: 48,
  bytes_sent: 56,
  bytes_recv: 64,
  pid: 72,
  retrans: 76,
  srtt_us: 80,
  mdev_us: 84,
  direction: 88,
  flags: 89,
  epoch: 92,
  comm: 96,
  cgroup_id: 112,
  size: 120,
} as const;
export const CLOSE_EVENT = { sk: 0, c: 8, size: 128 } as const;
export const NETFLOW_CONFIG = { include_loopback: 0, wakeup_bytes: 4, size: 8 } as const;
export const NETFLOW_CONTROL = { counting: 0, epoch: 4, active: 8, udp_gen: 12, size: 16 } as const;
/** struct closed_key and closed_sum: connections summed in the kernel. */
export const CLOSED_KEY = { saddr: 0, daddr: 16, sport: 32, dport: 34, family: 36, proto: 38, direction: 39, pid: 40, comm: 44, cgroup_id: 64, size: 72 } as const;
export const CLOSED_SUM = { bytes_sent: 0, bytes_recv: 8, retrans: 16, conns: 24, srtt_us: 32, mdev_us: 40, size: 48 } as const;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const DIR_UNKNOWN = 0;
export const DIR_OUTGOING = 1;
export const DIR_INCOMING = 2;

export const CONN_F_ESTABLISHED = 1;
export const CONN_F_PREEXISTING = 2;
export const CONN_F_CLOSED = 4;

/** Counter slots of the per-CPU `counters` map (enum netflow_counter). */
export const COUNTER_NAMES = [
  'conn_map_full',
  'ringbuf_full',
  'conns_tracked',
  'close_events',
  'close_lost',
  'udp_map_full',
  'udp_no_peer',
  'udp_last_peer',
  'kretprobe_missed',
  'closed_summed',
  'udp_flows_made',
] as const;

/** Counters that mean data was lost: logged as a warning when they grow. */
export const LOSS_COUNTERS: Record<string, string> = {
  conn_map_full: 'connections not tracked: connection table full',
  close_lost: 'closed connections lost: ring buffer and fallback table full',
  udp_map_full: 'UDP flows not tracked: flow table full',
  kretprobe_missed: 'sends or receives not counted: the kernel ran out of kretprobe instances',
  udp_no_peer: 'UDP sends or receives not counted: their peer address was unknown',
  conns_vanished: 'connections gone from the table without a close: bytes since the last read not counted',
  close_reads_busy: 'closed-connection sums read while a close may still have been adding (waited 200 ms): it may be lost or counted twice',
};

/** struct udp_key: the fields user space reads. */
export const UDP_KEY = { gen: 28, size: 32 } as const;

export interface ConnSample {
  id: number;
  family: 'IPv4' | 'IPv6';
  transport: 'tcp' | 'udp';
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  netns: number;
  bytesSent: number;
  bytesRecv: number;
  pid: number;
  processName: string;
  retransmits: number;
  rttUs: number;
  rttVarUs: number;
  direction: number;
  flags: number;
  /** cgroup v2 id of the owner (0: unknown). */
  cgroupId: number;
}

export function formatV4(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/** RFC 5952 text form of the 16 bytes at `off` (zero-run compression, lowercase; IPv4-mapped in dotted form). */
export function formatV6(buf: Buffer, off: number): string {
  if (isV4Mapped(buf, off)) return `::ffff:${formatV4(buf, off + 12)}`;
  const h: number[] = [];
  for (let i = 0; i < 8; i++) h.push(buf.readUInt16BE(off + i * 2));
  let bestStart = -1;
  let bestLen = 1; // a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (h[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && h[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = h.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** True for ::ffff:a.b.c.d. */
function isV4Mapped(buf: Buffer, off: number): boolean {
  for (let i = 0; i < 10; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 10] === 0xff && buf[off + 11] === 0xff;
}

function readComm(buf: Buffer, off: number): string {
  let end = off;
  while (end < off + 16 && buf[end] !== 0) end++;
  return buf.toString('utf8', off, end);
}

/** Two u32 halves of a u64 as a Number: ids stay below 2^53 by construction. */
export function readU53(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off + 4) * 0x1_0000_0000 + buf.readUInt32LE(off);
}

export function decodeConnStats(buf: Buffer, base: number): ConnSample {
  const rawFamily = buf.readUInt16LE(base + TUPLE.family);
  const sa = base + TUPLE.saddr;
  const da = base + TUPLE.daddr;
  // IPv4-mapped IPv6 sockets report as IPv4 (SPEC §4.1)
  const v4 = rawFamily === AF_INET || (isV4Mapped(buf, sa) && isV4Mapped(buf, da));
  let srcIp: string;
  let dstIp: string;
  if (rawFamily === AF_INET) {
    srcIp = formatV4(buf, sa);
    dstIp = formatV4(buf, da);
  } else if (v4) {
    srcIp = formatV4(buf, sa + 12);
    dstIp = formatV4(buf, da + 12);
  } else {
    srcIp = formatV6(buf, sa);
    dstIp = formatV6(buf, da);
  }
  return {
    id: readU53(buf, base + CONN_STATS.id),
    family: v4 ? 'IPv4' : 'IPv6',
    transport: buf[base + TUPLE.proto] === IPPROTO_UDP ? 'udp' : 'tcp',
    srcIp,
    dstIp,
    srcPort: buf.readUInt16LE(base + TUPLE.sport),
    dstPort: buf.readUInt16LE(base + TUPLE.dport),
    netns: buf.readUInt32LE(base + TUPLE.netns),
    bytesSent: readU53(buf, base + CONN_STATS.bytes_sent),
    bytesRecv: readU53(buf, base + CONN_STATS.bytes_recv),
    pid: buf.readUInt32LE(base + CONN_STATS.pid),
    processName: readComm(buf, base + CONN_STATS.comm),
    retransmits: buf.readUInt32LE(base + CONN_STATS.retrans),
    rttUs: buf.readUInt32LE(base + CONN_STATS.srtt_us),
    rttVarUs: buf.readUInt32LE(base + CONN_STATS.mdev_us),
    direction: buf[base + CONN_STATS.direction],
    flags: buf[base + CONN_STATS.flags],
    cgroupId: readU53(buf, base + CONN_STATS.cgroup_id),
  };
}

/** Connections of one flow that opened and closed between two reads, summed by the kernel. */
export interface ClosedSum {
  sample: ConnSample;
  conns: number;
  rttSumUs: number;
  rttVarSumUs: number;
}

const closedView = Buffer.alloc(CONN_STATS.size);

/** A closed_key and its closed_sum, through the conn_stats decoder (the key starts with a tuple's addresses). */
export function decodeClosedSum(keys: Buffer, k: number, values: Buffer, v: number): ClosedSum {
  closedView.fill(0);
  keys.copy(closedView, TUPLE.saddr, k + CLOSED_KEY.saddr, k + CLOSED_KEY.daddr + 16);
  closedView.writeUInt16LE(keys.readUInt16LE(k + CLOSED_KEY.sport), TUPLE.sport);
  closedView.writeUInt16LE(keys.readUInt16LE(k + CLOSED_KEY.dport), TUPLE.dport);
  closedView.writeUInt16LE(keys.readUInt16LE(k + CLOSED_KEY.family), TUPLE.family);
  closedView[TUPLE.proto] = keys[k + CLOSED_KEY.proto];
  closedView[CONN_STATS.direction] = keys[k + CLOSED_KEY.direction];
  closedView.writeUInt32LE(keys.readUInt32LE(k + CLOSED_KEY.pid), CONN_STATS.pid);
  keys.copy(closedView, CONN_STATS.comm, k + CLOSED_KEY.comm, k + CLOSED_KEY.comm + 16);
  keys.copy(closedView, CONN_STATS.cgroup_id, k + CLOSED_KEY.cgroup_id, k + CLOSED_KEY.cgroup_id + 8);
  const sample = decodeConnStats(closedView, 0);
  sample.bytesSent = readU53(values, v + CLOSED_SUM.bytes_sent);
  sample.bytesRecv = readU53(values, v + CLOSED_SUM.bytes_recv);
  sample.retransmits = readU53(values, v + CLOSED_SUM.retrans);
  return {
    sample,
    conns: readU53(values, v + CLOSED_SUM.conns),
    rttSumUs: readU53(values, v + CLOSED_SUM.srtt_us),
    rttVarSumUs: readU53(values, v + CLOSED_SUM.mdev_us),
  };
}

export function encodeNetflowConfig(includeLoopback: boolean, wakeupBytes: number): Buffer {
  const b = Buffer.alloc(NETFLOW_CONFIG.size);
  b.writeUInt32LE(includeLoopback ? 1 : 0, NETFLOW_CONFIG.include_loopback);
  b.writeUInt32LE(wakeupBytes, NETFLOW_CONFIG.wakeup_bytes);
  return b;
}
