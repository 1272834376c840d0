import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import { DnsMatcher, DnsFlowKey } from '../../src/plugins/dnsflow/matcher';
import { parseDnsMessage, resolvedAddresses } from '../../src/plugins/dnsflow/message';
import { LineEncoder } from '../../src/output/lineprotocol';
import { dnsQueryPoint, QueryTagsCache } from '../../src/plugins/dnsflow/plugin';
import { EventClock, WallClock } from '../../src/timefmt';

const query = (id: number, name = 'www.example.test', type: dnsPacket.RecordType = 'A') =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });

const response = (id: number, rcode: number, answers: dnsPacket.Answer[] = []) => {
  const buf = dnsPacket.encode({
    type: 'response',
    id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name: 'www.example.test' }],
    answers,
  });
  buf.writeUInt16BE((buf.readUInt16BE(2) & 0xfff0) | rcode, 2);
  return buf;
};

test('parses queries and responses over UDP and TCP', () => {
  const q = parseDnsMessage(query(7, 'a.example', 'AAAA'), 'udp')!;
  assert.deepEqual(q, { id: 7, isResponse: false, rcode: 0, name: 'a.example', qtype: 'AAAA', answers: [], partial: false });
  const r = response(9, 3);
  const tcp = Buffer.concat([Buffer.from([r.length >> 8, r.length & 0xff]), r]);
  const m = parseDnsMessage(tcp, 'tcp')!;
  assert.equal(m.id, 9);
  assert.equal(m.isResponse, true);
  assert.equal(m.rcode, 3);
});

test('a response cut by the capture size still gives id, rcode and question', () => {
  const full = response(11, 0, Array.from({ length: 40 }, (_, i) => ({ type: 'A' as const, name: 'www.example.test', ttl: 30, data: `198.51.100.${i}` })));
  assert.ok(full.length > 512);
  const m = parseDnsMessage(full.subarray(0, 512), 'udp')!;
  assert.equal(m.id, 11);
  assert.equal(m.rcode, 0);
  assert.equal(m.partial, true);
  assert.equal(m.name, 'www.example.test');
  assert.equal(m.qtype, 'A');
});

test('garbage is rejected or parsed, never thrown: fuzzing with a fixed seed', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const samples = [query(1), response(2, 0, [{ type: 'CNAME', name: 'www.example.test', ttl: 5, data: 'x.example' }, { type: 'A', name: 'x.example', ttl: 9, data: '198.51.100.1' }])];
  let parsed = 0;
  for (let i = 0; i < 20000; i++) {
    const base = Buffer.from(samples[i % samples.length]);
    const mode = i % 4;
    let buf: Buffer;
    if (mode === 0) buf = base.subarray(0, Math.floor(rand() * (base.length + 1))); // truncation
    else if (mode === 1) {
      buf = base; // bit flips
      for (let k = 0; k < 1 + rand() * 6; k++) buf[Math.floor(rand() * buf.length)] ^= 1 << Math.floor(rand() * 8);
    } else if (mode === 2) buf = Buffer.from(Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256)));
    else {
      buf = base; // pointer loops and huge counts
      buf.writeUInt16BE(0xffff, 4 + 2 * Math.floor(rand() * 4));
      if (buf.length > 13) buf[12] = 0xc0 | Math.floor(rand() * 4);
    }
    for (const transport of ['udp', 'tcp'] as const) {
      const m = parseDnsMessage(buf, transport);
      if (m) {
        parsed++;
        assert.ok(m.id >= 0 && m.id <= 0xffff && m.rcode >= 0 && m.rcode <= 15);
        assert.ok(Array.isArray(m.answers));
      }
    }
  }
  assert.ok(parsed > 1000);
});

test('answers map to the queried name through CNAME chains, with the smallest TTL', () => {
  const answers = [
    { name: 'www.example.test', type: 'CNAME', ttl: 300, data: 'edge.example.net' },
    { name: 'edge.example.net', type: 'CNAME', ttl: 60, data: 'node7.example.net' },
    { name: 'node7.example.net', type: 'A', ttl: 120, data: '198.51.100.7' },
    { name: 'node7.example.net', type: 'AAAA', ttl: 30, data: '2001:db8::7' },
    { name: 'unrelated.example', type: 'A', ttl: 30, data: '198.51.100.8' },
  ];
  assert.deepEqual(resolvedAddresses('WWW.example.test.', answers), [
    { ip: '198.51.100.7', ttl: 60 },
    { ip: '2001:db8::7', ttl: 30 },
  ]);
});

