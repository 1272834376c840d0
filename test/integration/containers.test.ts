// Containers without Kubernetes: bash in a container (its own root file
// system, mount, pid and network namespaces, a user the host does not have)
// and container_id on flows of processes in a cgroup laid out as containerd
// lays it out; a bash file replaced while the collector runs.
//
// The "container" is a root file system the test assembles from the host's
// bash and the libraries ldd names, entered with unshare; its cgroup is a
// cgroup v2 directory system.slice/containerd-<64 hex>.scope.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, run, sleep, spawnGroup, startCollector, startDaemon, RunningCollector } from '../helpers/collector';
import { InteractiveBash, startInteractiveBash } from '../helpers/interactive-bash';
import { createHostPair, HostPair } from '../helpers/netns';
import { skip } from '../helpers/privileged';
import { makeCertificate, startPythonHttps } from '../helpers/tls';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const UID = 4242; // a user only the container knows
const USER = 'dkebuser';
const CONTAINER_ID = crypto.randomBytes(32).toString('hex');

/** A root file system with the host's bash (a copy: a file of its own) and what it links. */
function assembleRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-ctr-'));
  fs.chmodSync(root, 0o755);
  addProgram(root, fs.realpathSync('/bin/bash'), '/bin/bash');
  fs.mkdirSync(path.join(root, 'etc'));
  fs.mkdirSync(path.join(root, 'tmp'), { mode: 0o1777 });
  fs.writeFileSync(path.join(root, 'etc/passwd'), `root:x:0:0:root:/root:/bin/bash\n${USER}:x:${UID}:${UID}:container user:/tmp:/bin/bash\n`);
  fs.writeFileSync(path.join(root, 'etc/group'), `root:x:0:\n${USER}:x:${UID}:\n`);
  return root;
}

/** Copies a program and the libraries ldd names into the root (copies: files of the container's own). */
function addProgram(root: string, program: string, as = program): void {
  const files: [string, string][] = [[program, as]];
  for (const line of execFileSync('ldd', [program], { encoding: 'utf8' }).split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) files.push([m[1], m[1]]);
  }
  for (const [from, to] of files) {
    const dest = path.join(root, to);
    if (fs.existsSync(dest)) continue;
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(from, dest);
    fs.chmodSync(dest, 0o755);
  }
}

/** Replaces the root's bash with a new file (a new inode), as a package upgrade does. */
function upgradeBash(root: string): void {
  const bin = path.join(root, 'bin/bash');
  fs.copyFileSync(bin, `${bin}.new`);
  fs.chmodSync(`${bin}.new`, 0o755);
  fs.renameSync(`${bin}.new`, bin);
}

/** An interactive bash in the container: chroot, mount/pid/net namespaces, the container's user, optionally its cgroup. */
function containerBash(root: string, cgroup?: string): Promise<InteractiveBash> {
  const enter = cgroup ? `echo $$ > ${cgroup}/cgroup.procs && exec ` : 'exec ';
  return startInteractiveBash(
    undefined,
    `${enter}unshare --mount --pid --net --fork --root=${root} --wd=/tmp --setgid=${UID} --setuid=${UID} /bin/bash --norc --noprofile -i`,
  );
}

function cgroup2Root(): string {
  const target = execFileSync('findmnt', ['-n', '-t', 'cgroup2', '-o', 'TARGET'], { encoding: 'utf8' }).trim().split('\n')[0];
  assert.ok(target, 'a cgroup v2 hierarchy is mounted');
  return target;
}

function bashPoints(c: RunningCollector, pid: number) {
  return c.points('bash').filter((p) => p.fields.pid === String(pid));
}

async function waitForLog(c: RunningCollector, pred: (log: string) => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred(c.stderr())) {
    if (Date.now() > deadline) throw new Error(`not in the log within ${timeoutMs} ms: ${what}\n${c.stderr()}`);
    await sleep(100);
  }
}

const count = (text: string, s: string) => text.split(s).length - 1;

