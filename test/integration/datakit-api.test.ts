// The collector's DataKit HTTP output end to end: real traffic in, the exact
// request DataKit would receive out; and fatal start-up errors reported to /v1/lasterror.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { binPath, killGroup, run, runToExit, sleep, startCollector, startDaemon } from '../helpers/collector';
import { FakeDataKit, startFakeDataKit } from '../helpers/fake-datakit';
import { parseLine } from '../helpers/lineprotocol-parse';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');

describe('DataKit HTTP output', { skip }, () => {
  let dk: FakeDataKit;
  let hosts: HostPair;
  let server: ChildProcess | undefined;
  // not the default buffer dir: nothing an earlier run left there may reach this stand-in
  const bufferDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-dkapi-'));

  before(async () => {
    dk = await startFakeDataKit();
    hosts = createHostPair(2);
    server = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'server', hosts.serverV4, '9000', '4321'], 'listening');
  });
  after(async () => {
    killGroup(server);
    hosts?.destroy();
    await dk?.close();
    fs.rmSync(bufferDir, { recursive: true, force: true });
  });

  test('netflow points are posted to /v1/write/network?input=ebpf-net', async () => {
    const collector = await startCollector([
      '--datakit-apiserver', dk.address, '--buffer-dir', bufferDir, '--interval', '60s', '--hostname', 'test-host', '--tags', 'team=net;zone=a b',
    ]);
    try {
      const client = await run('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'client', hosts.serverV4, '9000', '4', '1000']);
      await sleep(200);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      assert.deepEqual(collector.lines.filter(Boolean), [], 'nothing on stdout with an API server');

      const writes = dk.requests.filter((r) => r.url.startsWith('/v1/write/'));
      assert.ok(writes.length >= 1);
      for (const w of writes) {
        assert.equal(w.method, 'POST');
        assert.equal(w.url, '/v1/write/network?input=ebpf-net');
      }
      const points = writes.flatMap((w) => w.body.split('\n').filter(Boolean).map(parseLine));
      const ours = points.filter((p) => p.tags.pid === String(client.pid));
      assert.equal(ours.length, 1);
      const [p] = ours;
      assert.equal(p.measurement, 'netflow');
      assert.equal(p.tags.host, 'test-host');
      assert.equal(p.tags.service, 'ebpf');
      assert.equal(p.tags.team, 'net');
      assert.equal(p.tags.zone, 'a b');
      assert.equal(p.fields.bytes_written, 4000);
      assert.equal(p.fields.bytes_read, 4 * 4321);
      assert.equal(p.fields.tcp_established, 4);
      assert.equal(p.fields.tcp_closed, 4);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('a fatal start-up error is posted to /v1/lasterror and exits 1', async () => {
    dk.requests.length = 0;
    // root without capabilities: the privilege check must refuse to start
    const res = await runToExit('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--', process.execPath, binPath, '--datakit-apiserver', dk.address]);
    assert.equal(res.code, 1, res.stderr);
    const lines = res.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${res.stderr}`);
    assert.match(lines[0], /must run as root/);
    const le = dk.requests.filter((r) => r.url === '/v1/lasterror');
    assert.equal(le.length, 1);
    const body = JSON.parse(le[0].body);
    assert.equal(body.input, 'ebpf');
    assert.match(body.err_content, /must run as root/);
  });
});
