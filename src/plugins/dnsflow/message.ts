// DNS message parsing. Header and question are read directly (every query
// and response needs them, and only them); dns-packet decodes the full message
// only when there are answers to learn from. A response cut short by the
// capture size still matches its query and reports its rcode.
import * as dnsPacket from 'dns-packet';
import { FNV_OFFSET, fnvByte, RecentStrings } from '../recent-strings';

export interface DnsAnswer {
  name: string;
  type: string;
  ttl: number;
  data: string; // address for A/AAAA, target for CNAME
}

export interface DnsMessage {
  id: number;
  isResponse: boolean;
  rcode: number;
  /** First question, when it could be read. */
  name?: string;
  qtype?: string;
  answers: DnsAnswer[];
  /** Only the header could be read (truncated capture or malformed body). */
  partial: boolean;
}

const HEADER = 12;
/** The smallest question (root name, type, class) and resource record (root name, type, class, TTL, length). */
const MIN_QUESTION = 5;
const MIN_RECORD = 11;

/**
 * Parses a DNS message; for TCP, `payload` starts with the 2-byte length.
 * Returns undefined when not even the header is there. The answers of a
 * successful response are decoded when `wantAnswers` says so for its question.
 */
export function parseDnsMessage(
  payload: Buffer,
  transport: 'udp' | 'tcp',
  wantAnswers: (name: string, qtype: string) => boolean = () => true,
): DnsMessage | undefined {
  const msg = transport === 'tcp' ? payload.subarray(2) : payload;
  if (msg.length < HEADER) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const base: DnsMessage = { id, isResponse: (flags & 0x8000) !== 0, rcode: flags & 0xf, answers: [], partial: false };
  // only a successful response with answers has anything more to give
  if (!base.isResponse || base.rcode !== 0 || msg.readUInt16BE(6) === 0) return readQuestion(msg, base);
  // ... and only if the caller has not just learnt them: decoding answers is the expensive part
  const question = readQuestion(msg, base);
  if (!question.partial && question.name !== undefined && !wantAnswers(question.name, question.qtype!)) return question;
  // dns-packet reads as many records as the counts say, past the end of the
  // message: 62 bytes claiming 60,000 records cost 80 ms. A question takes at
  // least 5 bytes and a record 11, and only the answers are needed: counts that
  // cannot fit are a malformed or cut message, and the other sections are not read.
  if (msg.readUInt16BE(4) * MIN_QUESTION + msg.readUInt16BE(6) * MIN_RECORD > msg.length - HEADER) {
    question.partial = true;
    return question;
  }
  const questionAndAnswers = Buffer.from(msg);
  questionAndAnswers.writeUInt32BE(0, 8); // no authority or additional records
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(questionAndAnswers);
  } catch {
    question.partial = true;
    return question;
  }
  const q = packet.questions?.[0];
  const answers: DnsAnswer[] = [];
  for (const a of packet.answers ?? []) {
    if ((a.type === 'A' || a.type === 'AAAA' || a.type === 'CNAME') && typeof a.data === 'string') {
      answers.push({ name: a.name, type: a.type, ttl: a.ttl ?? 0, data: a.data });
    }
  }
  base.name = q?.name;
  base.qtype = q?.type;
  base.answers = answers;
  base.partial = false;
  return base;
}

/** Reads the first question into `base` (which it returns); one that cannot be read marks it partial. */
function readQuestion(msg: Buffer, base: DnsMessage): DnsMessage {
  if (msg.readUInt16BE(4) < 1) return base;
  // the labels' bytes with dots between them, made into text once
  const text = nameScratch;
  let length = 0;
  let hash = FNV_OFFSET; // of the text, for the table of recent names
  let off = HEADER;
  while (off < msg.length) {
    const n = msg[off];
    if (n === 0) {
      off++;
      if (off + 2 > msg.length) break;
      const qtype = msg.readUInt16BE(off);
      base.name = recentNames.get(text, 0, length, hash);
      base.qtype = qtypeName(qtype);
      return base;
    }
    if (n > 63 || off + 1 + n > msg.length || length + 1 + n > text.length) break; // compression never appears in a first question
    if (length) {
      text[length++] = 0x2e; // '.'
      hash = fnvByte(hash, 0x2e);
    }
    // byte by byte: a label is short, and its bytes go into the hash too
    for (let i = off + 1; i <= off + n; i++) {
      const c = msg[i];
      text[length++] = c;
      hash = fnvByte(hash, c);
    }
    off += 1 + n;
  }
  base.partial = true;
  return base;
}

/** A question name's text as it is put together: at most 255 bytes on the wire, fewer as text. */
const nameScratch = Buffer.alloc(256);
/** Recent question names: a query's name comes again in its answer, and most names are asked again and again. */
const recentNames = new RecentStrings('latin1');

/** A query type's mnemonic, or its number. */
export function qtypeName(qtype: number): string {
  return QTYPES[qtype] ?? String(qtype);
}

const QTYPES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 13: 'HINFO', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  43: 'DS', 48: 'DNSKEY', 52: 'TLSA', 64: 'SVCB', 65: 'HTTPS', 99: 'SPF', 252: 'AXFR', 255: 'ANY', 257: 'CAA',
};

/**
 * Addresses the query name resolved to, following CNAME chains in the
 * answer section, with the smallest TTL along the way.
 */
export function resolvedAddresses(qname: string, answers: DnsAnswer[]): { ip: string; ttl: number }[] {
  if (!answers.length) return [];
  const lower = (s: string) => s.toLowerCase().replace(/\.$/, '');
  const ttlOf = new Map<string, number>([[lower(qname), Infinity]]);
  // CNAMEs usually come in order, but follow them until nothing changes
  for (let changed = true, rounds = 0; changed && rounds < 16; rounds++) {
    changed = false;
    for (const a of answers) {
      const from = ttlOf.get(lower(a.name));
      if (a.type === 'CNAME' && from !== undefined && !ttlOf.has(lower(a.data))) {
        ttlOf.set(lower(a.data), Math.min(from, a.ttl));
        changed = true;
      }
    }
  }
  const out: { ip: string; ttl: number }[] = [];
  for (const a of answers) {
    const via = ttlOf.get(lower(a.name));
    if ((a.type === 'A' || a.type === 'AAAA') && via !== undefined) out.push({ ip: a.data, ttl: Math.min(via, a.ttl) });
  }
  return out;
}
