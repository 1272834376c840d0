// The DataKit output against a local HTTP server that behaves like DataKit:
// endpoints and batches, and delivery (SPEC §3): retries with backoff through the
// buffer dir, refused batches dropped without blocking the rest, restarts, the bound.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { configureLog } from '../../src/log';
import { DataKitOptions, DataKitOutput, reportLastError } from '../../src/output/datakit';
import type { Point } from '../../src/output/point';
import { FakeDataKit, startFakeDataKit } from '../helpers/fake-datakit';

const point = (measurement: string, n: number): Point => ({ measurement, tags: { host: 'h' }, fields: { n }, time: 1n });
const m = (n: number): Point => ({ measurement: 'm', tags: {}, fields: { n }, time: BigInt(n) });
const lineOf = (n: number) => `m n=${n}i ${n}`;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-dkout-'));
const logFile = path.join(root, 'log');
let dk: FakeDataKit;
let bufferDir: string;
let dirs = 0;
before(async () => {
  dk = await startFakeDataKit();
  configureLog('debug', logFile);
});
after(async () => {
  await dk.close();
  fs.rmSync(root, { recursive: true, force: true });
});
beforeEach(async () => {
  dk.requests.length = 0;
  dk.failNext = 0;
  dk.refuse = undefined;
  bufferDir = path.join(root, `buf-${++dirs}`);
  fs.writeFileSync(logFile, '');
});

const output = (opts: Partial<DataKitOptions> = {}) =>
  new DataKitOutput(dk.address, { bufferDir, bufferMaxBytes: 2 ** 20, maxRetryMs: 100, closeGraceMs: 500, ...opts });
const segmentFiles = () => ['network', 'logging'].flatMap((c) => (fs.existsSync(path.join(bufferDir, c)) ? fs.readdirSync(path.join(bufferDir, c)) : []));
const logged = () => fs.readFileSync(logFile, 'utf8');

