// The packages (scripts/package.sh) on a host with nothing installed: a bare
// Debian 12 root file system (debootstrap --variant=minbase: no Node.js, no
// compiler, no libbpf or libelf) with the host's /proc and /sys (and under it
// the cgroup, BPF and trace file systems) bind-mounted into it. The README's
// install blocks are run there as they are written; the collector, run from
// what they installed, must report a loopback TCP transfer with exact bytes,
// stop cleanly on SIGTERM, leave no eBPF program loaded; removal must leave
// nothing behind.
//
// The root file system is made once and kept as a tarball under
// ROOTFS_CACHE (/var/cache/datakit-ebpf-test), named by the suite, the variant,
// the mirror and debootstrap's version; every test unpacks a fresh copy.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, repoRoot, run, startCollector, startDaemon } from '../helpers/collector';
import { loadedProgramIds, programsGone, skip } from '../helpers/privileged';

const peer = path.join(__dirname, '..', 'helpers', 'peer.js');
const ROOTFS_CACHE = process.env.ROOTFS_CACHE ?? '/var/cache/datakit-ebpf-test';
const TCP_PORT = 7100;
const REQUEST = 234567;
const RESPONSE = 8765;
const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
const NODE_VERSION = /^NODE_VERSION=(\S+)$/m.exec(fs.readFileSync(path.join(repoRoot, 'scripts', 'node-runtime.sh'), 'utf8'))![1];

const sh = (cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...opts });

/** The Debian mirror this machine's apt uses (deb822 or one-line sources), for debootstrap. */
function debianMirror(): string {
  const files = ['/etc/apt/sources.list', ...fs.readdirSync('/etc/apt/sources.list.d').map((f) => `/etc/apt/sources.list.d/${f}`)];
  for (const f of files) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^\s*(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+\/debian)\/?\s*$/gm)) return m[1];
    for (const m of text.matchAll(/^\s*deb(?:\s+\[[^\]]*\])?\s+(\S+\/debian)\/?\s+bookworm\s/gm)) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

