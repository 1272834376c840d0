// container_id without Kubernetes: the container a process runs in, from its
// cgroup path, as the runtimes lay it out:
//   docker        /docker/<id>, /system.slice/docker-<id>.scope
//   containerd    /system.slice/containerd-<id>.scope, /<namespace>/<id>,
//                 kubepods…/cri-containerd-<id>.scope, nerdctl-<id>.scope
//   cri-o         kubepods…/crio-<id>.scope
//   podman        /machine.slice/libpod-<id>.scope[/container]
// (<id>: 64 hex digits). The id is the last one in the path: a container
// inside a container is the inner one. Runtime monitors (conmon, in
// crio-conmon-<id>.scope and libpod-conmon-<id>.scope) are not the container.
import * as fs from 'node:fs';
import { CgroupIndex } from './cgroups';

const CONTAINER_DIR = /^(?:(?:docker|containerd|cri-containerd|crio|libpod|nerdctl)-)?([0-9a-f]{64})(?:\.scope)?$/;

/** The container id a cgroup path names, if any. */
export function containerIdFromCgroup(cgroupPath: string): string | undefined {
  const parts = cgroupPath.split('/');
  for (let i = parts.length - 1; i >= 0; i--) {
    const m = CONTAINER_DIR.exec(parts[i]);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * The container id in the text of /proc/PID/cgroup: the cgroup v2 line
 * (`0::/…`) first, else the first cgroup v1 hierarchy that names one.
 */
export function containerIdFromProcCgroup(text: string): string | undefined {
  const lines = text.split('\n');
  for (const l of lines) if (l.startsWith('0::')) return containerIdFromCgroup(l.slice(3).trim()) ?? v1(lines);
  return v1(lines);
}

function v1(lines: string[]): string | undefined {
  for (const l of lines) {
    const path = l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1).trim();
    const id = path && containerIdFromCgroup(path);
    if (id) return id;
  }
  return undefined;
}

/** What the flow plugins need: the container of a connection's owner. */
export interface ContainerLookup {
  /** The container id, or undefined for a host process (or one no longer known). */
  containerOf(pid: number | undefined, cgroupId?: number): string | undefined;
}

/** Looked-up processes remembered before /proc is read again (a process rarely changes cgroup). */
const PID_TTL_MS = 10_000;
const MAX_PIDS = 65_536;

export class Containers implements ContainerLookup {
  private readonly byCgroup?: CgroupIndex;
  private pids = new Map<number, string | undefined>();
  private pidsSince = performance.now();
  /**
   * Containers of processes learnt from the cgroup ids of their connections:
   * for a process gone before a plugin without cgroup ids (dnsflow, httpflow)
   * asks (a `dig` in a container).
   */
  private learnt = new Map<number, string>();

  /** @param cgroup2 the host's cgroup v2 mount, to name the cgroup ids the kernel records (none: by pid only) */
  constructor(
    cgroup2?: string,
    private readonly procRoot = '/proc',
  ) {
    if (cgroup2) this.byCgroup = new CgroupIndex(cgroup2, containerIdFromCgroup);
  }

  containerOf(pid: number | undefined, cgroupId?: number): string | undefined {
    // recorded by the kernel with the connection: exact even after the process is gone
    if (cgroupId && this.byCgroup) {
      const id = this.byCgroup.find(cgroupId);
      if (id) {
        if (pid) {
          if (this.learnt.size >= MAX_PIDS) this.learnt.clear();
          this.learnt.set(pid, id);
        }
        return id;
      }
    }
    return pid ? this.ofPid(pid) : undefined;
  }

  /** The container of a running process (a host process: undefined). */
  ofPid(pid: number): string | undefined {
    const now = performance.now();
    if (now - this.pidsSince > PID_TTL_MS || this.pids.size >= MAX_PIDS) {
      this.pids.clear(); // pids are reused: look again
      this.pidsSince = now;
    }
    if (this.pids.has(pid)) return this.pids.get(pid);
    let id: string | undefined;
    try {
      // a running process's own cgroup is the answer, even if its pid was another's before
      id = containerIdFromProcCgroup(fs.readFileSync(`${this.procRoot}/${pid}/cgroup`, 'utf8'));
      this.learnt.delete(pid);
    } catch {
      id = this.learnt.get(pid); // gone already: what its connections said
    }
    this.pids.set(pid, id);
    return id;
  }
}
