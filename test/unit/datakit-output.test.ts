// The DataKit output against a local HTTP server that behaves like DataKit.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DataKitOutput, reportLastError } from '../../src/output/datakit';
import type { Point } from '../../src/output/point';
import { FakeDataKit, startFakeDataKit } from '../helpers/fake-datakit';

const point = (measurement: string, n: number): Point => ({ measurement, tags: { host: 'h' }, fields: { n }, time: 1n });

let dk: FakeDataKit;
before(async () => (dk = await startFakeDataKit()));
after(() => dk.close());

test('network and logging points go to their endpoints, one request per category per flush', async () => {
  dk.requests.length = 0;
  const out = new DataKitOutput(dk.address);
  out.write('network', [point('netflow', 1), point('dnsflow', 2)]);
  out.write('logging', [point('bash', 3)]);
  await out.flush();
  assert.deepEqual(
    dk.requests.map((r) => [r.method, r.url, r.body]),
    [
      ['POST', '/v1/write/network?input=ebpf-net', 'netflow,host=h n=1i 1\ndnsflow,host=h n=2i 1'],
      ['POST', '/v1/write/logging?input=ebpf-bash', 'bash,host=h n=3i 1'],
    ],
  );
  await out.flush();
  assert.equal(dk.requests.length, 2, 'nothing queued: nothing sent');
  assert.deepEqual(out.stats(), { sent: 3, failed: 0, dropped: 0 });
});

test('failed posts are retried once DataKit answers again, without loss or duplicates', async () => {
  dk.requests.length = 0;
  dk.failNext = 1;
  const out = new DataKitOutput(dk.address);
  out.write('network', [point('netflow', 1)]);
  await out.flush(); // answered 500
  out.write('network', [point('netflow', 2)]);
  await out.flush();
  assert.equal(dk.requests.length, 2);
  assert.equal(dk.requests[1].body, 'netflow,host=h n=1i 1\nnetflow,host=h n=2i 1');
  assert.deepEqual(out.stats(), { sent: 2, failed: 1, dropped: 0 });
});

test('the retry queue is bounded and drops are counted', async () => {
  const out = new DataKitOutput('127.0.0.1:1', { maxQueuedPoints: 3, timeoutMs: 500 });
  out.write('network', [1, 2, 3, 4, 5].map((n) => point('netflow', n)));
  await out.flush(); // connection refused
  assert.deepEqual(out.stats(), { sent: 0, failed: 3, dropped: 2 });
});

test('large queues go out in batches, posted as soon as a batch is full, in order and without loss', async () => {
  dk.requests.length = 0;
  const out = new DataKitOutput(dk.address, { batchPoints: 10, maxQueuedPoints: 100 });
  // a full batch starts a post at once; what is written during it follows in later batches
  const m = (n: number) => ({ measurement: 'm', tags: {}, fields: { n }, time: BigInt(n) });
  out.write('network', Array.from({ length: 25 }, (_, i) => m(i)));
  out.write('network', [m(25)]);
  await out.flush();
  const bodies = dk.requests.map((r) => r.body.split('\n'));
  assert.deepEqual(bodies.map((b) => b.length), [10, 10, 6]);
  assert.deepEqual(bodies.flat(), Array.from({ length: 26 }, (_, i) => `m n=${i}i ${i}`));
  assert.deepEqual(out.stats(), { sent: 26, failed: 0, dropped: 0 });
});

test('reportLastError posts the message as JSON', async () => {
  dk.requests.length = 0;
  await reportLastError(dk.address, 'kernel has no "BTF"');
  assert.equal(dk.requests.length, 1);
  assert.equal(dk.requests[0].url, '/v1/lasterror');
  assert.deepEqual(JSON.parse(dk.requests[0].body), { input: 'ebpf', err_content: 'kernel has no "BTF"' });
  await reportLastError('127.0.0.1:1', 'unreachable: must not throw');
});
