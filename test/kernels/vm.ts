// Runs a command on one of Debian's stock kernels, in a throwaway qemu VM that
// sees this machine's own files: its / read-only over 9p, under a writable
// layer in RAM. So the same build and the same tests run on 5.10, 6.1 and 6.12.
//
// qemu emulates (TCG): no KVM is needed, code runs several times slower.
// Kernel packages come from Debian's archive through apt with a private state
// (this machine's own sources and package database play no part) and are
// kept in KERNEL_CACHE (default /var/cache/datakit-ebpf/kernels).
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const KERNEL_SERIES = { bullseye: '5.10', bookworm: '6.1', trixie: '6.12' } as const;
export type Suite = keyof typeof KERNEL_SERIES;
export const SUITES = Object.keys(KERNEL_SERIES) as Suite[];

const MIRROR = 'http://deb.debian.org';
const cacheRoot = () => process.env.KERNEL_CACHE ?? '/var/cache/datakit-ebpf/kernels';
/** Modules the initramfs loads to reach this machine's files (the rest load from them). */
const BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];

export interface Kernel {
  suite: Suite;
  /** uname -r of the kernel */
  release: string;
  vmlinuz: string;
  /** its /lib/modules/<release> */
  modules: string;
  initrd: string;
}

/**
 * The newest stock amd64 kernel image package of `series` among the package
 * names of `apt-cache search` output (the "-unsigned" packages hold the image
 * itself; realtime and cloud flavours are left out).
 */
export function pickKernelPackage(searchOutput: string, series: string): string | undefined {
  const re = new RegExp(`^linux-image-${series.replace('.', '\\.')}[.-]\\S*-amd64-unsigned$`);
  const names = searchOutput
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => re.test(n) && !/-(rt|cloud)-/.test(n));
  return names.sort(compareVersions).pop();
}

