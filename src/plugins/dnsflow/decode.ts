// Decoder for struct dns_event (bpf/dnsflow.h).
import { formatV4, formatV6 } from '../netflow/decode';

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
  kind: 50,
  payload_len: 52,
  name: 56,
  payload: 64,
  size: 64 + 512,
} as const;
/** enum dns_kind: why the kernel sent a message. */
export const DNS_KIND = { PACKET: 0, NAME: 1, ANSWER: 2 } as const;
export const DNSFLOW_CONFIG = { include_loopback: 0, wakeup_bytes: 4, per_query: 8, max_series: 12, size: 16 } as const;
/** Slots of the per-CPU counters map (enum dns_counter). */
export const DNS_COUNTER_NAMES = [
  'events',
  'ringbuf_full',
  'fragments',
  'kernel_queries',
  'kernel_answered',
  'kernel_duplicates',
  'pending_full',
  'kernel_unmatched',
  'kernel_parse_errors',
  'overflow',
  'series_lost',
  'no_process',
] as const;
/** struct dns_series_key, dns_query_key and dns_query (bpf/dnsflow.h). */
export const DNS_SERIES_KEY = { client: 0, server: 16, client_port: 32, server_port: 34, family: 36, proto: 38, rcode: 39, qtype: 40, pid: 44, name: 48, comm: 56, size: 72 } as const;
export const DNS_QUERY_KEY = { client: 0, server: 16, client_port: 32, server_port: 34, family: 36, proto: 38, id: 40, size: 44 } as const;
export const DNS_QUERY = { ts: 0, name: 8, qtype: 16, pid: 20, comm: 24, size: 40 } as const;

export interface DnsflowConfig {
  includeLoopback: boolean;
  wakeupBytes: number;
  perQuery: boolean;
  maxSeries: number;
}

export function encodeDnsflowConfig(c: DnsflowConfig): Buffer {
  const b = Buffer.alloc(DNSFLOW_CONFIG.size);
  b.writeUInt32LE(c.includeLoopback ? 1 : 0, DNSFLOW_CONFIG.include_loopback);
  b.writeUInt32LE(c.wakeupBytes, DNSFLOW_CONFIG.wakeup_bytes);
  b.writeUInt32LE(c.perQuery ? 1 : 0, DNSFLOW_CONFIG.per_query);
  b.writeUInt32LE(c.maxSeries, DNSFLOW_CONFIG.max_series);
  return b;
}

export interface DnsPacketEvent {
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

/** IPv4 addresses as text, by their 32 bits: a host's DNS goes to few servers from few addresses. */
const v4Text = new Map<number, string>();
const V4_TEXTS = 4096;

export function ip(buf: Buffer, off: number, v4: boolean): string {
  if (!v4) return formatV6(buf, off);
  const bits = buf.readUInt32LE(off);
  let text = v4Text.get(bits);
  if (text === undefined) {
    if (v4Text.size >= V4_TEXTS) v4Text.clear();
    text = formatV4(buf, off);
    v4Text.set(bits, text);
  }
  return text;
}

/** `recordLen`: the ring buffer record's length; records carry only the captured bytes. */
export function decodeDnsEvent(buf: Buffer, off: number, recordLen: number): DnsPacketEvent {
  const v4 = buf.readUInt16LE(off + DNS_EVENT.family) === 2;
  const len = Math.max(0, Math.min(buf.readUInt16LE(off + DNS_EVENT.len), recordLen - DNS_EVENT.payload));
  return {
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