/** A tarball of a minbase bookworm, made with debootstrap the first time. */
function rootfsTarball(): string {
  const mirror = debianMirror();
  const debootstrap = sh('dpkg-query', ['-W', '-f=${Version}', 'debootstrap']);
  const key = crypto.createHash('sha256').update(`bookworm minbase ${mirror} ${debootstrap}`).digest('hex').slice(0, 12);
  const tarball = path.join(ROOTFS_CACHE, `bookworm-minbase-${key}.tar`);
  if (fs.existsSync(tarball)) return tarball;
  fs.mkdirSync(ROOTFS_CACHE, { recursive: true });
  const dir = fs.mkdtempSync(path.join(ROOTFS_CACHE, 'debootstrap-'));
  try {
    sh('debootstrap', ['--variant=minbase', 'bookworm', dir, mirror]);
    sh('tar', ['--numeric-owner', '-C', dir, '-cf', `${tarball}.part`, '.']);
    fs.renameSync(`${tarball}.part`, tarball);
  } finally {
    sh('rm', ['-rf', '--one-file-system', dir, `${tarball}.part`]);
  }
  return tarball;
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** A fresh copy of the root file system with /proc and /sys (recursively) bind-mounted. */
class Chroot {
  readonly root: string;
  private readonly top: string;

  constructor(tarball: string) {
    this.top = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-pkg-'));
    this.root = path.join(this.top, 'root');
    fs.mkdirSync(this.root);
    try {
      sh('tar', ['--numeric-owner', '-C', this.root, '-xf', tarball]);
      sh('mount', ['--bind', '/proc', `${this.root}/proc`]);
      // the cgroup, BPF and trace file systems are mounted under /sys
      sh('mount', ['--rbind', '/sys', `${this.root}/sys`]);
      sh('mount', ['--make-rslave', `${this.root}/sys`]);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  /** Runs a shell script inside, from /tmp; returns its stdout. */
  script(text: string): string {
    try {
      return sh('chroot', [this.root, '/bin/sh', '-euc', `cd /tmp\n${text}`]);
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`in the chroot: ${text}\n${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  }

  /** Every path of the file system but the kernel's, the scratch and the package manager's own state. */
  files(): string[] {
    const skipped = ['/proc', '/sys', '/dev', '/tmp', '/var/lib/dpkg', '/var/log', '/var/cache/debconf'];
    const out: string[] = [];
    const walk = (rel: string) => {
      for (const e of fs.readdirSync(path.join(this.root, rel), { withFileTypes: true })) {
        const p = `${rel}/${e.name}`;
        if (skipped.includes(p)) continue;
        out.push(p);
        if (e.isDirectory()) walk(p);
      }
    };
    walk('');
    return out.sort();
  }

  destroy(): void {
    for (const m of mountsUnder(this.root)) {
      try {
        sh('umount', ['-R', m]);
      } catch {
        /* under one already unmounted */
      }
    }
    const left = mountsUnder(this.root);
    if (left.length) throw new Error(`still mounted: ${left.join(', ')}`);
    sh('rm', ['-rf', '--one-file-system', this.top]);
  }
}

/** A README block, by the name in the `<!-- test: NAME -->` line before it. */
function readmeBlock(name: string): string {
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const m = new RegExp(`<!-- test: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n`).exec(readme);
  assert.ok(m, `README has the block ${name}`);
  return m[1];
}

describe('package: the .deb and the tarball on a bare Debian 12', { skip }, () => {
  let out: string;
  let deb: string;
  let tarball: string;
  let rootfs: string;
  let ns: string;
  let server: ChildProcess;
  const chroots: Chroot[] = [];

  before(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-pkgout-'));
    // fast compression: the contents are those of `npm run package`; its sizes are the README's
    const made = sh('bash', [path.join(repoRoot, 'scripts', 'package.sh')], { env: { ...process.env, PACKAGE_OUT: out, PACKAGE_FAST: '1' } });
    [tarball, deb] = made.trim().split('\n');
    assert.equal(path.basename(tarball), `datakit-ebpf-${pkg.version}-linux-x64.tar.gz`);
    assert.equal(path.basename(deb), `datakit-ebpf_${pkg.version}_amd64.deb`);
    rootfs = rootfsTarball();
    // the traffic: loopback of a namespace of the test's own
    ns = `dkebpkg${process.pid % 100000}`;
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    server = await startDaemon('ip', ['netns', 'exec', ns, process.execPath, peer, 'server', '127.0.0.1', String(TCP_PORT), String(RESPONSE)], 'listening');
  });

  after(() => {
    killGroup(server);
    if (ns) sh('ip', ['netns', 'del', ns]);
    for (const c of chroots) c.destroy();
    if (out) fs.rmSync(out, { recursive: true, force: true });
  });

  function chroot(): Chroot {
    const c = new Chroot(rootfs);
    chroots.push(c);
    // what a host with nothing installed lacks
    for (const p of ['usr/bin/node', 'usr/bin/nodejs', 'usr/bin/cc', 'usr/bin/gcc', 'usr/bin/clang', 'usr/lib/x86_64-linux-gnu/libbpf.so.1', 'usr/lib/x86_64-linux-gnu/libelf.so.1']) {
      assert.ok(!fs.existsSync(path.join(c.root, p)), `the bare system has no ${p}`);
    }
    return c;
  }

  function checkVersion(text: string): void {
    const commit = JSON.parse(fs.readFileSync(path.join(repoRoot, 'dist', 'build-info.json'), 'utf8')).commit as string;
    // what dpkg says comes first
    assert.equal(text.slice(text.search(new RegExp(`^datakit-ebpf ${pkg.version.replace(/\./g, '\\.')}$`, 'm'))), `datakit-ebpf ${pkg.version}\ncommit: ${commit}\nnode: v${NODE_VERSION}\nlibbpf: v1.1\n`);
  }

  /** Runs `bin` in the chroot through a 123 KB loopback exchange and a SIGTERM. */
  async function collect(c: Chroot, bin: string): Promise<void> {
    const before = loadedProgramIds();
    // nothing of the test runner's environment that a host would not have
    const env = { NODE_EXTRA_CA_CERTS: undefined, NODE_OPTIONS: undefined, NODE_TEST_CONTEXT: undefined };
    const collector = await startCollector(['--interval', '2s', '--include-loopback'], env, undefined, ['chroot', c.root], undefined, bin);
    try {
      // the bundled Node.js runs it, never the host's
      assert.equal(fs.readlinkSync(`/proc/${collector.proc.pid}/exe`), path.join(c.root, 'opt/datakit-ebpf/node/bin/node'));
      const ours = [...loadedProgramIds()].filter((id) => !before.has(id));
      assert.ok(ours.length >= 5, `the collector loaded its programs (${ours.length})`);

      const client = await run('ip', ['netns', 'exec', ns, process.execPath, peer, 'client', '127.0.0.1', String(TCP_PORT), '1', String(REQUEST)]);
      assert.deepEqual(JSON.parse(client.stdout), { pid: client.pid, sent: REQUEST, received: RESPONSE });
      await collector.waitForLine((l) => l.startsWith('netflow,') && new RegExp(`,pid=${client.pid}[, ]`).test(l), 10000);
      const stopped = await collector.stop('SIGTERM');
      assert.deepEqual(stopped, { code: 0, signal: null }, collector.stderr());
      // (warnings may come from other traffic on the machine)
      assert.doesNotMatch(collector.stderr(), / ERROR |^(?!\d{4}-).+/m);

      // summed over the intervals the transfer spans
      const sum = (pred: (t: Record<string, string>) => boolean) => {
        const s = { bytes_written: 0, bytes_read: 0, tcp_established: 0, tcp_closed: 0 };
        for (const p of collector.points('netflow').filter((p) => pred(p.tags))) {
          for (const k of Object.keys(s) as (keyof typeof s)[]) s[k] += Number(p.fields[k] ?? 0);
        }
        return s;
      };
      assert.deepEqual(sum((t) => t.pid === String(client.pid)), { bytes_written: REQUEST, bytes_read: RESPONSE, tcp_established: 1, tcp_closed: 1 });
      assert.deepEqual(sum((t) => t.direction === 'incoming' && t.src_port === String(TCP_PORT)), {
        bytes_written: RESPONSE,
        bytes_read: REQUEST,
        tcp_established: 1,
        tcp_closed: 1,
      });
      assert.deepEqual(await programsGone(ours, 10000), [], 'programs left behind');
    } finally {
      await collector.stop('SIGKILL');
    }
  }

  test('.deb: dpkg -i, a loopback transfer counted exactly, SIGTERM; dpkg -r leaves nothing behind', async () => {
    const c = chroot();
    const bare = c.files();
    fs.copyFileSync(deb, path.join(c.root, 'tmp', path.basename(deb)));

    checkVersion(c.script(readmeBlock('deb-install')));
    assert.equal(fs.readlinkSync(path.join(c.root, 'usr/bin/datakit-ebpf')), '/opt/datakit-ebpf/bin/datakit-ebpf');
    assert.ok(fs.existsSync(path.join(c.root, 'lib/systemd/system/datakit-ebpf.service')));
    assert.ok(!fs.existsSync(path.join(c.root, 'etc/systemd/system/multi-user.target.wants/datakit-ebpf.service')), 'not enabled');
    await collect(c, '/usr/bin/datakit-ebpf');

    const status = () => c.script('dpkg-query -W -f=\'${db:Status-Abbrev}\' datakit-ebpf 2>/dev/null || printf none');
    c.script(readmeBlock('deb-remove'));
    fs.rmSync(path.join(c.root, 'tmp', path.basename(deb)));
    assert.deepEqual(c.files(), bare);
    // dpkg remembers the removed package (its postrm, for a purge) until it is purged
    assert.equal(status(), 'rc ');
    c.script('dpkg -P datakit-ebpf');
    assert.equal(status(), 'none');
    assert.deepEqual(c.files(), bare);
  });

  test('tarball: unpacked under /opt, run as DataKit runs it, the same; removed, nothing is left', async () => {
    const c = chroot();
    const bare = c.files();
    fs.copyFileSync(tarball, path.join(c.root, 'tmp', path.basename(tarball)));

    checkVersion(c.script(readmeBlock('tarball-install')));
    c.script(readmeBlock('datakit'));
    checkVersion(c.script('/usr/local/datakit/externals/datakit-ebpf --version'));
    await collect(c, '/usr/local/datakit/externals/datakit-ebpf');

    c.script(readmeBlock('tarball-remove'));
    fs.rmSync(path.join(c.root, 'tmp', path.basename(tarball)));
    fs.rmSync(path.join(c.root, 'usr/local/datakit'), { recursive: true });
    assert.deepEqual(c.files(), bare);
  });
});
