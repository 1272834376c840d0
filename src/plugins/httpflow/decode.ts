// Decoder for struct http_event (bpf/httpflow.h).
import { ipType, IpType } from '../../enrich/iptype';
import { CONN_STATS, decodeConnStats } from '../netflow/decode';
import { GoOffsets, goOffsets, MIN_GO_MINOR } from './tls/go';

export const HTTP_EVENT = {
  ts: 0,
  sk: 8,
  req_end_ts: 16,
  req_ts: 24,
  t: 32,
  pid: 80,
  kind: 84,
  egress: 85,
  len: 86,
  comm: 88,
  status: 104,
  data: 120,
} as const;
export const HTTP_STATUS_CAPTURE = 16;
export const HTTP_CAPTURE = 1152;
export const HTTP_REQUEST = 1;
export const HTTP_RESPONSE = 2;
/** A request the kernel kept until its response: both in one record. */
export const HTTP_EXCHANGE = 3;
/** The connection ended with requests user space holds still unanswered. */
export const HTTP_CONN_END = 4;
/** Or'ed into the kind: the message was read from a TLS library's plaintext. */
export const HTTP_TLS = 0x10;
/** Slots of the per-CPU http_counters map (enum http_counter). */
export const HTTP_COUNTER_NAMES = [
  'events',
  'ringbuf_full',
  'state_full',
  'exchanges',
  'overflow',
  'series_lost',
  'kernel_queue_overflow',
  'unmatched',
  'not_http',
  'paths_sent',
  'seen_before',
  'unanswered',
  'early_requests',
  'tls_no_socket',
  'tls_execs_lost',
  'tls_preempted',
] as const;
export const HTTPFLOW_CONFIG = {
  include_loopback: 0,
  wakeup_bytes: 4,
  per_request: 8,
  max_series: 12,
  go_conn_data: 16,
  go_netfd: 20,
  go_sysfd: 24,
  udp_peers: 28,
  udp_locals: 32,
  size: 36,
} as const;

/** struct http_series_key: one series of an interval. */
export const HTTP_SERIES_KEY = {
  saddr: 0,
  daddr: 16,
  sport: 32,
  dport: 34,
  family: 36,
  server: 38,
  method: 39,
  status: 40,
  version: 42,
  tls: 43,
  pid: 44,
  path: 48,
  comm: 56,
  size: 72,
} as const;
export const HTTP_PATH_EVENT = { path: 0, len: 8, data: 16 } as const;

/** Where a Go *tls.Conn keeps its socket's fd, as the programs follow it (tls/go.ts has the layout). */
export interface GoConnOffsets {
  connData: number;
  netFd: number;
  sysfd: number;
}

/** The programs' path from the layout: conn's data word, then netFD, then its Sysfd. */
export function goConnOffsets(o: GoOffsets): GoConnOffsets {
  return { connData: o.connConn + o.ifaceData, netFd: o.tcpConnFd, sysfd: o.netFdPfd + o.pfdSysfd };
}

const GO_CONN_OFFSETS = goConnOffsets(goOffsets(MIN_GO_MINOR)!);

export interface HttpflowConfig {
  includeLoopback: boolean;
  wakeupBytes: number;
  perRequest: boolean;
  maxSeries: number;
  go?: GoConnOffsets;
  /** Stash the peers of UDP datagrams sent, in netflow's map. */
  udpPeers?: boolean;
  /** Note the local addresses of wildcard-bound sockets' datagrams, in netflow's map. */
  udpLocals?: boolean;
}

export function encodeHttpflowConfig(c: HttpflowConfig): Buffer {
  const b = Buffer.alloc(HTTPFLOW_CONFIG.size);
  b.writeUInt32LE(c.includeLoopback ? 1 : 0, HTTPFLOW_CONFIG.include_loopback);
  b.writeUInt32LE(c.wakeupBytes, HTTPFLOW_CONFIG.wakeup_bytes);
  b.writeUInt32LE(c.perRequest ? 1 : 0, HTTPFLOW_CONFIG.per_request);
  b.writeUInt32LE(c.maxSeries, HTTPFLOW_CONFIG.max_series);
  const go = c.go ?? GO_CONN_OFFSETS;
  b.writeUInt32LE(go.connData, HTTPFLOW_CONFIG.go_conn_data);
  b.writeUInt32LE(go.netFd, HTTPFLOW_CONFIG.go_netfd);
  b.writeUInt32LE(go.sysfd, HTTPFLOW_CONFIG.go_sysfd);
  b.writeUInt32LE(c.udpPeers ? 1 : 0, HTTPFLOW_CONFIG.udp_peers);
  b.writeUInt32LE(c.udpLocals ? 1 : 0, HTTPFLOW_CONFIG.udp_locals);
  return b;
}

export interface HttpConnection {
  family: 'IPv4' | 'IPv6';
  localIp: string;
  localPort: number;
  localType: IpType;
  remoteIp: string;
  remotePort: number;
  remoteType: IpType;
}

/** The tuple sits where conn_stats keeps it: reuse that decoder's address handling. */
const tupleView = Buffer.alloc(CONN_STATS.size);

/** Addresses of the event's connection: decoded once per connection by the caller's cache. */
export function decodeHttpConnection(buf: Buffer, off: number): HttpConnection {
  return decodeEnds(buf, off + HTTP_EVENT.t);
}

/** Both ends, laid out as in struct conn_tuple (http_series_key starts the same way). */
export function decodeEnds(buf: Buffer, off: number): HttpConnection {
  tupleView.fill(0);
  buf.copy(tupleView, 0, off, off + HTTP_SERIES_KEY.server);
  const t = decodeConnStats(tupleView, 0);
  return {
    family: t.family,
    localIp: t.srcIp,
    localPort: t.srcPort,
    localType: ipType(t.srcIp),
    remoteIp: t.dstIp,
    remotePort: t.dstPort,
    remoteType: ipType(t.dstIp),
  };
}

/**
 * The socket, as a Number: kernel addresses are canonical (the top 16 bits
 * copy bit 47), so the low 48 bits identify the socket exactly.
 */
export function httpEventSocket(buf: Buffer, off: number): number {
  return (buf.readUInt32LE(off + HTTP_EVENT.sk + 4) & 0xffff) * 0x1_0000_0000 + buf.readUInt32LE(off + HTTP_EVENT.sk);
}

/** The command name carried by the event (netflow's record of the owner). */
export function httpEventComm(buf: Buffer, off: number): string {
  let end = off + HTTP_EVENT.comm;
  while (end < off + HTTP_EVENT.comm + 16 && buf[end] !== 0) end++;
  return buf.toString('utf8', off + HTTP_EVENT.comm, end);
}
