// What ebpf-bash and httpflow's TLS capture share to find the files to probe
// while the collector runs: a walk of /proc that looks at each process when it
// is first seen, during its first seconds, at each full re-check and when the
// kernel reports its exec; and probes on files (by device and inode) shared by
// the processes that use them, removed with their last user unless pinned (the
// host's own files).
import * as fs from 'node:fs';
import { BpfObject, forEachRecord, RingBuffer } from '../bpf/native';

/** A file a probe goes on. */
export interface FileTarget {
  /** device:inode of the file */
  key: string;
  /** A path that opens it now. */
  path: string;
  /** What it is, for the log. */
  label: string;
}

export interface TargetSink<T extends FileTarget> {
  /** Places the probe; false when it cannot be (said once by the sink). */
  attach(t: T): boolean;
  detach(t: T): void;
}

/** device:inode of what `p` leads to, or undefined. */
export function fileKey(p: string): string | undefined {
  try {
    const st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
    return st ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined; // not ours to see (EACCES: a process the kernel keeps from us)
  }
}

interface Probe<T> {
  target: T;
  users: number;
  /** One of the host's own files. */
  pinned: boolean;
}

/** Probes on files, each placed once and shared by the processes that hold it. */
export class ProbedFiles<T extends FileTarget> {
  private readonly probes = new Map<string, Probe<T>>();
  /** Files whose probe could not be placed: not tried again. */
  private readonly failed = new Set<string>();

  constructor(private readonly sink: TargetSink<T>) {}

  targets(): T[] {
    return [...this.probes.values()].map((p) => p.target);
  }

  /** The probes held now by a process that holds `held`, once it holds exactly `wanted`. */
  hold(held: string[], wanted: T[]): string[] {
    const keys = wanted.map((t) => t.key);
    for (const key of held) if (!keys.includes(key)) this.release(key);
    const out: string[] = [];
    for (const t of wanted) {
      if (held.includes(t.key) || this.acquire(t)) out.push(t.key);
    }
    return out;
  }

  /** The pinned files become exactly `files`: new ones probed, old ones let go unless held. */
  pin(files: T[]): void {
    const now = new Map(files.map((t) => [t.key, t]));
    for (const [key, p] of this.probes) {
      if (p.pinned && !now.has(key)) {
        p.pinned = false;
        this.drop(key, p);
      }
    }
    for (const t of now.values()) {
      const p = this.probes.get(t.key) ?? this.place(t);
      if (p) p.pinned = true;
    }
  }

  /** Removes every probe. */
  clear(): void {
    for (const p of this.probes.values()) this.sink.detach(p.target);
    this.probes.clear();
  }

  private acquire(t: T): boolean {
    const p = this.probes.get(t.key) ?? this.place(t);
    if (p) p.users++;
    return !!p;
  }

  private release(key: string): void {
    const p = this.probes.get(key);
    if (!p) return;
    p.users--;
    this.drop(key, p);
  }

  private place(t: T): Probe<T> | undefined {
    if (this.failed.has(t.key)) return undefined;
    if (!this.sink.attach(t)) {
      this.failed.add(t.key);
      return undefined;
    }
    const p: Probe<T> = { target: t, users: 0, pinned: false };
    this.probes.set(t.key, p);
    return p;
  }

  /** Removes a probe nothing needs any more. */
  private drop(key: string, p: Probe<T>): void {
    if (p.users > 0 || p.pinned) return;
    this.probes.delete(key);
    this.sink.detach(p.target);
  }
}

export interface ProcessEntry {
  firstSeenMs: number;
  serial: number;
}

export interface ScanOptions {
  procRoot?: string;
  /** Processes first seen this recently are looked at again at each scan. */
  youngMs?: number;
  /** Every process is looked at again this often. */
  fullScanMs?: number;
  /** How often the host's own files are checked (checkHost). */
  hostCheckMs?: number;
}

