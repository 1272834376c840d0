// Decoder for struct dns_event (bpf/dnsflow.h).
import { formatV6 } from '../netflow/decode';

export const DNS_EVENT = {
  ts: 0,
  saddr: 8,
  daddr: 24,
  sport: 40,
  dport: 42,
  family: 44,
  proto: 46,
  is_response: 47,
  len: 48,
  payload_len: 52,
  payload: 56,
  size: 56 + 512,
} as const;
export const DNSFLOW_CONFIG = { include_loopback: 0, wakeup_bytes: 4, size: 8 } as const;
export const DNS_COUNTER_NAMES = ['events', 'ringbuf_full', 'fragments'] as const;

export interface DnsPacketEvent {
  monotonicNs: bigint;
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  family: 'IPv4' | 'IPv6';
  transport: 'udp' | 'tcp';
  isResponse: boolean;
  /** The captured start of the L4 payload (a view into the ring buffer chunk). */
  payload: Buffer;
  /** The whole L4 payload length, of which `payload` may be only the start. */
  payloadLen: number;
}

function ip(buf: Buffer, off: number, v4: boolean): string {
  return v4 ? `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}` : formatV6(buf, off);
}

/** `recordLen`: the ring buffer record's length; records carry only the captured bytes. */
export function decodeDnsEvent(buf: Buffer, off: number, recordLen: number): DnsPacketEvent {
  const v4 = buf.readUInt16LE(off + DNS_EVENT.family) === 2;
  const len = Math.max(0, Math.min(buf.readUInt16LE(off + DNS_EVENT.len), recordLen - DNS_EVENT.payload));
  return {
    monotonicNs: buf.readBigUInt64LE(off + DNS_EVENT.ts),
    srcIp: ip(buf, off + DNS_EVENT.saddr, v4),
    dstIp: ip(buf, off + DNS_EVENT.daddr, v4),
    srcPort: buf.readUInt16LE(off + DNS_EVENT.sport),
    dstPort: buf.readUInt16LE(off + DNS_EVENT.dport),
    family: v4 ? 'IPv4' : 'IPv6',
    transport: buf[off + DNS_EVENT.proto] === 6 ? 'tcp' : 'udp',
    isResponse: buf[off + DNS_EVENT.is_response] !== 0,
    payload: buf.subarray(off + DNS_EVENT.payload, off + DNS_EVENT.payload + len),
    payloadLen: buf.readUInt32LE(off + DNS_EVENT.payload_len),
  };
}