/** Orders strings by their runs of digits as numbers ("6.1.0-9" < "6.1.0-10"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/(\d+)/);
  const pb = b.split(/(\d+)/);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const na = Number(pa[i]);
    const nb = Number(pb[i]);
    if (i % 2 === 1 && !Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
    return pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}

function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** Fetches and unpacks the suite's kernel once; later calls read the cache. */
export function prepareKernel(suite: Suite, log: (msg: string) => void = () => {}): Kernel {
  const dir = path.join(cacheRoot(), suite);
  const ready = path.join(dir, 'release');
  if (!fs.existsSync(ready)) {
    log(`fetching Debian ${suite}'s kernel`);
    fs.rmSync(dir, { recursive: true, force: true });
    const apt = path.join(dir, 'apt');
    fs.mkdirSync(path.join(apt, 'lists', 'partial'), { recursive: true });
    fs.writeFileSync(
      path.join(apt, 'sources.list'),
      `deb ${MIRROR}/debian ${suite} main\ndeb ${MIRROR}/debian-security ${suite}-security main\n`,
    );
    fs.writeFileSync(path.join(apt, 'status'), ''); // this machine's packages play no part
    const opts = [
      '-o', `Dir::Etc::sourcelist=${apt}/sources.list`, '-o', 'Dir::Etc::sourceparts=-',
      '-o', `Dir::State::Lists=${apt}/lists`, '-o', `Dir::State::status=${apt}/status`,
      '-o', `Dir::Cache=${apt}/cache`, '-o', 'APT::Get::List-Cleanup=0',
    ];
    sh('apt-get', [...opts, '-qq', 'update']);
    const pkg = pickKernelPackage(sh('apt-cache', [...opts, 'search', '--names-only', '^linux-image-']), KERNEL_SERIES[suite]);
    if (!pkg) throw new Error(`no linux-image ${KERNEL_SERIES[suite]} package in Debian ${suite}`);
    sh('apt-get', [...opts, '-qq', 'download', pkg], { cwd: apt });
    const deb = fs.readdirSync(apt).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`);
    const root = path.join(dir, 'root');
    sh('dpkg-deb', ['-x', path.join(apt, deb), root]);
    fs.rmSync(path.join(apt, deb));
    // newer releases keep modules under /usr (merged /usr)
    const modulesDir = ['lib/modules', 'usr/lib/modules'].map((d) => path.join(root, d)).find((d) => fs.existsSync(d));
    if (!modulesDir) throw new Error(`${pkg} has no modules`);
    const release = fs.readdirSync(modulesDir)[0];
    fs.renameSync(path.join(modulesDir, release), path.join(dir, 'modules'));
    fs.renameSync(path.join(root, 'boot', `vmlinuz-${release}`), path.join(dir, 'vmlinuz'));
    fs.rmSync(root, { recursive: true, force: true });
    buildInitrd(dir, release);
    fs.writeFileSync(ready, release);
  }
  const release = fs.readFileSync(ready, 'utf8').trim();
  return { suite, release, vmlinuz: path.join(dir, 'vmlinuz'), modules: path.join(dir, 'modules'), initrd: path.join(dir, 'initrd.gz') };
}

/**
 * The initramfs: static busybox, the modules that reach this machine's files,
 * and an init that mounts / read-only over 9p under a RAM overlay, then hands
 * over to the boot script named on the kernel command line.
 */
function buildInitrd(dir: string, release: string): void {
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-initrd-'));
  try {
    for (const d of ['bin', 'mods', 'proc', 'sys', 'dev', 'host', 'rw', 'new']) fs.mkdirSync(path.join(t, d));
    fs.copyFileSync('/bin/busybox', path.join(t, 'bin', 'busybox'));
    fs.chmodSync(path.join(t, 'bin', 'busybox'), 0o755);
    // modprobe works on a module tree laid out as /lib/modules/<release> under a base directory
    const base = path.join(t, 'modbase');
    fs.mkdirSync(path.join(base, 'lib', 'modules'), { recursive: true });
    fs.symlinkSync(path.join(dir, 'modules'), path.join(base, 'lib', 'modules', release));
    sh('depmod', ['-b', base, release]);
    const files: string[] = [];
    for (const m of BOOT_MODULES) {
      for (const line of sh('modprobe', ['-d', base, '-S', release, '--show-depends', m]).split('\n')) {
        const f = /^insmod (\S+)/.exec(line)?.[1];
        if (f && !files.includes(f)) files.push(f);
      }
    }
    const order: string[] = [];
    for (const f of files) {
      // busybox insmod takes plain ELF only
      const name = path.basename(f).replace(/\.(xz|zst)$/, '');
      const out = path.join(t, 'mods', name);
      if (f.endsWith('.xz')) fs.writeFileSync(out, execFileSync('xz', ['-dc', f]));
      else if (f.endsWith('.zst')) fs.writeFileSync(out, execFileSync('zstd', ['-qdc', f]));
      else fs.copyFileSync(f, out);
      order.push(name);
    }
    fs.rmSync(base, { recursive: true });
    fs.writeFileSync(path.join(t, 'mods', 'list'), order.join('\n') + '\n');
    fs.writeFileSync(path.join(t, 'init'), INIT, { mode: 0o755 });
    execFileSync('sh', ['-c', `cd ${t} && find . | cpio -o -H newc --quiet | gzip -1 > ${path.join(dir, 'initrd.gz')}`]);
  } finally {
    fs.rmSync(t, { recursive: true, force: true });
  }
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/list); do insmod /mods/$m || echo "init: insmod $m failed" > /dev/ttyS1; done
boot=$(sed -n 's/.*dkeb.boot=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host
mount -t tmpfs tmpfs /rw; mkdir -p /rw/up /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/up,workdir=/rw/work /new
mount --move /proc /new/proc; mount --move /sys /new/sys; mount --move /dev /new/dev
exec switch_root /new /bin/bash "$boot"
`;

export interface RunOptions {
  /** Environment of the command (besides PATH, HOME and the working directory, which follow ours). */
  env?: Record<string, string>;
  memoryMb?: number;
  cpus?: number;
  timeoutMs?: number;
  /** Called with the command's output as it comes. */
  onOutput?: (chunk: string) => void;
}

export interface RunResult {
  /** The command's exit status; undefined when the VM ended without one. */
  status?: number;
  output: string;
  /** The kernel's console, for when the VM itself failed. */
  console: string;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The script the VM runs after switching to this machine's files: the mounts
 * a host has (tracefs, bpffs, debugfs, cgroup2 at /sys/fs/cgroup, devpts), the
 * kernel's modules, loopback up; then the command, its output on the second
 * serial port and its status on the third; then power off.
 */
export function bootScript(kernel: Kernel, command: string[], cwd: string, env: Record<string, string>): string {
  const exports = Object.entries(env).map(([k, v]) => `export ${k}=${q(v)}`);
  return [
    'mount -t tmpfs tmpfs /run; mkdir -p /run/netns /dev/pts /dev/shm',
    'mount -t devpts -o ptmxmode=0666 devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm',
    'ln -sfn /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr',
    'mount -t bpf bpf /sys/fs/bpf; mount -t debugfs debugfs /sys/kernel/debug; mount -t tracefs tracefs /sys/kernel/tracing',
    'mount -t cgroup2 cgroup2 /sys/fs/cgroup',
    `mkdir -p /lib/modules/${kernel.release} && mount --bind ${q(kernel.modules)} /lib/modules/${kernel.release}`,
    'hostname kernel-vm; ip link set lo up; ulimit -n 65536',
    `cd ${q(cwd)}`,
    'export HOME=/root',
    ...exports,
    `${command.map(q).join(' ')} </dev/null >/dev/ttyS1 2>&1`,
    'echo "status $?" > /dev/ttyS2',
    'echo o > /proc/sysrq-trigger; sleep 10',
    '',
  ].join('\n');
}

/** Boots `kernel` and runs `command` (as root, in our working directory); resolves when the VM is gone. */
export function runInVm(kernel: Kernel, command: string[], opts: RunOptions = {}): Promise<RunResult> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-vm-'));
  const boot = path.join(work, 'boot.sh');
  fs.writeFileSync(boot, bootScript(kernel, command, process.cwd(), { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env }));
  const consoleFile = path.join(work, 'console');
  const statusFile = path.join(work, 'status');
  const args = [
    '-accel', 'tcg', '-m', String(opts.memoryMb ?? 3072), '-smp', String(opts.cpus ?? 2), '-cpu', 'max',
    '-display', 'none', '-no-reboot', '-nodefaults',
    '-kernel', kernel.vmlinuz, '-initrd', kernel.initrd,
    '-append', `console=ttyS0 quiet panic=-1 dkeb.boot=${boot}`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-serial', `file:${consoleFile}`, '-serial', 'stdio', '-serial', `file:${statusFile}`,
  ];
  return new Promise((resolve, reject) => {
    const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let qemuErr = '';
    qemu.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d;
      opts.onOutput?.(d);
    });
    qemu.stderr.setEncoding('utf8').on('data', (d: string) => (qemuErr += d));
    const timer = setTimeout(() => qemu.kill('SIGKILL'), opts.timeoutMs ?? 30 * 60_000);
    qemu.on('error', (err) => {
      clearTimeout(timer);
      fs.rmSync(work, { recursive: true, force: true });
      reject(err);
    });
    qemu.on('exit', () => {
      clearTimeout(timer);
      const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');
      const m = /status (\d+)/.exec(read(statusFile));
      const consoleText = read(consoleFile) + qemuErr;
      fs.rmSync(work, { recursive: true, force: true });
      resolve({ status: m ? Number(m[1]) : undefined, output, console: consoleText });
    });
  });
}

/** `node dist/test/kernels/vm.js SUITE -- COMMAND...`: runs one command on that kernel, its status ours. */
async function main(argv: string[]): Promise<void> {
  const [suite, dashes, ...command] = argv;
  if (!(SUITES as string[]).includes(suite) || dashes !== '--' || !command.length) {
    process.stderr.write(`usage: vm.js ${SUITES.join('|')} -- COMMAND...\n`);
    process.exitCode = 2;
    return;
  }
  const kernel = prepareKernel(suite as Suite, (msg) => process.stderr.write(`vm: ${msg}\n`));
  process.stderr.write(`vm: booting Linux ${kernel.release}\n`);
  const r = await runInVm(kernel, command, { onOutput: (d) => process.stdout.write(d) });
  if (r.status === undefined) process.stderr.write(`vm: the VM ended without the command's status; console:\n${r.console.slice(-3000)}\n`);
  process.exitCode = r.status ?? 1;
}

if (require.main === module) void main(process.argv.slice(2));