/** Waits until `cond` holds (retries run on timers). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(20)) if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
}

test('network and logging points go to their endpoints, one request per category per flush; no disk', async () => {
  const out = output();
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
  await out.close();
  assert.deepEqual(out.stats(), { sent: 3, failed: 0, dropped: 0, dropped_full: 0, rejected: 0, corrupt: 0, unencodable: 0, buffered: 0 });
  assert.equal(fs.existsSync(bufferDir), false, 'DataKit took everything at once: the buffer dir was never made');
});

test('large queues go out in batches, posted as soon as a batch is full, in order and without loss', async () => {
  const out = output({ batchPoints: 10 });
  // a full batch starts a post at once; what is written during it follows in later batches
  out.write('network', range(0, 25).map(m));
  out.write('network', [m(25)]);
  await out.flush();
  assert.deepEqual(dk.requests.map((r) => r.body.split('\n').length), [10, 10, 6]);
  assert.deepEqual(dk.lines(), range(0, 26).map(lineOf));
  assert.equal(out.stats().sent, 26);
});

test('a failed post: its batch and the ones behind it wait on disk and are retried in order, once each', async () => {
  dk.failNext = 2;
  const out = output();
  out.write('network', [m(1)]);
  await out.flush(); // answered 500: waits for a retry
  assert.deepEqual([out.stats().failed, out.stats().buffered], [1, 1]);
  assert.ok(segmentFiles().some((f) => f.endsWith('.seg')), 'the failed batch went to disk');
  out.write('network', [m(2)]);
  await out.flush(); // waits for the retry: not posted now
  assert.equal(dk.requests.length, 1);
  await until(() => out.stats().sent === 2, 'retried until taken');
  assert.deepEqual(dk.lines(), [lineOf(1), lineOf(2)]);
  assert.deepEqual(dk.requests.map((r) => r.status), [500, 500, 200, 200]);
  assert.deepEqual(out.stats(), { sent: 2, failed: 2, dropped: 0, dropped_full: 0, rejected: 0, corrupt: 0, unencodable: 0, buffered: 0 });
  assert.deepEqual(segmentFiles(), [], 'delivered: the files are gone');
  assert.equal((logged().match(/WARN datakit: network post to .* failed: HTTP 500/g) ?? []).length, 1, 'one warning per outage');
  assert.match(logged(), /INFO datakit: 127\.0\.0\.1:\d+ takes network points again/);
  await out.close();
});

test('408, 429 and 503 are retried; a 400 drops the batch with DataKit\'s answer, and the next goes', async () => {
  const answers = [408, 429, 503, 400];
  dk.refuse = (r) => {
    const status = answers.shift();
    return status ? [status, status === 400 ? `{"error":"invalid line protocol: ${r.body.split('\n')[0]}" ${'x'.repeat(400)}}` : 'busy'] : undefined;
  };
  const out = output({ batchPoints: 2 });
  out.write('network', [1, 2, 3, 4, 5].map(m));
  await until(() => out.stats().buffered === 0, 'all dealt with');
  // the first batch was retried through 408, 429 and 503, then refused
  assert.deepEqual(dk.requests.map((r) => r.status), [408, 429, 503, 400, 200, 200]);
  assert.deepEqual(dk.lines(), [3, 4, 5].map(lineOf));
  assert.deepEqual(out.stats(), { sent: 3, failed: 3, dropped: 0, dropped_full: 0, rejected: 2, corrupt: 0, unencodable: 0, buffered: 0 });
  const refused = logged().split('\n').filter((l) => l.includes('refused'));
  assert.equal(refused.length, 1);
  assert.match(refused[0], /WARN datakit: network batch of 2 points refused, dropped: HTTP 400: \{"error":"invalid line protocol: m n=1i 1" x+\.\.\.$/);
  assert.ok(refused[0].length < 450, 'the answer is cut short');
  await out.close();
});

test('backoff: retries of an unreachable DataKit come further and further apart', async () => {
  await dk.down();
  try {
    // 1 s, then 2 s, each with jitter (half to all of it)
    const out = output({ maxRetryMs: 60_000 });
    out.write('network', [m(1)]);
    await out.flush();
    await sleep(2300);
    const failed = out.stats().failed;
    assert.ok(failed >= 2 && failed <= 3, `first post, then retries at 0.5-1 s and 1.5-3 s: ${failed}`);
    await out.close();
  } finally {
    await dk.up();
  }
});

test('a restart delivers what the last run left first, then the new points, in order', async () => {
  await dk.down();
  const first = output({ batchPoints: 3 });
  first.write('network', range(0, 7).map(m));
  first.write('logging', [point('bash', 1)]);
  await first.flush();
  first.write('network', range(7, 10).map(m)); // during the outage: straight to disk
  await first.close();
  assert.match(logged(), /datakit: 11 points kept in .* for the next start/);
  assert.equal(first.stats().buffered, 11);

  await dk.up();
  const second = output({ batchPoints: 3 });
  assert.match(logged(), /10 network points left in .* by an earlier run: sending them first/);
  second.write('network', [m(10)]);
  await second.flush();
  await until(() => second.stats().sent === 12, 'everything delivered');
  assert.deepEqual(dk.lines(), range(0, 11).map(lineOf));
  assert.deepEqual(dk.lines('/v1/write/logging?input=ebpf-bash'), ['bash,host=h n=1i 1']);
  assert.deepEqual(segmentFiles(), []);
  await second.close();
});

test('close() posts within its grace, and leaves the rest on disk when DataKit is away', async () => {
  const out = output();
  out.write('network', [m(1), m(2)]);
  await out.close();
  assert.deepEqual(dk.lines(), [lineOf(1), lineOf(2)], 'DataKit there: sent before exiting');
  assert.equal(fs.existsSync(bufferDir), false);
});

test('past the bound the oldest batches are dropped, counted in points; the newest arrive in order', async () => {
  await dk.down();
  // 10 batches of 5 lines "m n=1NNi 1NN": each record takes 24 + 5 * 12 + 4 = 88 bytes; 3 fit in 300
  // (no retry before the last: the first comes after 0.5 to 1 s)
  const out = output({ bufferMaxBytes: 300, batchPoints: 5, maxRetryMs: 60_000 });
  for (let b = 0; b < 10; b++) {
    out.write('network', range(100 + b * 5, 105 + b * 5).map(m));
    await out.flush();
  }
  assert.deepEqual([out.stats().dropped_full, out.stats().buffered], [35, 15]);
  await dk.up();
  await until(() => out.stats().buffered === 0, 'the rest delivered');
  assert.deepEqual(dk.lines(), range(135, 150).map(lineOf));
  assert.deepEqual([out.stats().sent, out.stats().dropped_full], [15, 35]);
  await out.close();
});

test('with the buffer dir unwritable points wait in memory, and are delivered once DataKit is back', async () => {
  fs.writeFileSync(path.join(root, 'not-a-dir'), '');
  await dk.down();
  const out = new DataKitOutput(dk.address, { bufferDir: path.join(root, 'not-a-dir', 'buf'), bufferMaxBytes: 2 ** 20, maxRetryMs: 100 });
  out.write('network', [m(1)]);
  await out.flush();
  out.write('network', [m(2)]);
  await out.flush();
  assert.equal(out.stats().buffered, 2);
  assert.equal((logged().match(/WARN datakit: cannot write to buffer dir .*not-a-dir\/buf: .*; points wait in memory only/g) ?? []).length, 1);
  await dk.up();
  await until(() => out.stats().sent === 2, 'delivered from memory');
  assert.deepEqual(dk.lines(), [lineOf(1), lineOf(2)]);
  await out.close();
});

test('reportLastError posts the message as JSON', async () => {
  await reportLastError(dk.address, 'kernel has no "BTF"');
  assert.equal(dk.requests.length, 1);
  assert.equal(dk.requests[0].url, '/v1/lasterror');
  assert.deepEqual(JSON.parse(dk.requests[0].body), { input: 'ebpf', err_content: 'kernel has no "BTF"' });
  await reportLastError('127.0.0.1:1', 'unreachable: must not throw');
});
