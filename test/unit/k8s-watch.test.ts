// The watch stream reader: lines cut anywhere by the network, and the bound on
// a line that never ends (the watch is dropped, counted, said once, and made
// again from the version it had reached).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Kubernetes } from '../../src/enrich/k8s';
import { KubeApiError, MAX_WATCH_LINE_BYTES, WatchEvent, WatchLineTooLongError, WatchStreamDecoder } from '../../src/enrich/k8s/api';
import { configureLog } from '../../src/log';
import { KubeApiEmulator, pod, PODS } from '../helpers/kube-apiserver';

function decodeAll(decoder: WatchStreamDecoder, chunks: Buffer[]): WatchEvent[] {
  const out: WatchEvent[] = [];
  for (const c of chunks) decoder.push(c, (ev) => out.push(ev));
  return out;
}

test('events cut anywhere, even inside a character, come out whole and in order', () => {
  const a = { type: 'ADDED', object: { metadata: { name: 'café-☃', resourceVersion: '7' } } };
  const b = { type: 'BOOKMARK', object: { metadata: { resourceVersion: '8' } } };
  const stream = Buffer.from(`${JSON.stringify(a)}\r\n\n  \n${JSON.stringify(b)}\n{"type":"ADDED"`);
  // every way of cutting the stream in three
  for (let i = 0; i <= stream.length; i += 3) {
    for (let j = i; j <= stream.length; j += 5) {
      const events = decodeAll(new WatchStreamDecoder(PODS), [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]);
      assert.deepEqual(events, [a, b]);
    }
  }
});

test('the events before a bad line are delivered; the bad line ends the watch with a KubeApiError', () => {
  const events: WatchEvent[] = [];
  const chunk = Buffer.from('{"type":"DELETED","object":{"metadata":{"name":"p"}}}\n{"type":"ADDED","object":[]}\n{"type":"ADDED","object":{}}\n');
  assert.throws(() => new WatchStreamDecoder(PODS).push(chunk, (ev) => events.push(ev)), (err: unknown) => err instanceof KubeApiError && /^watch \/api\/v1\/pods: not a watch event: /.test(err.message));
  assert.deepEqual(events, [{ type: 'DELETED', object: { metadata: { name: 'p' } } }]);
  assert.throws(() => new WatchStreamDecoder(PODS).push(Buffer.from('{"type":\n'), () => {}), /^Error: watch \/api\/v1\/pods: not JSON: /);
  const gone = Buffer.from('{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old\\nresource version"}}\n');
  assert.throws(
    () => new WatchStreamDecoder(PODS).push(gone, () => {}),
    (err: unknown) => err instanceof KubeApiError && err.gone && err.message === 'watch /api/v1/pods: Expired too old resource version',
  );
});

test('a line may be as long as the bound; one byte more without a newline drops the watch', () => {
  const line = (n: number) => Buffer.from(`{"type":"ADDED","object":{"x":"${'y'.repeat(n - 34)}"}}`);
  assert.equal(line(100).length, 100);
  const d = new WatchStreamDecoder(PODS, 100);
  assert.equal(decodeAll(d, [line(100).subarray(0, 60), line(100).subarray(60), Buffer.from('\n')]).length, 1);
  assert.throws(() => decodeAll(d, [line(100), Buffer.from('x')]), (err: unknown) => err instanceof WatchLineTooLongError && err.message === 'watch /api/v1/pods: a line passed 100 bytes without ending: watch dropped');
  // a complete line past the bound is refused too
  assert.throws(() => decodeAll(new WatchStreamDecoder(PODS, 100), [Buffer.concat([line(101), Buffer.from('\n')])]), WatchLineTooLongError);
});

test('the default bound is 16 MiB', () => {
  assert.equal(MAX_WATCH_LINE_BYTES, 16 * 1024 * 1024);
  const d = new WatchStreamDecoder(PODS);
  const mib = Buffer.alloc(1024 * 1024, 0x20);
  for (let i = 0; i < 16; i++) d.push(mib, () => assert.fail('no event'));
  assert.throws(() => d.push(Buffer.from(' '), () => {}), WatchLineTooLongError);
});

test('a watch whose line never ends is dropped with a warning and a counter, and made again without a new list', async () => {
  const logFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-watch-')), 'log');
  configureLog('info', logFile);
  const api = await new KubeApiEmulator().start();
  api.apply(PODS, pod('shop', 'a', '10.1.0.1'));
  const k = new Kubernetes({ url: api.url, insecureSkipTlsVerify: false }, { backoffMs: [20, 200], rebuildEveryMs: 0 });
  try {
    k.start();
    await waitFor('a watch of pods', () => k.synced && api.openWatches(PODS) === 1);
    // 16 MiB and one byte of a line that never ends
    const mib = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 16; i++) api.sendRaw(PODS, mib);
    api.sendRaw(PODS, 'a');
    await waitFor('the dropped watch counted', () => k.stats().watch_lines_too_long === 1);
    await waitFor('a new watch of pods', () => api.count('watch', PODS) === 2 && api.openWatches(PODS) === 1);
    assert.equal(api.count('list', PODS), 1, 'resumed from its version, no new list');
    const warnings = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes(' WARN '));
    assert.deepEqual(
      warnings.map((l) => l.replace(/^\S+ /, '')),
      ['WARN k8s: /api/v1/pods: watch /api/v1/pods: a line passed 16777216 bytes without ending: watch dropped; retrying with backoff'],
    );
    // the new watch follows the cluster
    api.apply(PODS, pod('shop', 'b', '10.1.0.2'));
    await waitFor('the new pod', () => k.state.pods.items.has('shop/b'));
    assert.equal(k.stats().watch_lines_too_long, 1);
  } finally {
    k.stop();
    await api.stop();
    fs.rmSync(path.dirname(logFile), { recursive: true, force: true });
  }
});

async function waitFor(what: string, pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
