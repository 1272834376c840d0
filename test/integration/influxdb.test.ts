// Every kind of line the project can produce is accepted by a real InfluxDB
// 1.x and reads back with the values we meant.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { encodePoint, encodePoints } from '../../src/output/lineprotocol';
import { unixNs, type Point } from '../../src/output/point';
import { InfluxDB, startInfluxDB } from '../helpers/influxdb';

const T0 = 1_700_000_000_000_000_000n;

interface Series {
  name: string;
  columns: string[];
  values: unknown[][];
}

/** Reads back one point per measurement as a column → value record. */
async function readBack(db: InfluxDB, measurement: string): Promise<Record<string, unknown>[]> {
  const q = `SELECT * FROM "${measurement.replace(/["\\]/g, '\\$&')}"`;
  const res = (await db.query('lp', q)) as { results: { series?: Series[]; error?: string }[] };
  const series = res.results[0].series ?? [];
  return series.flatMap((s) => s.values.map((row) => Object.fromEntries(s.columns.map((c, i) => [c, row[i]]))));
}

describe('line protocol against InfluxDB 1.x', () => {
  let db: InfluxDB;
  before(async () => {
    db = await startInfluxDB();
    await db.query('lp', 'CREATE DATABASE lp');
  });
  after(() => db?.stop());

  // Shapes of every measurement of SPEC §4, with realistic values.
  const product: Point[] = [
    {
      measurement: 'netflow',
      tags: {
        host: 'node-1', service: 'ebpf', source: 'netflow', direction: 'outgoing', transport: 'tcp', family: 'IPv6',
        pid: '4242', process_name: 'curl', src_ip: '2001:db8::1', src_port: '*', src_ip_type: 'other',
        dst_ip: '2001:db8::2', dst_port: '443', dst_ip_type: 'other', dst_domain: 'example.com', sub_source: 'K8s',
        dst_k8s_pod_name: 'N/A',
      },
      fields: { bytes_read: 9007199254740991, bytes_written: 12n, retransmits: 0, rtt: 153, rtt_var: 20, tcp_closed: 1, tcp_established: 1 },
      time: T0,
    },
    {
      measurement: 'dnsflow',
      tags: { host: 'node-1', source: 'dnsflow', dst_ip: '198.51.100.53', dst_port: '53', src_ip: '198.51.100.1', src_port: '40000', family: 'IPv4', transport: 'udp', domain: 'a.example.org', qtype: 'AAAA' },
      fields: { rcode: 3, resp_time: 1234567, timeout: false },
      time: T0 + 1n,
    },
    {
      measurement: 'httpflow',
      tags: { host: 'node-1', source: 'httpflow', direction: 'incoming', pid: '1' },
      fields: { http_version: '1.1', latency: 250000, method: 'GET', path: '/a b/"quoted"/back\\slash', status_code: 404 },
      time: T0 + 2n,
    },
    {
      measurement: 'bash',
      tags: { host: 'node-1', source: 'bash' },
      fields: { cmd: 'echo "hi"\tthere é ', pid: '77', user: 'root', message: '2026-01-01T00:00:00Z pid:`77` user:`root` cmd:`echo "hi"`' },
      time: T0 + 3n,
    },
  ];

  test('the product measurements are accepted and read back exactly', async () => {
    const res = await db.write('lp', encodePoints(product));
    assert.equal(res.status, 204, res.text);
    const [netflow] = await readBack(db, 'netflow');
    assert.equal(netflow.src_ip, '2001:db8::1');
    assert.equal(netflow.src_port, '*');
    assert.equal(netflow.bytes_read, 9007199254740991);
    assert.equal(netflow.bytes_written, 12);
    assert.equal(netflow.time, Number(T0)); // JSON loses the last digits: compare as numbers
    const [dns] = await readBack(db, 'dnsflow');
    assert.equal(dns.rcode, 3);
    assert.equal(dns.timeout, false);
    assert.equal(dns.qtype, 'AAAA');
    const [http] = await readBack(db, 'httpflow');
    assert.equal(http.path, '/a b/"quoted"/back\\slash');
    assert.equal(http.http_version, '1.1');
    const [bash] = await readBack(db, 'bash');
    assert.equal(bash.cmd, 'echo "hi"\tthere é ');
    assert.equal(bash.message, product[3].fields.message);
  });

  // Values that stress every escaping rule; newlines come back as the two characters \n.
  const nasty = [
    'plain', 'with space', 'comma,here', 'equals=here', 'quote"here', 'back\\slash', 'trailing\\',
    'double\\\\', '\\', ' lead', 'trail ', 'uni ☃ 中文', 'new\nline', 'cr\rlf', 'all ,="\\ mixed\\',
  ];
  const shown = (s: string) => s.replace(/\n/g, '\\n').replace(/\r/g, '\\r');

  test('nasty tag values, field strings, keys and measurement names round-trip', async () => {
    const points: Point[] = nasty.map((v, i) => ({
      measurement: 'nasty, m',
      tags: { idx: String(i), 'tag key,=': v },
      fields: { 'field key,=': v, n: i },
      time: T0 + BigInt(i),
    }));
    const body = encodePoints(points);
    assert.equal(body.split('\n').length, nasty.length, 'one line per point: no raw newline');
    const res = await db.write('lp', body);
    assert.equal(res.status, 204, `${res.text}\n${body}`);
    const rows = await readBack(db, 'nasty, m');
    assert.equal(rows.length, nasty.length);
    for (const row of rows) {
      const v = nasty[Number(row.idx)];
      assert.equal(row['field key,='], shown(v), `string field ${JSON.stringify(v)}`);
      // a tag value cannot end in a backslash in line protocol: it gains one trailing space
      const tag = shown(v);
      assert.equal(row['tag key,='], tag.endsWith('\\') ? `${tag} ` : tag, `tag ${JSON.stringify(v)}`);
    }
  });

  test('every line is accepted one by one (no batch masking)', async () => {
    for (const p of product) {
      const res = await db.write('lp', encodePoint({ ...p, time: unixNs(p.time) + 100n }));
      assert.equal(res.status, 204, `${res.text}\n${encodePoint(p)}`);
    }
  });
});
