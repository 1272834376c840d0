// Start-up that fits the host (SPEC §2): the collector mounts only what a
// plugin needs, copes with a host that has no cgroup v2 mounted, and refuses a
// kernel without BTF in one line, telling DataKit. Each case runs the real
// collector in a mount namespace of its own, shaped like such a host.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { binPath, killGroup, run, runToExit, RunningCollector, sleep, startCollector, startDaemon } from '../helpers/collector';
import { FakeDataKit, startFakeDataKit } from '../helpers/fake-datakit';
import { startInteractiveBash } from '../helpers/interactive-bash';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');

/** Runs the collector in a private mount namespace after `shell` (which may unmount or hide things). */
const privateMounts = (shell: string) => ['unshare', '--mount', '--propagation', 'private', 'sh', '-ec', `${shell}\nexec "$0" "$@"`];

/** Unmounts every mount of these file system types (deepest first). */
const unmountAll = (...types: string[]) =>
  types.map((t) => `awk '$3 == "${t}" {print $2}' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done`).join('\n');

/** File system types mounted in the collector's own mount namespace. */
function mountTypes(collector: RunningCollector): string[] {
  return fs
    .readFileSync(`/proc/${collector.proc.pid}/mounts`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[2]);
}

describe('start-up on hosts of every shape', { skip }, () => {
  let hosts: HostPair;
  let dk: FakeDataKit;
  let dns: ChildProcess | undefined;

  before(async () => {
    hosts = createHostPair(9);
    dk = await startFakeDataKit();
    dns = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'dns-servfail', hosts.serverV4, '53'], 'listening');
  });
  after(async () => {
    killGroup(dns);
    hosts?.destroy();
    await dk?.close();
  });

  test('ebpf-bash alone needs neither cgroup v2 nor tracefs, and mounts neither', async () => {
    const collector = await startCollector(['--enabled', 'ebpf-bash', '--interval', '60s'], {}, undefined, privateMounts(unmountAll('cgroup2', 'tracefs', 'debugfs')));
    try {
      const types = mountTypes(collector);
      for (const t of ['cgroup2', 'tracefs', 'debugfs']) assert.ok(!types.includes(t), `${t} is mounted: ${types.join(' ')}`);
      const sh = await startInteractiveBash();
      await sh.type('echo without-cgroups');
      await sh.exit();
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const lines = collector.points('bash').filter((p) => p.fields.pid === String(sh.bashPid)).map((p) => p.fields.cmd);
      assert.deepEqual(lines, ['echo without-cgroups', 'exit']);
      assert.doesNotMatch(collector.stderr(), / (WARN|ERROR) /);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('no cgroup v2 mounted (a cgroup v1 host): a private mount for the programs, let go of once they are attached', async () => {
    const collector = await startCollector(['--interval', '60s', '--include-loopback'], {}, undefined, privateMounts(unmountAll('cgroup2')));
    try {
      assert.match(collector.stderr(), /cgroup v2 is not mounted.*mounted it at \/run\/datakit-ebpf\/cgroup2/);
      assert.ok(!mountTypes(collector).includes('cgroup2'), 'the private mount is gone once programs are attached');
      assert.ok(!fs.existsSync('/run/datakit-ebpf/cgroup2'), 'and so is its directory');
      // the cgroup programs still see every socket
      const dig = await run('ip', ['netns', 'exec', hosts.client, 'dig', '+tries=1', '+timeout=2', `@${hosts.serverV4}`, 'v1.example.test']);
      assert.match(dig.stdout, /status: SERVFAIL/);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const queries = collector.points('dnsflow').filter((p) => p.tags.domain === 'v1.example.test').map((p) => p.fields.rcode);
      assert.deepEqual(queries, [2], collector.lines.filter((l) => l.startsWith('dnsflow')).join('\n'));
      // and the UDP peer programs are attached as well: send peers from httpflow's packet
      // program on the build machine's kernel; older ones (the kernel matrix's) may refuse it
      // the thread's id, and keep netflow's sendmsg hooks
      const onKernelMatrix = process.env.EXPECT_BYTE_HOOKS !== undefined || process.env.TEST_HOOKS !== undefined;
      const udpPeer = onKernelMatrix ? '(cgroup_skb\\+)?cgroup_sock_addr' : 'cgroup_skb\\+cgroup_sock_addr';
      assert.match(collector.stderr(), new RegExp(`hooks: bytes=\\w+, tcp_state=tp_btf, udp_peer=${udpPeer}, dns=cgroup_skb, http=cgroup_skb`));
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('a kernel without BTF: one line, status 1, and DataKit is told', async () => {
    dk.requests.length = 0;
    const [cmd, ...args] = privateMounts('mount -t tmpfs tmpfs /sys/kernel/btf');
    const res = await runToExit(cmd, [...args, binPath, '--datakit-apiserver', dk.address]);
    assert.equal(res.code, 1, res.stderr);
    const lines = res.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${res.stderr}`);
    assert.match(lines[0], /kernel BTF not found at \/sys\/kernel\/btf\/vmlinux/);
    const reported = dk.requests.filter((r) => r.url === '/v1/lasterror').map((r) => JSON.parse(r.body));
    assert.deepEqual(reported.map((b) => b.input), ['ebpf']);
    assert.match(reported[0].err_content, /kernel BTF not found/);
  });
});
