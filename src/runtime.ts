// Start-up checks of what the kernel and our privileges must provide.
// Each failure is one clear line (SPEC §2: status 1, reported to DataKit).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

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

/** libbpf attaches tracepoints through tracefs; mount it when missing. */
export function ensureTracefs(): string {
  const found = mounts().find((m) => m.type === 'tracefs');
  if (found) return found.target;
  const target = '/sys/kernel/tracing';
  try {
    execFileSync('mount', ['-t', 'tracefs', 'nodev', target], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why = ((err as { stderr?: Buffer }).stderr?.toString() ?? String(err)).trim();
    throw new StartupError(`tracefs is not mounted and mounting it at ${target} failed: ${why}`);
  }
  return target;
}

/** The cgroup v2 hierarchy (pure v2, or the `unified` mount of a hybrid layout). */
export function findCgroup2(): string {
  const found = mounts().find((m) => m.type === 'cgroup2');
  if (!found) throw new StartupError('no cgroup v2 hierarchy is mounted (looked for a cgroup2 mount in /proc/self/mounts)');
  return found.target;
}

export interface Runtime {
  tracefs: string;
  cgroup2: string;
}

export function checkRuntime(): Runtime {
  checkPrivileges();
  checkBtf();
  return { tracefs: ensureTracefs(), cgroup2: findCgroup2() };
}
