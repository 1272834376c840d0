// The TypeScript decoders must agree with the C structs byte for byte: read
// the layout from the compiled object's BTF and compare.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { bpfObjectPath } from '../../src/paths';
import { BASH_CONFIG, BASH_EVENT } from '../../src/plugins/bash/decode';
import { DNS_EVENT, DNS_QUERY, DNS_QUERY_KEY, DNS_SERIES_KEY, DNSFLOW_CONFIG } from '../../src/plugins/dnsflow/decode';
import { HIST_BUCKETS } from '../../src/aggregate/histogram';
import { LATENCY_SERIES, SERIES_CONTROL } from '../../src/aggregate/series';
import { HTTP_CAPTURE, HTTP_EVENT, HTTP_PATH_EVENT, HTTP_SERIES_KEY, HTTPFLOW_CONFIG } from '../../src/plugins/httpflow/decode';
import { CLOSED_KEY, CLOSED_SUM, CONN_STATS, NETFLOW_CONFIG, NETFLOW_CONTROL, TUPLE, UDP_KEY } from '../../src/plugins/netflow/decode';

interface BtfStruct {
  size: number;
  members: Record<string, number>; // byte offsets
}

function btfStructs(object: string): Map<string, BtfStruct> {
  const text = execFileSync('bpftool', ['btf', 'dump', 'file', object], { encoding: 'utf8' });
  const structs = new Map<string, BtfStruct>();
  let current: BtfStruct | undefined;
  for (const line of text.split('\n')) {
    const head = /^\[\d+\] STRUCT '(\w+)' size=(\d+)/.exec(line);
    if (head) {
      current = { size: Number(head[2]), members: {} };
      structs.set(head[1], current);
      continue;
    }
    const member = /^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)/.exec(line);
    if (member && current) current.members[member[1]] = Number(member[2]) / 8;
    else if (!line.startsWith('\t')) current = undefined;
  }
  return structs;
}

function assertLayout(s: BtfStruct | undefined, expected: Record<string, number>, name: string): void {
  assert.ok(s, `struct ${name} is in the object's BTF`);
  const { size, ...offsets } = expected;
  assert.equal(s.size, size, `sizeof(struct ${name})`);
  for (const [field, off] of Object.entries(offsets)) {
    assert.equal(s.members[field], off, `offsetof(struct ${name}, ${field})`);
  }
}

test('netflow structs match the decoder', () => {
  const structs = btfStructs(bpfObjectPath('netflow'));
  assertLayout(structs.get('conn_tuple'), TUPLE, 'conn_tuple');
  assertLayout(structs.get('conn_stats'), CONN_STATS, 'conn_stats');
  assertLayout(structs.get('netflow_config'), NETFLOW_CONFIG, 'netflow_config');
  assertLayout(structs.get('netflow_control'), NETFLOW_CONTROL, 'netflow_control');
  assertLayout(structs.get('closed_key'), CLOSED_KEY, 'closed_key');
  assertLayout(structs.get('closed_sum'), CLOSED_SUM, 'closed_sum');
});

test('netflow UDP key matches', () => {
  assertLayout(btfStructs(bpfObjectPath('netflow')).get('udp_key'), UDP_KEY, 'udp_key');
});

test('bash structs match the decoder', () => {
  const structs = btfStructs(bpfObjectPath('bash'));
  assertLayout(structs.get('bash_event'), BASH_EVENT, 'bash_event');
  assertLayout(structs.get('bash_config'), BASH_CONFIG, 'bash_config');
});

test('dnsflow structs match the decoder', () => {
  const structs = btfStructs(bpfObjectPath('dnsflow'));
  assertLayout(structs.get('dns_event'), DNS_EVENT, 'dns_event');
  assertLayout(structs.get('dnsflow_config'), DNSFLOW_CONFIG, 'dnsflow_config');
  assertLayout(structs.get('dns_series_key'), DNS_SERIES_KEY, 'dns_series_key');
  assertLayout(structs.get('dns_query_key'), DNS_QUERY_KEY, 'dns_query_key');
  assertLayout(structs.get('dns_query'), DNS_QUERY, 'dns_query');
  assertLayout(structs.get('latency_series'), { ...LATENCY_SERIES, size: LATENCY_SERIES.hist + 4 * HIST_BUCKETS }, 'latency_series');
});

test('httpflow structs match the decoder', () => {
  const structs = btfStructs(bpfObjectPath('httpflow'));
  assertLayout(structs.get('http_event'), { ...HTTP_EVENT, size: HTTP_EVENT.data + HTTP_CAPTURE }, 'http_event');
  assertLayout(structs.get('httpflow_config'), HTTPFLOW_CONFIG, 'httpflow_config');
  assertLayout(structs.get('http_series_key'), HTTP_SERIES_KEY, 'http_series_key');
  assertLayout(structs.get('latency_series'), { ...LATENCY_SERIES, size: LATENCY_SERIES.hist + 4 * HIST_BUCKETS }, 'latency_series');
  assertLayout(structs.get('http_path_event'), { ...HTTP_PATH_EVENT, size: HTTP_PATH_EVENT.data + HTTP_CAPTURE }, 'http_path_event');
  assertLayout(structs.get('series_control'), SERIES_CONTROL, 'series_control');
  // httpflow reads netflow's connection table: both objects must agree on the entry
  assertLayout(structs.get('conn_stats'), CONN_STATS, 'conn_stats');
});
