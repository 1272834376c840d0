// Which files to put the TLS probes on, while the collector runs (SPEC §4.3,
// `tls`).
//
// OpenSSL: the host's own libssl.so.3 and libssl.so.1.1 are probed from the
// start and followed (a package upgrade puts a new inode in place); a probe
// is on the file, so every process that maps it, now or later (dlopen), is
// covered. Copies elsewhere — inside containers, bundled with an application
// — are found in the processes that map them: /proc/PID/maps names the file
// and /proc/PID/map_files opens the very inode mapped (on overlayfs, the
// layer's file).
//
// Go: an executable is read once (by device and inode) for crypto/tls; each
// one that has it gets probes on (*Conn).Write and Read (go.ts says where).
//
// Each file is probed once, keyed by device and inode, and its probes go
// when the last process using it exits (the host's own libraries stay).
// Cost: /proc's directory once a scan; a process's maps and executable when
// it is first seen, during its first few seconds (a fork execs, a program
// loads libssl late), then every FULL_SCAN_MS.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostPath } from '../../../paths';
import { fileKey } from '../../bash/discovery';
import { GoOffsets } from './go';

export type TlsLibrary = 'openssl' | 'go';

/** Where Go's Write and Read start and return (file offsets), and the Conn's layout. */
export interface GoProbePoints {
  goVersion: string;
  write: { entry: number; returns: number[] };
  read: { entry: number; returns: number[] };
  offsets: GoOffsets;
}

export type GoInspector = (file: string) => GoProbePoints | { unsupported: string } | null;

export interface TlsTarget {
  /** device:inode of the file */
  key: string;
  /** A path that opens it now. */
  path: string;
  /** What it is, for the log. */
  label: string;
  library: TlsLibrary;
  go?: GoProbePoints;
}

export interface TlsProbeSink {
  /** Places the file's probes; false when they cannot be (said once by the sink). */
  attach(t: TlsTarget): boolean;
  detach(t: TlsTarget): void;
}

export interface TlsDiscoveryOptions {
  procRoot?: string;
  youngMs?: number;
  fullScanMs?: number;
  hostCheckMs?: number;
  /** Reads an executable for Go's crypto/tls; without it Go programs are not looked for. */
  inspectGo?: GoInspector;
  /** The Conn layout the loaded programs follow: a program with another one is not probed. */
  goOffsets?: GoOffsets;
  /** Told once per Go executable that cannot be probed, and why. */
  onUnsupported?: (file: string, why: string) => void;
}

interface ProcessEntry {
  firstSeenMs: number;
  serial: number;
  /** Probes it holds a reference on. */
  probes: string[];
}

interface Probe {
  target: TlsTarget;
  users: number;
  /** One of the host's own libraries. */
  pinned: boolean;
}

