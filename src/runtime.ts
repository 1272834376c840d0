// Start-up checks of what the kernel and our privileges must provide.
// Each failure is one clear line (SPEC §2: status 1, reported to DataKit).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { log } from './log';

export class StartupError extends Error {}

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

function effectiveCaps(): bigint {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

function hasCap(caps: bigint, cap: number): boolean {
  return ((caps >> BigInt(cap)) & 1n) === 1n;
}

interface Mount {
  source: string;
  target: string;
  type: string;
}

function mounts(): Mount[] {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [source, target, type] = l.split(' ');
      return { source, target: target.replace(/\\040/g, ' '), type };
    });
}

export function checkPrivileges(): void {
  const caps = effectiveCaps();
  const bpfCaps = hasCap(caps, CAP_SYS_ADMIN) || (hasCap(caps, CAP_BPF) && hasCap(caps, CAP_PERFMON));
  if (!bpfCaps || !hasCap(caps, CAP_NET_ADMIN)) {
    throw new StartupError(
      'datakit-ebpf must run as root (or with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN)',
    );
  }
}

export function checkBtf(): void {
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) {
    throw new StartupError(
      'kernel BTF not found at /sys/kernel/btf/vmlinux: a kernel built with CONFIG_DEBUG_INFO_BTF=y is required',
    );
  }
}

/** The oldest kernel whose hooks the programs are built and tested for (SPEC §2). */
export const OLDEST_KERNEL: readonly [number, number] = [5, 10];

/** "5.10.0-35-amd64" -> [5, 10]; undefined when it does not start with a version. */
export function kernelVersion(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function checkKernel(release = os.release()): void {
  const v = kernelVersion(release);
  const [major, minor] = OLDEST_KERNEL;
  if (v && (v[0] < major || (v[0] === major && v[1] < minor))) {
    throw new StartupError(`Linux ${release} is too old: datakit-ebpf needs Linux ${major}.${minor} or newer`);
  }
}

/** Mounts a file system; a failure costs the plugins that need it, not the collector. */
function mount(args: string[], what: string): void {
  try {
    execFileSync('mount', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why = ((err as { stderr?: Buffer }).stderr?.toString() ?? String(err)).trim();
    throw new Error(`${what}: ${why}`);
  }
}

/** Where tracefs is, mounting it if it is not (libbpf finds classic tracepoints there). */
export function ensureTracefs(): string {
  const found = mounts().find((m) => m.type === 'tracefs');
  if (found) return found.target;
  const target = '/sys/kernel/tracing';
  mount(['-t', 'tracefs', 'nodev', target], `tracefs is not mounted and mounting it at ${target} failed`);
  return target;
}

/** Where a private cgroup v2 hierarchy is mounted on hosts that have none mounted. */
const PRIVATE_CGROUP2 = '/run/datakit-ebpf/cgroup2';

/**
 * The cgroup v2 hierarchy the cgroup programs attach to: the host's (pure v2,
 * or the `unified` mount of a hybrid layout), found when first asked for. On
 * a host with only cgroup v1 mounted, a private mount of the same hierarchy
 * (every process is in its root), let go of once programs are attached: they
 * hold the cgroup, not the mount.
 */
export class Cgroup2 {
  private root?: string;
  private privateMount = false;

  /** The root directory of the hierarchy, mounting a private one if needed. */
  path(): string {
    if (this.root) return this.root;
    const found = mounts().find((m) => m.type === 'cgroup2');
    if (found) {
      this.root = found.target;
      return this.root;
    }
    fs.mkdirSync(PRIVATE_CGROUP2, { recursive: true });
    mount(['-t', 'cgroup2', 'cgroup2', PRIVATE_CGROUP2], `no cgroup v2 hierarchy is mounted and mounting one at ${PRIVATE_CGROUP2} failed`);
    log.info(`cgroup v2 is not mounted (a cgroup v1 host): mounted it at ${PRIVATE_CGROUP2} until programs are attached`);
    this.root = PRIVATE_CGROUP2;
    this.privateMount = true;
    return this.root;
  }

  /** The host's own cgroup v2 mount, to read cgroup paths from; undefined if it has none. */
  hostMount(): string | undefined {
    return mounts().find((m) => m.type === 'cgroup2' && m.target !== PRIVATE_CGROUP2)?.target;
  }

  /** Unmounts a private hierarchy (programs stay attached); nothing to do otherwise. */
  release(): void {
    if (!this.privateMount) return;
    try {
      execFileSync('umount', ['-l', PRIVATE_CGROUP2], { stdio: 'ignore' });
      fs.rmdirSync(PRIVATE_CGROUP2);
    } catch (err) {
      log.warn(`could not unmount ${PRIVATE_CGROUP2}: ${(err as Error).message}`);
    }
    this.privateMount = false;
    this.root = undefined;
  }
}

/** What every plugin needs: privileges, BTF and a kernel that is new enough. */
export function checkRuntime(): void {
  checkPrivileges();
  checkBtf();
  checkKernel();
}
