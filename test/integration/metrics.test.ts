// The collector's own metrics: Prometheus exposition that promtool accepts,
// with values that follow what the collector did.
import assert from 'node:assert/strict';
import { spawnSync, ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { binPath, killGroup, run, startCollector, startDaemon, until } from '../helpers/collector';
import { skip } from '../helpers/privileged';
import { freePort, sample } from '../helpers/scrape';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');


describe('self-metrics', { skip }, () => {
  let server: ChildProcess | undefined;
  before(async () => {
    server = await startDaemon(process.execPath, [peer, 'server', '127.0.0.1', '18181', '500'], 'listening');
  });
  after(() => killGroup(server));

  test('served at --metrics-listen, accepted by promtool, counting what happened', async () => {
    const port = await freePort();
    const collector = await startCollector(['--metrics-listen', `127.0.0.1:${port}`, '--include-loopback', '--interval', '1s']);
    try {
      const url = `http://127.0.0.1:${port}/metrics`;
      await run(process.execPath, [peer, 'client', '127.0.0.1', '18181', '3', '100']);
      // one report (a second's interval; a slow machine's may come late: waited for up to 10 s)
      const scrape = async () => (await fetch(url)).text();
      // not sample(): the series is exposed only once something was sent
      const sent = (t: string) => Number(/^datakit_ebpf_output_points_total\{result="sent"\} (\d+)$/m.exec(t)?.[1] ?? 0);
      await until(async () => sent(await scrape()) >= 2, 10_000, 200);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();

      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(promtool.error, undefined, 'promtool is installed by the set-up (Debian prometheus)');
      assert.equal(promtool.status, 0, `${promtool.stdout}${promtool.stderr}`);

      // closed connections: summed in the kernel, or each sent as an event
      const closed = (t: string) =>
        sample(t, 'datakit_ebpf_plugin_events_total{plugin="netflow",event="close_events"}') +
        sample(t, 'datakit_ebpf_plugin_events_total{plugin="netflow",event="closed_summed"}');
      assert.ok(closed(text) >= 6, 'three connections, both ends');
      assert.equal(sample(text, 'datakit_ebpf_plugin_events_total{plugin="netflow",event="conn_map_full"}'), 0);
      assert.ok(sent(text) >= 2);
      assert.equal(sample(text, 'datakit_ebpf_output_points_total{result="dropped"}'), 0);
      assert.ok(sample(text, 'datakit_ebpf_process_resident_memory_bytes') > 10e6);
      assert.ok(text.includes('datakit_ebpf_plugin_entries{plugin="dnsflow",table="pending"}'));

      // counters only grow
      await run(process.execPath, [peer, 'client', '127.0.0.1', '18181', '2', '100']);
      let again = '';
      await until(async () => closed((again = await scrape())) >= closed(text) + 4, 10_000, 200);
      assert.ok(closed(again) >= closed(text) + 4);
      assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);

      // a second collector cannot take the same address: one clear line, status 1
      const second = spawnSync(process.execPath, [binPath, '--metrics-listen', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 20000 });
      assert.equal(second.status, 1);
      assert.match(second.stderr, /cannot serve metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    } finally {
      await collector.stop('SIGKILL');
    }
  });
});
