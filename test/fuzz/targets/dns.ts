// dnsflow: DNS messages as the kernel captures them (the start of a UDP or TCP
// payload) inside its ring records (struct dns_event), through the per-query
// handler (matching, the DNS cache, points and their lines) and the
// aggregated mode's learning handler, and parseDnsMessage on its own.
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { DnsCache } from '../../../src/enrich/dns-cache';
import { LineEncoder } from '../../../src/output/lineprotocol';
import type { Point } from '../../../src/output/point';
import { DNS_EVENT } from '../../../src/plugins/dnsflow/decode';
import { DnsMessage, parseDnsMessage, resolvedAddresses } from '../../../src/plugins/dnsflow/message';
import { DnsflowPlugin } from '../../../src/plugins/dnsflow/plugin';
import type { FuzzTarget } from '../harness';
import { checkLine } from '../influx-line';
import { mutate } from '../mutate';
import { Random } from '../random';

/** The capture the kernel makes of a payload (bpf/dnsflow.h). */
const CAPTURE = DNS_EVENT.size - DNS_EVENT.payload;

interface DnsRecord {
  /** The record's fixed part (DNS_EVENT.payload bytes): addresses, ports, flags, lengths. */
  head: Buffer;
  payload: Buffer;
}

export interface DnsInput {
  records: DnsRecord[];
}

const q = (id: number, name: string, type: dnsPacket.RecordType, edns = false): Buffer =>
  dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as dnsPacket.Answer] : [],
  });

const r = (id: number, name: string, type: dnsPacket.RecordType, answers: dnsPacket.Answer[], rcode = 0, authorities: dnsPacket.Answer[] = []): Buffer => {
  const b = dnsPacket.encode({ type: 'response', id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: [{ type, name }], answers, authorities });
  b[3] = (b[3] & 0xf0) | rcode;
  return b;
};

/** A response with compressed names, as servers write them: pointers to the question and into a CNAME's data. */
function compressed(): Buffer {
  const header = Buffer.from('beef81800001000200000000', 'hex');
  const question = Buffer.concat([Buffer.from('\x03www\x07example\x04test\x00', 'latin1'), Buffer.from('00010001', 'hex')]);
  // www.example.test CNAME edge.<example.test at 16>; edge... A 198.51.100.7
  const cname = Buffer.concat([Buffer.from('c00c000500010000003c0007', 'hex'), Buffer.from('\x04edge', 'latin1'), Buffer.from('c010', 'hex')]);
  const cnameData = 12 + question.length + 12;
  const a = Buffer.concat([Buffer.from([0xc0, cnameData]), Buffer.from('000100010000001e0004c6336407', 'hex')]);
  return Buffer.concat([header, question, cname, a]);
}