const LIBSSL = /\/libssl\.so\.(3|1\.1)$/;
const LIB_DIRS = ['/lib', '/usr/lib', '/lib64', '/usr/lib64', '/usr/local/lib', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu'];

/** The host's libssl files, distinct by inode. */
export function findHostTlsLibraries(): TlsTarget[] {
  const out: TlsTarget[] = [];
  for (const dir of LIB_DIRS.map(hostPath)) {
    for (const name of ['libssl.so.3', 'libssl.so.1.1']) {
      const p = path.join(dir, name);
      const key = fileKey(p);
      if (key && !out.some((t) => t.key === key)) out.push({ key, path: p, label: p, library: 'openssl' });
    }
  }
  return out;
}

export class TlsDiscovery {
  private readonly procRoot: string;
  private readonly youngMs: number;
  private readonly fullScanMs: number;
  private readonly hostCheckMs: number;
  private readonly processes = new Map<number, ProcessEntry>();
  /** Executables by device:inode: their Go probe points, or null (not Go, or not probeable). */
  private readonly executables = new Map<string, GoProbePoints | null>();
  private readonly probes = new Map<string, Probe>();
  /** Files whose probes could not be placed: not tried again. */
  private readonly failed = new Set<string>();
  private serial = 0;
  private lastFullMs = -Infinity;
  private lastHostMs = -Infinity;
  readonly counts = { scans: 0, new_processes: 0, examined: 0, executables_read: 0, execs: 0 };

  constructor(
    private readonly sink: TlsProbeSink,
    private readonly opts: TlsDiscoveryOptions = {},
  ) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.youngMs = opts.youngMs ?? 3000;
    this.fullScanMs = opts.fullScanMs ?? 30_000;
    this.hostCheckMs = opts.hostCheckMs ?? 5000;
  }

  /** The files probed now. */
  targets(): TlsTarget[] {
    return [...this.probes.values()].map((p) => p.target);
  }

  /** One pass: the host's libraries when due, then the processes. */
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
        e = { firstSeenMs: nowMs, serial, probes: [] };
        this.processes.set(pid, e);
        this.counts.new_processes++;
        this.examine(pid, e);
      } else {
        e.serial = serial;
        if (full || nowMs - e.firstSeenMs < this.youngMs) this.examine(pid, e);
      }
    }
    for (const [pid, e] of this.processes) {
      if (e.serial === serial) continue;
      this.processes.delete(pid);
      this.hold(e, []);
    }
  }

  /** A process exec'd a new program: looked at now, and again while young (its libraries load next). */
  noteExec(pid: number, nowMs = performance.now()): void {
    this.counts.execs++;
    let e = this.processes.get(pid);
    if (!e) {
      e = { firstSeenMs: nowMs, serial: this.serial, probes: [] };
      this.processes.set(pid, e);
      this.counts.new_processes++;
    }
    e.firstSeenMs = nowMs;
    this.examine(pid, e);
  }

  /** Removes every probe. */
  clear(): void {
    for (const p of this.probes.values()) this.sink.detach(p.target);
    this.probes.clear();
    this.processes.clear();
  }

  private checkHost(): void {
    const now = new Map(findHostTlsLibraries().map((t) => [t.key, t]));
    for (const [key, p] of this.probes) {
      if (p.pinned && !now.has(key)) {
        p.pinned = false;
        this.drop(key, p);
      }
    }
    for (const t of now.values()) {
      const p = this.probes.get(t.key);
      if (p) p.pinned = true;
      else this.place(t, true);
    }
  }

  /** The process's TLS files now: libssl copies it maps, and its executable if Go. */
  private examine(pid: number, e: ProcessEntry): void {
    this.counts.examined++;
    let maps: string;
    try {
      maps = fs.readFileSync(`${this.procRoot}/${pid}/maps`, 'utf8');
    } catch {
      return; // gone, or a process the kernel keeps from us
    }
    if (!maps) return; // a kernel thread
    const wanted: TlsTarget[] = [];
    const seenFiles = new Set<string>();
    for (const line of maps.split('\n')) {
      if (!line.includes('libssl.so')) continue;
      // start-end perms offset dev inode path
      const m = /^([0-9a-f]+-[0-9a-f]+) \S+ \S+ \S+ (\d+)\s+(\/.*)$/.exec(line);
      if (!m) continue;
      const file = m[3].replace(/ \(deleted\)$/, '');
      if (!LIBSSL.test(file) || seenFiles.has(file)) continue;
      seenFiles.add(file);
      const p = `${this.procRoot}/${pid}/map_files/${m[1]}`;
      const key = fileKey(p);
      if (key) wanted.push({ key, path: p, label: `${file} (mapped by process ${pid})`, library: 'openssl' });
    }
    const go = this.goTarget(pid);
    if (go) wanted.push(go);
    this.hold(e, wanted);
  }

  /** The process's executable as a Go target, if it has crypto/tls. */
  private goTarget(pid: number): TlsTarget | undefined {
    if (!this.opts.inspectGo) return undefined;
    const exe = `${this.procRoot}/${pid}/exe`;
    const key = fileKey(exe);
    if (!key) return undefined;
    let points = this.executables.get(key);
    if (points === undefined) {
      this.counts.executables_read++;
      let r: ReturnType<GoInspector>;
      try {
        r = this.opts.inspectGo(exe);
      } catch {
        return undefined; // gone meanwhile: read again if it is still there next time
      }
      const want = this.opts.goOffsets;
      if (r && !('unsupported' in r) && want && JSON.stringify(r.offsets) !== JSON.stringify(want)) {
        r = { unsupported: `${r.goVersion} lays out tls.Conn otherwise than the programs expect` };
      }
      points = r && 'unsupported' in r ? null : r;
      if (r && 'unsupported' in r) this.opts.onUnsupported?.(this.exeName(pid), r.unsupported);
      this.executables.set(key, points);
    }
    if (!points) return undefined;
    return { key, path: exe, label: `${this.exeName(pid)} (Go ${points.goVersion}, process ${pid})`, library: 'go', go: points };
  }

  private exeName(pid: number): string {
    try {
      return fs.readlinkSync(`${this.procRoot}/${pid}/exe`).replace(/ \(deleted\)$/, '');
    } catch {
      return `process ${pid}`;
    }
  }

  /** Makes the process hold exactly the probes of `wanted`. */
  private hold(e: ProcessEntry, wanted: TlsTarget[]): void {
    const keys = wanted.map((t) => t.key);
    for (const key of e.probes) {
      if (keys.includes(key)) continue;
      const p = this.probes.get(key);
      if (!p) continue;
      p.users--;
      this.drop(key, p);
    }
    const held: string[] = [];
    for (const t of wanted) {
      if (e.probes.includes(t.key)) {
        held.push(t.key);
        continue;
      }
      const p = this.probes.get(t.key) ?? this.place(t, false);
      if (!p) continue;
      p.users++;
      held.push(t.key);
    }
    e.probes = held;
  }

  private place(t: TlsTarget, pinned: boolean): Probe | undefined {
    if (this.failed.has(t.key)) return undefined;
    if (!this.sink.attach(t)) {
      this.failed.add(t.key);
      return undefined;
    }
    const p: Probe = { target: t, users: 0, pinned };
    this.probes.set(t.key, p);
    return p;
  }

  /** Removes a probe nothing needs any more. */
  private drop(key: string, p: Probe): void {
    if (p.users > 0 || p.pinned) return;
    this.probes.delete(key);
    this.sink.detach(p.target);
  }
}
