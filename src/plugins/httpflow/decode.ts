// Decoder for struct http_event (bpf/netflow.h).
import { CONN_STATS, decodeConnStats } from '../netflow/decode';

export const HTTP_EVENT = { ts: 0, sk: 8, req_end_ts: 16, t: 24, pid: 72, kind: 76, egress: 77, len: 78, comm: 80, data: 96 } as const;
export const HTTP_CAPTURE = 1152;
export const HTTP_REQUEST = 1;
export const HTTP_RESPONSE = 2;
export const HTTP_COUNTER_NAMES = ['events', 'ringbuf_full', 'state_full'] as const;

export interface HttpPacketEvent {
  monotonicNs: bigint;
  sk: bigint;
  reqEndNs: bigint;
  family: 'IPv4' | 'IPv6';
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  pid: number;
  processName: string;
  kind: number;
  egress: boolean;
  data: Buffer;
}

/** The tuple sits where conn_stats keeps it: reuse that decoder's address handling. */
const tupleView = Buffer.alloc(CONN_STATS.size);

export function decodeHttpEvent(buf: Buffer, off: number): HttpPacketEvent {
  buf.copy(tupleView, 0, off + HTTP_EVENT.t, off + HTTP_EVENT.t + 48);
  const t = decodeConnStats(tupleView, 0);
  const len = Math.min(buf.readUInt16LE(off + HTTP_EVENT.len), HTTP_CAPTURE);
  let commEnd = off + HTTP_EVENT.comm;
  while (commEnd < off + HTTP_EVENT.comm + 16 && buf[commEnd] !== 0) commEnd++;
  return {
    monotonicNs: buf.readBigUInt64LE(off + HTTP_EVENT.ts),
    sk: buf.readBigUInt64LE(off + HTTP_EVENT.sk),
    reqEndNs: buf.readBigUInt64LE(off + HTTP_EVENT.req_end_ts),
    family: t.family,
    localIp: t.srcIp,
    localPort: t.srcPort,
    remoteIp: t.dstIp,
    remotePort: t.dstPort,
    pid: buf.readUInt32LE(off + HTTP_EVENT.pid),
    processName: buf.toString('utf8', off + HTTP_EVENT.comm, commEnd),
    kind: buf[off + HTTP_EVENT.kind],
    egress: buf[off + HTTP_EVENT.egress] !== 0,
    data: buf.subarray(off + HTTP_EVENT.data, off + HTTP_EVENT.data + len),
  };
}