/**
 * A walk of /proc, once per scan: a process is looked at when first seen,
 * again while younger than youngMs (a fork execs soon after; a program loads
 * its libraries), at each full re-check, and when the kernel reports its exec.
 */
export abstract class ProcessScan<E extends ProcessEntry> {
  protected readonly procRoot: string;
  private readonly youngMs: number;
  private readonly fullScanMs: number;
  private readonly hostCheckMs: number;
  protected readonly processes = new Map<number, E>();
  private serial = 0;
  private lastFullMs = -Infinity;
  private lastHostMs = -Infinity;
  readonly counts: Record<string, number> = { scans: 0, new_processes: 0, examined: 0, execs: 0 };

  constructor(opts: ScanOptions) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.youngMs = opts.youngMs ?? 3000;
    this.fullScanMs = opts.fullScanMs ?? 30_000;
    this.hostCheckMs = opts.hostCheckMs ?? 5000;
  }

  /** A new process's entry. */
  protected abstract entry(nowMs: number, serial: number): E;
  /** Looks at a process (counted by the caller). */
  protected abstract examine(pid: number, e: E): void;
  /** A process seen before is gone. */
  protected abstract gone(pid: number, e: E): void;
  /** Follows the host's own files. */
  protected abstract checkHost(): void;

  /** One pass: the host's files when due, then the processes. */
  scan(nowMs = performance.now()): void {
    this.counts.scans++;
    if (nowMs - this.lastHostMs >= this.hostCheckMs) {
      this.lastHostMs = nowMs;
      this.checkHost();
    }
    const full = nowMs - this.lastFullMs >= this.fullScanMs;
    if (full) this.lastFullMs = nowMs;
    const serial = ++this.serial;
    let names: string[];
    try {
      names = fs.readdirSync(this.procRoot);
    } catch {
      return;
    }
    for (const name of names) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue; // not a process
      const pid = Number(name);
      let e = this.processes.get(pid);
      if (!e) {
        e = this.entry(nowMs, serial);
        this.processes.set(pid, e);
        this.counts.new_processes++;
        this.look(pid, e);
      } else {
        e.serial = serial;
        if (full || nowMs - e.firstSeenMs < this.youngMs) this.look(pid, e);
      }
    }
    for (const [pid, e] of this.processes) {
      if (e.serial === serial) continue;
      this.processes.delete(pid);
      this.gone(pid, e);
    }
  }

  /** The kernel reports that `pid` exec'd: looked at now, and again while young. */
  noteExec(pid: number, nowMs = performance.now()): void {
    this.counts.execs++;
    let e = this.processes.get(pid);
    if (!e) {
      e = this.entry(nowMs, this.serial);
      this.processes.set(pid, e);
      this.counts.new_processes++;
    }
    e.firstSeenMs = nowMs;
    this.look(pid, e);
  }

  private look(pid: number, e: E): void {
    this.counts.examined++;
    this.examine(pid, e);
  }
}

/**
 * Follows execs: `program`, a raw tracepoint on sched_process_exec, writes
 * each new program's pid to the ring buffer `map`; each is handed to the scan
 * `scanOf` returns (undefined once stopped). The ring is the caller's to drain
 * (at least every few hundred ms: it re-arms the wake-up) and to close.
 */
export function followExecs(obj: BpfObject, program: string, map: string, ringBytes: number, scanOf: () => { noteExec(pid: number): void } | undefined): RingBuffer {
  // each exec may wake us (the first after a quiet spell at once); a stream of
  // them, once per drain: the caller's drain bounds the rate
  const ring = new RingBuffer(obj.map(map), (buf, bytes) => forEachRecord(buf, bytes, (off, len) => len >= 4 && scanOf()?.noteExec(buf.readUInt32LE(off))), ringBytes).wakeOncePerDrain();
  try {
    obj.attachRawTracepoint(program, 'sched_process_exec');
  } catch (err) {
    ring.close();
    throw err;
  }
  return ring;
}