const key: DnsFlowKey = { transport: 'udp', family: 'IPv4', clientIp: '198.51.100.1', clientPort: 40000, serverIp: '198.51.100.2', serverPort: 53 };

test('matching by addresses, ports, transport and id; duplicates and strays counted', () => {
  const m = new DnsMatcher();
  const q = parseDnsMessage(query(5), 'udp')!;
  m.query(key, q, 1000);
  m.query(key, q, 1500); // a retry
  assert.equal(m.response({ ...key, clientPort: 40001 }, parseDnsMessage(response(5, 0), 'udp')!, 2000), undefined);
  assert.equal(m.response({ ...key, transport: 'tcp' }, parseDnsMessage(response(5, 0), 'udp')!, 2000), undefined);
  assert.equal(m.response(key, parseDnsMessage(response(6, 0), 'udp')!, 2000), undefined);
  const r = m.response(key, parseDnsMessage(response(5, 2), 'udp')!, 3000)!;
  assert.equal(r.rcode, 2);
  assert.equal(r.respTimeNs, 2000, 'from the first query');
  assert.equal(r.domain, 'www.example.test');
  assert.equal(m.response(key, parseDnsMessage(response(5, 0), 'udp')!, 4000), undefined, 'answered once');
  assert.deepEqual(m.counts, { queries: 1, answered: 1, timeouts: 0, unmatched_responses: 4, duplicate_queries: 1, pending_overflow: 0 });
});

test('the same client port and id from other addresses: each query its own, answered and timed out in order', () => {
  const m = new DnsMatcher();
  const other = { ...key, clientIp: '198.51.100.9' };
  const third = { ...key, serverIp: '198.51.100.3' };
  m.query(key, parseDnsMessage(query(7), 'udp')!, 1000);
  m.query(other, parseDnsMessage(query(7), 'udp')!, 2000);
  m.query(third, parseDnsMessage(query(7), 'udp')!, 3000);
  m.query(other, parseDnsMessage(query(7), 'udp')!, 3500); // a retry of the second
  assert.equal(m.size, 3);
  assert.equal(m.response({ ...key, serverPort: 5353 }, parseDnsMessage(response(7, 0), 'udp')!, 4000), undefined, 'no query to that server port');
  assert.equal(m.response(other, parseDnsMessage(response(7, 3), 'udp')!, 5000)?.respTimeNs, 3000);
  assert.equal(m.response(other, parseDnsMessage(response(7, 3), 'udp')!, 5000), undefined, 'answered once');
  const timedOut = m.expire(6_000_004_000);
  assert.deepEqual(timedOut.map((r) => [r.clientIp, r.serverIp]), [
    ['198.51.100.1', '198.51.100.2'],
    ['198.51.100.1', '198.51.100.3'],
  ]);
  assert.deepEqual(m.counts, { queries: 3, answered: 1, timeouts: 2, unmatched_responses: 2, duplicate_queries: 1, pending_overflow: 0 });
  // the first query's number freed by its answer: a retry of the one that waited aside is still a retry
  m.query(key, parseDnsMessage(query(8), 'udp')!, 7_000_000_000);
  m.query(other, parseDnsMessage(query(8), 'udp')!, 7_000_000_001);
  assert.equal(m.response(key, parseDnsMessage(response(8, 0), 'udp')!, 7_000_000_002)?.clientIp, '198.51.100.1');
  m.query(other, parseDnsMessage(query(8), 'udp')!, 7_000_000_003);
  assert.equal(m.counts.duplicate_queries, 2);
  assert.equal(m.response(other, parseDnsMessage(response(8, 0), 'udp')!, 7_000_000_005)?.respTimeNs, 4, 'from the first send');
  assert.equal(m.size, 0, 'nothing left to time out');
});

test('a query series keeps one tags object; any other end, port, type or name makes another', () => {
  const cache = new QueryTagsCache();
  const r = { ...key, queryNs: 0, domain: 'www.example.test.', qtype: 'A' };
  const tags = cache.get(r);
  assert.equal(tags.domain, 'www.example.test');
  assert.equal(cache.get({ ...r, queryNs: 5, rcode: 0 }), tags, 'the same series');
  for (const other of [{ clientPort: 40001 }, { clientIp: '198.51.100.9' }, { serverIp: '198.51.100.3' }, { serverPort: 5353 }, { qtype: 'AAAA' }, { domain: 'nx.example.test.' }, { transport: 'tcp' as const }]) {
    const t = cache.get({ ...r, ...other });
    assert.notEqual(t, tags, JSON.stringify(other));
    assert.deepEqual(cache.get({ ...r, ...other }), t);
  }
  // a client asking from a new port each time: the name keeps only its latest series
  for (let port = 1; port <= 40; port++) cache.get({ ...r, clientPort: port });
  assert.notEqual(cache.get(r), tags, 'the oldest series of a busy name made again');
  assert.deepEqual(cache.get(r), tags);
});