describe('containers', { skip }, () => {
  let root: string;
  let cgroupDir: string;
  let createdSlice: string | undefined;
  const shells: InteractiveBash[] = [];
  const daemons: ChildProcess[] = [];
  let hosts: HostPair | undefined;

  before(() => {
    assert.throws(() => execFileSync('getent', ['passwd', String(UID)]), `the host has no user ${UID}`);
    root = assembleRoot();
    const slice = path.join(cgroup2Root(), 'system.slice');
    if (!fs.existsSync(slice)) {
      fs.mkdirSync(slice);
      createdSlice = slice;
    }
    cgroupDir = path.join(slice, `containerd-${CONTAINER_ID}.scope`);
    fs.mkdirSync(cgroupDir);
  });

  after(async () => {
    for (const s of shells) killGroup(s.proc);
    for (const d of daemons) killGroup(d);
    hosts?.destroy();
    // a cgroup goes once its last process has
    for (const dir of [cgroupDir, createdSlice]) {
      for (let i = 0; dir && fs.existsSync(dir); i++) {
        try {
          fs.rmdirSync(dir);
        } catch (err) {
          if (i === 50) throw err;
          await sleep(100);
        }
      }
    }
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  test("bash in a container: its lines with the container's user and container_id; its probe gone with it", async () => {
    const collector = await startCollector(['--enabled', 'ebpf-bash']);
    try {
      const sh = await containerBash(root, cgroupDir);
      shells.push(sh);
      // the path as the collector sees it: the container's /bin/bash
      const label = `${root}/bin/bash (mapped by process ${sh.bashPid})`;
      await waitForLog(collector, (l) => l.includes(`bash: watching readline in ${label}`), 'the container bash probed');
      // it was already waiting in readline() when the probe was placed: that call's line is not seen
      await sh.type('');
      await sh.type('echo "in a container"');
      await sh.type('printf "%s\\n" $$ $UID');
      await sh.exit();
      await waitForLog(collector, (l) => l.includes(`bash: no longer watching ${label}: no process uses it`), 'the probe removed');
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = bashPoints(collector, sh.bashPid);
      assert.deepEqual(
        points.map((p) => [p.fields.cmd, p.fields.user, p.tags.container_id]),
        [
          ['echo "in a container"', USER, CONTAINER_ID],
          ['printf "%s\\n" $$ $UID', USER, CONTAINER_ID],
          ['exit', USER, CONTAINER_ID],
        ],
      );
      assert.match(points[0].fields.message as string, new RegExp(` pid:\`${sh.bashPid}\` user:\`${USER}\` cmd:\`echo "in a container"\`$`));
    } finally {
      await collector.stop('SIGKILL');
      for (const s of shells.splice(0)) killGroup(s.proc);
    }
  });

  test('bash from an overlayfs image (as container runtimes mount them): the layer\'s file is probed', async () => {
    // the assembled root as the lower layer of an overlay, entered through the merged view
    const layers = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-ovl-'));
    const merged = path.join(layers, 'merged');
    for (const d of ['upper', 'work', 'merged']) fs.mkdirSync(path.join(layers, d));
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${root},upperdir=${layers}/upper,workdir=${layers}/work`, merged]);
    const collector = await startCollector(['--enabled', 'ebpf-bash']);
    try {
      const sh = await containerBash(merged);
      shells.push(sh);
      // /proc/PID/maps names the merged view (newer kernels) or the layer's file (older ones)
      const probed = [merged, root].map((r) => `bash: watching readline in ${r}/bin/bash (mapped by process ${sh.bashPid})`);
      await waitForLog(collector, (l) => probed.some((p) => l.includes(p)), 'the overlay bash probed');
      await sh.type(''); // the call that was waiting when the probe was placed
      await sh.type('echo from a layer');
      await sh.exit();
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      assert.deepEqual(
        bashPoints(collector, sh.bashPid).map((p) => [p.fields.cmd, p.fields.user]),
        [
          ['echo from a layer', USER],
          ['exit', USER],
        ],
      );
    } finally {
      await collector.stop('SIGKILL');
      for (const s of shells.splice(0)) killGroup(s.proc);
      for (let i = 0; ; i++) {
        try {
          execFileSync('umount', [merged], { stdio: 'pipe' });
          break;
        } catch (err) {
          if (i === 50) throw err; // busy until the last process in it is gone
          await sleep(100);
        }
      }
      fs.rmSync(layers, { recursive: true, force: true });
    }
  });

  test('the bash file replaced while the collector runs (an upgrade): a new bash is seen from its first line, the old one until it ends', async () => {
    // the assembled root as the host's: its /bin/bash is "the host's bash"
    const collector = await startCollector(['--enabled', 'ebpf-bash'], { HOST_ROOT: root });
    const hostBash = path.join(root, 'bin/bash');
    try {
      assert.equal(count(collector.stderr(), `bash: watching readline in ${hostBash}`), 1, collector.stderr());
      const old = await containerBash(root);
      shells.push(old);
      await old.type('echo before the upgrade'); // probed before it started: its first line is seen
      upgradeBash(root);
      await waitForLog(collector, (l) => count(l, `bash: watching readline in ${hostBash}`) === 2, 'the new file probed');
      const fresh = await containerBash(root);
      shells.push(fresh);
      await fresh.type('echo after the upgrade');
      await old.type('echo the old bash still');
      await fresh.exit();
      await old.exit();
      // the old file: neither the host's any more nor used
      await waitForLog(collector, (l) => l.includes(`bash: no longer watching ${hostBash}: no process uses it`), 'the old file unprobed');
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      assert.deepEqual(
        bashPoints(collector, old.bashPid).map((p) => [p.fields.cmd, p.fields.user]),
        [
          ['echo before the upgrade', USER],
          ['echo the old bash still', USER],
          ['exit', USER],
        ],
      );
      assert.deepEqual(
        bashPoints(collector, fresh.bashPid).map((p) => [p.fields.cmd, p.fields.user]),
        [
          ['echo after the upgrade', USER],
          ['exit', USER],
        ],
      );
      assert.ok(!collector.points('bash').some((p) => p.tags.container_id !== undefined), 'not in a container cgroup: no container_id');
    } finally {
      await collector.stop('SIGKILL');
      for (const s of shells.splice(0)) killGroup(s.proc);
    }
  });

  test('flows of processes in the container cgroup carry container_id; the same from the host do not', async () => {
    hosts = createHostPair(13); // 198.51.100.131-132: a subnet no other test uses
    const h = hosts;
    daemons.push(await startDaemon('ip', ['netns', 'exec', h.server, process.execPath, peer, 'http-app', h.serverV4, '8080'], 'listening'));
    daemons.push(
      spawnGroup(
        'ip',
        [
          'netns', 'exec', h.server, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
          `--listen-address=${h.serverV4}`, '--pid-file=', '--user=root', '--cache-size=0',
          `--host-record=in-container.example.test,${h.serverV4}`, `--host-record=on-host.example.test,${h.serverV4}`, '--log-facility=/dev/null',
        ],
        { stdio: 'ignore' },
      ),
    );
    for (let i = 0; ; i++) {
      try {
        execFileSync('ip', ['netns', 'exec', h.client, 'dig', '+tries=1', '+timeout=1', `@${h.serverV4}`, 'ready.example.test'], { stdio: 'ignore' });
        break;
      } catch (err) {
        if (i === 30) throw new Error(`dnsmasq does not answer: ${err}`);
        await sleep(100);
      }
    }
    const collector = await startCollector(['--enabled', 'ebpf-net', '--interval', '2s']);
    try {
      // sh and `ip netns exec` exec the client: the pid run() gives is the client's
      // (the cgroup is entered first: `ip netns exec` mounts a /sys of its own)
      const inContainer = (cmd: string) => run('sh', ['-c', `echo $$ > ${cgroupDir}/cgroup.procs && exec ip netns exec ${h.client} ${cmd}`]);
      const onHost = (cmd: string) => run('sh', ['-c', `exec ip netns exec ${h.client} ${cmd}`]);
      const curl = (p: string) => `curl -s -o /dev/null -w %{http_code} http://${h.serverV4}:8080${p}`;
      // over TCP: a UDP answer may beat the sender's return from sendmsg and go without a process (README)
      const dig = (name: string) => `dig +tcp +tries=1 +timeout=1 @${h.serverV4} ${name}`;
      const c1 = await inContainer(curl('/status/200/container'));
      const c2 = await onHost(curl('/status/200/host'));
      assert.deepEqual([c1.stdout, c2.stdout], ['200', '200']);
      const d1 = await inContainer(dig('in-container.example.test'));
      const d2 = await onHost(dig('on-host.example.test'));
      await sleep(3000); // an interval's report
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());

      const net = collector.points('netflow').filter((p) => p.tags.dst_ip === h.serverV4 || p.tags.src_ip === h.serverV4);
      const byPid = (pid: number) => net.filter((p) => p.tags.pid === String(pid));
      for (const [pid, what] of [[c1.pid, 'curl'], [d1.pid, 'dig']] as const) {
        assert.ok(byPid(pid).length > 0, `netflow of the container's ${what}`);
        for (const p of byPid(pid)) assert.equal(p.tags.container_id, CONTAINER_ID, `netflow of the container's ${what}`);
      }
      for (const [pid, what] of [[c2.pid, 'curl'], [d2.pid, 'dig']] as const) {
        assert.ok(byPid(pid).length > 0, `netflow of the host's ${what}`);
        for (const p of byPid(pid)) assert.equal(p.tags.container_id, undefined, `netflow of the host's ${what}`);
      }
      // the servers run on the host: their sides have none
      assert.ok(net.some((p) => p.tags.direction === 'incoming'));
      for (const p of net.filter((p) => p.tags.direction === 'incoming')) assert.equal(p.tags.container_id, undefined);

      // only this test's hosts: the kernel programs see every namespace on the machine
      const http = collector.points('httpflow').filter((x) => x.tags.dst_ip === h.serverV4 || x.tags.src_ip === h.serverV4);
      // [direction, pid, container_id] of each series of a path, in a stable order
      const httpOf = (p: string) =>
        http
          .filter((x) => x.fields.path === p)
          .map((x) => JSON.stringify([x.tags.direction, x.tags.pid, x.tags.container_id ?? null]))
          .sort();
      const rows = (...r: unknown[][]) => r.map((x) => JSON.stringify(x)).sort();
      const server = http.find((x) => x.tags.direction === 'incoming')?.tags.pid;
      assert.ok(server, 'the server side is reported');
      assert.deepEqual(httpOf('/status/200/container'), rows(['outgoing', String(c1.pid), CONTAINER_ID], ['incoming', server, null]));
      assert.deepEqual(httpOf('/status/200/host'), rows(['outgoing', String(c2.pid), null], ['incoming', server, null]));

      const dns = collector.points('dnsflow').filter((x) => x.tags.dst_ip === h.serverV4);
      const dnsOf = (name: string) => dns.filter((x) => x.tags.domain === name).map((x) => [x.tags.pid, x.tags.container_id]);
      // dig is gone by the report: its container is known from its connection's cgroup
      assert.deepEqual(dnsOf('in-container.example.test'), [[String(d1.pid), CONTAINER_ID]]);
      assert.deepEqual(dnsOf('on-host.example.test'), [[String(d2.pid), undefined]]);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test("HTTPS from a libssl inside the container's root: probed when the client execs, tls=true with container_id", async () => {
    const h = createHostPair(15); // 198.51.100.151-152: a subnet no other test uses
    const certs = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-ctr-tls-'));
    const collector = await startCollector(['--enabled', 'ebpf-net', '--interval', '60s']);
    try {
      makeCertificate(certs);
      const server = await startPythonHttps(certs, h.server, h.serverV4, 8443);
      daemons.push(server);
      addProgram(root, '/usr/bin/curl');
      const base = `https://${h.serverV4}:8443`;
      // the second request waits half a second (--rate): by then the probes are on the root's libssl,
      // found when curl exec'd; the first may come before them
      const curl = await run('sh', [
        '-c',
        `echo $$ > ${cgroupDir}/cgroup.procs && exec ip netns exec ${h.client} unshare --mount --pid --fork --root=${root} ` +
          `/usr/bin/curl -sk --http1.1 --rate 2/s -w '%{http_code}\\n' -o /tmp/first ${base}/status/200 -o /tmp/second ${base}/status/201`,
      ]);
      assert.equal(curl.stdout, '200\n201\n');
      await waitForLog(collector, (l) => new RegExp(`no longer reading TLS in .*${root}/.*libssl\\.so\\.3`).test(l), 'the probe on the container\'s libssl removed after curl');
      assert.match(collector.stderr(), new RegExp(`reading TLS plaintext in .*${root}/.*libssl\\.so\\.3 \\(mapped by process \\d+\\)`));
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const http = collector.points('httpflow').filter((x) => x.tags.dst_ip === h.serverV4 || x.tags.src_ip === h.serverV4);
      const second = http.filter((x) => x.fields.path === '/status/201').map((x) => [x.tags.direction, x.tags.tls, x.tags.container_id ?? null, x.fields.count]);
      assert.deepEqual(second.sort(), [
        ['incoming', 'true', null, 1],
        ['outgoing', 'true', CONTAINER_ID, 1],
      ]);
      // the host's python answered both
      const served = http.filter((x) => x.tags.pid === String(server.pid)).map((x) => `${x.fields.path} ${x.fields.count}`);
      assert.deepEqual(served.sort(), ['/status/200 1', '/status/201 1']);
    } finally {
      await collector.stop('SIGKILL');
      h.destroy();
      fs.rmSync(certs, { recursive: true, force: true });
    }
  });
});