const SEEDS: Buffer[] = [
  q(0x1234, 'www.example.test', 'A'),
  q(0x1235, 'www.example.test', 'AAAA', true),
  q(7, 'example.test', 'MX'),
  q(8, '_sip._tcp.example.test', 'SRV'),
  q(9, '7.100.51.198.in-addr.arpa', 'PTR'),
  r(0x1234, 'www.example.test', 'A', [
    { type: 'CNAME', name: 'www.example.test', ttl: 300, data: 'edge.example.net' },
    { type: 'A', name: 'edge.example.net', ttl: 60, data: '198.51.100.7' },
    { type: 'A', name: 'edge.example.net', ttl: 60, data: '198.51.100.8' },
  ]),
  r(0x1235, 'www.example.test', 'AAAA', [{ type: 'AAAA', name: 'www.example.test', ttl: 30, data: '2001:db8::7' }]),
  r(10, 'nothing.example.test', 'A', [], 3, [
    { type: 'SOA', name: 'example.test', ttl: 900, data: { mname: 'ns.example.test', rname: 'admin.example.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } },
  ]),
  r(11, 'example.test', 'TXT', [{ type: 'TXT', name: 'example.test', ttl: 5, data: ['v=spf1 -all', 'x'.repeat(200)] }]),
  r(12, 'example.test', 'MX', [{ type: 'MX', name: 'example.test', ttl: 5, data: { preference: 10, exchange: 'mail.example.test' } }]),
  r(13, 'many.example.test', 'A', Array.from({ length: 24 }, (_, i) => ({ type: 'A' as const, name: 'many.example.test', ttl: i, data: `198.51.100.${i}` }))),
  r(14, 'www.example.test', 'A', [], 2),
  compressed(),
];

function tcp(msg: Buffer): Buffer {
  const b = Buffer.alloc(2 + msg.length);
  b.writeUInt16BE(msg.length, 0);
  msg.copy(b, 2);
  return b;
}

/** DNS-aware damage: counts, pointers that loop or point away, labels too long, names too deep. */
function dnsMutation(rng: Random, m: Buffer): Buffer {
  const b = Buffer.from(m);
  if (b.length < 12) return b;
  const at = rng.range(12, Math.max(12, b.length - 2));
  switch (rng.int(8)) {
    case 0: // huge or random counts
      b.writeUInt16BE(rng.chance(0.5) ? 0xffff : rng.int(0x10000), 4 + 2 * rng.int(4));
      return b;
    case 1: // a pointer to itself, or back to the question
      if (at + 1 < b.length) b.writeUInt16BE(0xc000 | (rng.chance(0.5) ? at : 12), at);
      return b;
    case 2: {
      // two pointers at each other
      if (at + 3 < b.length) {
        b.writeUInt16BE(0xc000 | (at + 2), at);
        b.writeUInt16BE(0xc000 | at, at + 2);
      }
      return b;
    }
    case 3: // a pointer past the end
      if (at + 1 < b.length) b.writeUInt16BE(0xc000 | rng.range(b.length, 0x3fff), at);
      return b;
    case 4: // a label length that is not one (extended or reserved label types, or past the end)
      b[at] = rng.pick([0x40, 0x41, 0x80, 0xbf, 63, 64, 255]);
      return b;
    case 5: {
      // a very long or very deep name in the question
      const labels = Array.from({ length: rng.range(1, 140) }, () => (rng.chance(0.5) ? 'a' : 'x'.repeat(rng.range(1, 63))));
      const name = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
      return Buffer.concat([b.subarray(0, 12), name, b.subarray(12)]);
    }
    case 6: // response, no error: the path that decodes answers
      b[2] |= 0x80;
      b[3] &= 0xf0;
      if (b.readUInt16BE(6) === 0) b.writeUInt16BE(rng.range(1, 4), 6);
      return b;
    default: // cut just before or inside the answers
      return b.subarray(0, rng.range(12, b.length));
  }
}

function payload(rng: Random): Buffer {
  if (rng.chance(0.08)) return rng.bytes(rng.size(CAPTURE + 64));
  let m = rng.pick(SEEDS);
  const rounds = rng.range(0, 3);
  for (let i = 0; i < rounds; i++) m = rng.chance(0.6) ? dnsMutation(rng, m) : mutate(rng, m, SEEDS, 4, 1024);
  if (rng.chance(0.5)) m = dnsMutation(rng, m);
  return m;
}

function head(rng: Random, transport: 'udp' | 'tcp', isResponse: boolean, captured: number, whole: number, ends: Buffer): Buffer {
  const h = Buffer.alloc(DNS_EVENT.payload);
  h.writeBigUInt64LE(BigInt(rng.u32()) * 1000n + 10n ** 12n, DNS_EVENT.ts);
  ends.copy(h, DNS_EVENT.saddr); // both addresses and ports, as the caller arranged them
  h.writeUInt16LE(rng.chance(0.9) ? (ends.readUInt8(40) === 4 ? 2 : 10) : rng.int(0x10000), DNS_EVENT.family);
  h[DNS_EVENT.proto] = transport === 'tcp' ? 6 : 17;
  h[DNS_EVENT.is_response] = isResponse ? 1 : 0;
  h.writeUInt16LE(rng.chance(0.9) ? captured : rng.int(0x10000), DNS_EVENT.len);
  h.writeUInt16LE(rng.int(3), DNS_EVENT.kind);
  h.writeUInt32LE(rng.chance(0.9) ? whole : rng.u32(), DNS_EVENT.payload_len);
  h.writeBigUInt64LE(BigInt(rng.u32()), DNS_EVENT.name);
  return h;
}

/** Client and server ends: addresses at 0 and 16, ports at 32 and 34 (DNS_EVENT's order); byte 40 says the family. */
function ends(rng: Random): Buffer {
  const e = Buffer.alloc(41);
  const v4 = rng.chance(0.7);
  if (v4) {
    e.set([198, 51, 100, rng.int(256)], 0);
    e.set([198, 51, 100, 53], 16);
  } else {
    rng.bytes(16).copy(e, 0);
    rng.bytes(16).copy(e, 16);
  }
  e.writeUInt16LE(rng.range(1024, 65535), 32);
  e.writeUInt16LE(rng.chance(0.9) ? 53 : rng.int(0x10000), 34);
  e[40] = v4 ? 4 : 6;
  return e;
}

function swapped(e: Buffer): Buffer {
  const s = Buffer.from(e);
  e.copy(s, 0, 16, 32);
  e.copy(s, 16, 0, 16);
  s.writeUInt16LE(e.readUInt16LE(34), 32);
  s.writeUInt16LE(e.readUInt16LE(32), 34);
  return s;
}

function record(rng: Random, transport: 'udp' | 'tcp', isResponse: boolean, e: Buffer, msg: Buffer): DnsRecord {
  const whole = transport === 'tcp' ? tcp(msg) : msg;
  const p = whole.subarray(0, CAPTURE);
  return { head: head(rng, transport, isResponse, p.length, whole.length, e), payload: rng.chance(0.1) ? mutate(rng, p, [], 3, CAPTURE) : p };
}

export function generateDns(rng: Random): DnsInput {
  const records: DnsRecord[] = [];
  const n = rng.range(1, 4);
  for (let i = 0; i < n; i++) {
    const transport = rng.chance(0.8) ? 'udp' : 'tcp';
    const e = ends(rng);
    const query = payload(rng);
    if (rng.chance(0.5)) {
      // a query and its answer: same id, ends swapped, so the matcher pairs them
      const answer = Buffer.from(payload(rng));
      if (answer.length >= 2 && query.length >= 2) query.copy(answer, 0, 0, 2);
      records.push(record(rng, transport, false, e, query), record(rng, transport, true, swapped(e), answer));
    } else {
      records.push(record(rng, transport, rng.chance(0.5), e, query));
    }
  }
  return { records };
}

/** Ring records as the ring buffer hands them over: an 8-byte header each, 8-byte aligned. */
export function ringChunk(records: { head: Buffer; payload: Buffer }[]): { buf: Buffer; bytes: number } {
  const parts: Buffer[] = [];
  for (const r of records) {
    const len = r.head.length + r.payload.length;
    const h = Buffer.alloc(8);
    h.writeUInt32LE(len, 0);
    parts.push(h, r.head, r.payload, Buffer.alloc(((len + 7) & ~7) - len));
  }
  const buf = Buffer.concat(parts);
  return { buf, bytes: buf.length };
}

function checkMessage(m: DnsMessage | undefined, msg: Buffer): void {
  if (msg.length < 12) {
    assert.equal(m, undefined);
    return;
  }
  assert.ok(m);
  assert.equal(m.id, msg.readUInt16BE(0));
  assert.equal(m.rcode, msg[3] & 0xf);
  assert.equal(m.isResponse, (msg[2] & 0x80) !== 0);
  if (m.name !== undefined) assert.equal(typeof m.name, 'string');
  if (m.qtype !== undefined) assert.ok(typeof m.qtype === 'string' && m.qtype.length > 0);
  for (const a of m.answers) {
    assert.ok(typeof a.name === 'string' && typeof a.data === 'string' && Number.isInteger(a.ttl) && a.ttl >= 0);
    assert.ok(a.type === 'A' || a.type === 'AAAA' || a.type === 'CNAME');
  }
  if (m.name !== undefined) {
    for (const x of resolvedAddresses(m.name, m.answers)) assert.ok(typeof x.ip === 'string' && x.ttl >= 0);
  }
}

export const dnsTarget: FuzzTarget<DnsInput> = {
  name: 'dns',
  describe: 'DNS payloads in dnsflow ring records: parseDnsMessage, per-query and learning handlers, their lines',
  generate: generateDns,
  run(input) {
    for (const rec of input.records) {
      const transport = rec.head[DNS_EVENT.proto] === 6 ? 'tcp' : 'udp';
      const msg = transport === 'tcp' ? rec.payload.subarray(2) : rec.payload;
      checkMessage(parseDnsMessage(rec.payload, transport), msg);
      checkMessage(parseDnsMessage(rec.payload, transport, () => false), msg);
    }
    const { buf, bytes } = ringChunk(input.records);
    const encoder = new LineEncoder({ host: 'fuzz', service: 'ebpf' });
    const emit = (points: Point[]) => {
      for (const p of points) checkLine(encoder.encode(p));
    };
    const cache = new DnsCache(64);
    new DnsflowPlugin({ includeLoopback: false, cgroup2: () => '', cache, perQuery: true }).processEvents(buf, bytes, emit);
    new DnsflowPlugin({ includeLoopback: false, cgroup2: () => '', cache }).processLearning(buf, bytes);
  },
  save: (input) => JSON.stringify({ records: input.records.map((r) => ({ head: r.head.toString('hex'), payload: r.payload.toString('hex') })) }, null, 1),
  load(text) {
    const o = JSON.parse(text) as { records: { head: string; payload: string }[] };
    return { records: o.records.map((r) => ({ head: Buffer.from(r.head, 'hex'), payload: Buffer.from(r.payload, 'hex') })) };
  },
};