test('unanswered queries time out once, after 6 s; the table is bounded', () => {
  const m = new DnsMatcher(2);
  m.query(key, parseDnsMessage(query(1), 'udp')!, 0);
  m.query({ ...key, clientPort: 1 }, parseDnsMessage(query(2), 'udp')!, 1_000_000_000);
  m.query({ ...key, clientPort: 2 }, parseDnsMessage(query(3), 'udp')!, 1_000_000_000);
  assert.equal(m.counts.pending_overflow, 1);
  assert.deepEqual(m.expire(5_999_999_999), []);
  const out = m.expire(6_000_000_000);
  assert.equal(out.length, 1);
  assert.equal(out[0].rcode, undefined);
  assert.deepEqual(m.expire(6_000_000_000), [], 'reported once');
  assert.equal(m.expire(7_000_000_000).length, 1);
  assert.equal(m.size, 0);
});

test('a point per query: answered and timed out, through the encoder with the common tags sorted in', () => {
  // kernel times count from when the plugin's clock was made, at this wall-clock time
  const clock = new EventClock(new WallClock(() => 1_700_000_000_000, () => 5_000_000_000n));
  const enc = new LineEncoder({ host: 'h1', service: 'ebpf', zone: 'a b', src_port: 'overridden' });
  assert.equal(
    enc.encode(dnsQueryPoint({ ...key, queryNs: 10, domain: 'www.example.test.', qtype: 'A', rcode: 3, respTimeNs: 250 }, clock)),
    'dnsflow,domain=www.example.test,dst_ip=198.51.100.2,dst_port=53,family=IPv4,host=h1,qtype=A,service=ebpf,source=dnsflow,' +
      'src_ip=198.51.100.1,src_port=overridden,transport=udp,zone=a\\ b rcode=3i,resp_time=250i,timeout=false 1700000000000000010',
  );
  assert.equal(
    new LineEncoder({}).encode(dnsQueryPoint({ ...key, queryNs: 1_500_000_000, domain: 'a,b', qtype: 'A' }, clock)),
    'dnsflow,domain=a\\,b,dst_ip=198.51.100.2,dst_port=53,family=IPv4,qtype=A,source=dnsflow,src_ip=198.51.100.1,src_port=40000,transport=udp timeout=true 1700000001500000000',
  );
});

test('answers are decoded for the DNS cache only when the caller wants them', () => {
  const r = response(7, 0, [{ type: 'A', name: 'www.example.test', ttl: 60, data: '198.51.100.9' }]);
  const asked: string[] = [];
  const skipped = parseDnsMessage(r, 'udp', (name, qtype) => (asked.push(`${name} ${qtype}`), false))!;
  assert.deepEqual(asked, ['www.example.test A']);
  assert.deepEqual([skipped.rcode, skipped.name, skipped.qtype, skipped.answers, skipped.partial], [0, 'www.example.test', 'A', [], false]);
  assert.equal(parseDnsMessage(r, 'udp', () => true)!.answers[0].data, '198.51.100.9');
});

test('record counts past the end of the message cost nothing: only the question and answers are read', () => {
  const answer = { type: 'A' as const, name: 'www.example.test', ttl: 60, data: '198.51.100.9' };
  // 60,000 additional records claimed in a 66-byte message: never read, the answer is
  const extra = response(11, 0, [answer]);
  extra.writeUInt16BE(60_000, 10);
  // 60,000 answers claimed: they cannot fit, so none is read
  const answers = response(12, 0, [answer]);
  answers.writeUInt16BE(60_000, 6);
  const began = performance.now();
  for (let i = 0; i < 100; i++) {
    const a = parseDnsMessage(extra, 'udp')!;
    assert.deepEqual([a.id, a.name, a.answers, a.partial], [11, 'www.example.test', [{ name: 'www.example.test', type: 'A', ttl: 60, data: '198.51.100.9' }], false]);
    const b = parseDnsMessage(answers, 'udp')!;
    assert.deepEqual([b.id, b.rcode, b.name, b.qtype, b.answers, b.partial], [12, 0, 'www.example.test', 'A', [], true]);
  }
  // each took tens of milliseconds when every claimed record was decoded
  assert.ok(performance.now() - began < 500, `${performance.now() - began} ms`);
});
