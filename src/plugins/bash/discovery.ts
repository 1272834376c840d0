// Which files to put the readline() probe on, while the collector runs.
//
// The host's own bash binaries (and the shared libreadline when a bash needs
// it) are probed from the start and followed: a package upgrade that puts a
// new file (a new inode) in place is probed within a scan. Running processes
// are followed too, so that bash in containers — files seen only through the
// process's own root — is covered: /proc is scanned, and each process whose
// executable (/proc/PID/exe) is a bash leads to the file that holds readline,
// the bash itself or the libreadline in its /proc/PID/maps, opened through
// /proc/PID/map_files (the file the kernel maps: on overlayfs, the layer's
// file, which is the inode a probe must name). Each file is probed once, keyed
// by device and inode, and the probe is removed when no process uses it and
// it is not one of the host's own.
//
// Cost: a scan reads /proc's directory and stats /proc/PID/exe only for
// processes it has not seen, or seen less than YOUNG_MS ago (a fork execs
// soon after: `docker exec` starts `runc init`, which becomes bash); every
// FULL_SCAN_MS all are looked at again (an `exec bash` in an old process).
// A file is classified once (its name, and whether it defines readline).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { findBashBinaries, findReadlineLibraries } from './binaries';
import { elfDefines } from './elf';

export interface ProbeTarget {
  /** device:inode of the file */
  key: string;
  /** A path that opens it now. */
  path: string;
  /** What it is, for the log: the path a process knows it by. */
  label: string;
  /** A shared library: other programs use it too. */
  shared: boolean;
}

export interface ProbeSink {
  /** Places the probe; false when it cannot be (said once by the sink). */
  attach(t: ProbeTarget): boolean;
  detach(t: ProbeTarget): void;
}

export interface DiscoveryOptions {
  procRoot?: string;
  /** Processes first seen this recently are looked at again at each scan. */
  youngMs?: number;
  /** Every process is looked at again this often. */
  fullScanMs?: number;
  /** How often the host's own bash files are checked for a new inode. */
  hostCheckMs?: number;
  /** Told of each process found running bash, and of each such process gone. */
  onBash?: (pid: number) => void;
  onGone?: (pid: number) => void;
}

interface ProcessEntry {
  /** device:inode of its executable ('' unknown: looked at again). */
  exe: string;
  firstSeenMs: number;
  serial: number;
  bash: boolean;
  /** Probes it holds a reference on. */
  probes: string[];
}

interface Probe {
  target: ProbeTarget;
  users: number;
  /** One of the host's own files. */
  pinned: boolean;
}

const BASH_NAME = /^r?bash$/;
const READLINE_LIB = /\/libreadline\.so[.\d]*$/;

/** device:inode of what `p` leads to, or undefined. */
export function fileKey(p: string): string | undefined {
  try {
    const st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
    return st ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined; // not ours to see (EACCES: a process the kernel keeps from us)
  }
}

export class BashDiscovery {
  private readonly procRoot: string;
  private readonly youngMs: number;
  private readonly fullScanMs: number;
  private readonly hostCheckMs: number;
  private readonly processes = new Map<number, ProcessEntry>();
  /** Executables by device:inode: bash or not. */
  private readonly exes = new Map<string, boolean>();
  /** Files by device:inode: whether they define readline. */
  private readonly definesReadline = new Map<string, boolean>();
  private readonly probes = new Map<string, Probe>();
  /** Files whose probe could not be placed: not tried again. */
  private readonly failed = new Set<string>();
  private serial = 0;
  private lastFullMs = -Infinity;
  private lastHostMs = -Infinity;
  /** Counters: scans, processes seen for the first time, looked at, bash processes found. */
  readonly counts = { scans: 0, new_processes: 0, examined: 0, bash_found: 0, execs: 0 };

  constructor(
    private readonly sink: ProbeSink,
    private readonly opts: DiscoveryOptions = {},
  ) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.youngMs = opts.youngMs ?? 3000;
    this.fullScanMs = opts.fullScanMs ?? 30_000;
    this.hostCheckMs = opts.hostCheckMs ?? 5000;
  }

  /** The files probed now. */
  targets(): ProbeTarget[] {
    return [...this.probes.values()].map((p) => p.target);
  }

  /** Is any probed file a shared library? */
  anyShared(): boolean {
    for (const p of this.probes.values()) if (p.target.shared) return true;
    return false;
  }

  /** The host's own files that hold readline, as at start-up (for a first look before loading). */
  static hostTargets(definesReadline = new Map<string, boolean>()): ProbeTarget[] {
    const defines = (t: { key: string; path: string }) => {
      let d = definesReadline.get(t.key);
      if (d === undefined) definesReadline.set(t.key, (d = elfDefines(t.path, 'readline')));
      return d;
    };
    const out: ProbeTarget[] = [];
    let needsLibrary = false;
    for (const bin of findBashBinaries()) {
      const key = fileKey(bin);
      if (!key) continue;
      if (defines({ key, path: bin })) out.push({ key, path: bin, label: bin, shared: false });
      else needsLibrary = true;
    }
    if (needsLibrary) {
      for (const lib of findReadlineLibraries()) {
        const key = fileKey(lib);
        if (key && !out.some((t) => t.key === key) && defines({ key, path: lib })) out.push({ key, path: lib, label: lib, shared: true });
      }
    }
    return out;
  }

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
        e = { exe: '', firstSeenMs: nowMs, serial, bash: false, probes: [] };
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
      this.release(e);
      if (e.bash) this.opts.onGone?.(pid);
    }
  }

  /** A bash just exec'd (the kernel says so): looked at now, and again while young. */
  noteExec(pid: number, nowMs = performance.now()): void {
    this.counts.execs++;
    let e = this.processes.get(pid);
    if (!e) {
      e = { exe: '', firstSeenMs: nowMs, serial: this.serial, bash: false, probes: [] };
      this.processes.set(pid, e);
      this.counts.new_processes++;
    }
    e.firstSeenMs = nowMs;
    this.examine(pid, e);
  }

  /** Whether `pid` runs bash (looked at now if not known): for lines from a shared libreadline. */
  isBash(pid: number): boolean {
    const e = this.processes.get(pid);
    if (e?.bash) return true;
    const exe = fileKey(`${this.procRoot}/${pid}/exe`);
    if (!exe) return false;
    return this.exes.get(exe) ?? this.classify(pid, exe);
  }

  /** Removes every probe. */
  clear(): void {
    for (const p of this.probes.values()) this.sink.detach(p.target);
    this.probes.clear();
    this.processes.clear();
  }

  private checkHost(): void {
    const now = new Map(BashDiscovery.hostTargets(this.definesReadline).map((t) => [t.key, t]));
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

  private classify(pid: number, exe: string): boolean {
    let link: string;
    try {
      link = fs.readlinkSync(`${this.procRoot}/${pid}/exe`);
    } catch {
      return false;
    }
    const bash = BASH_NAME.test(path.basename(link.replace(/ \(deleted\)$/, '')));
    this.exes.set(exe, bash);
    return bash;
  }

  private examine(pid: number, e: ProcessEntry): void {
    this.counts.examined++;
    const exe = fileKey(`${this.procRoot}/${pid}/exe`) ?? '-'; // a kernel thread has none
    if (exe === e.exe) return;
    this.release(e);
    const wasBash = e.bash;
    e.exe = '';
    e.bash = false;
    const bash = exe !== '-' && (this.exes.get(exe) ?? this.classify(pid, exe));
    if (!bash) {
      e.exe = exe;
      if (wasBash) this.opts.onGone?.(pid);
      return;
    }
    const targets = this.readlineFiles(pid);
    if (!targets.length) return; // not loaded yet (just exec'd): looked at again next scan
    e.exe = exe;
    e.bash = true;
    this.counts.bash_found++;
    this.opts.onBash?.(pid);
    for (const t of targets) {
      const p = this.probes.get(t.key) ?? this.place(t, false);
      if (!p) continue;
      p.users++;
      e.probes.push(t.key);
    }
  }

  /** The files of a bash process that define readline: the bash itself, else its libreadline. */
  private readlineFiles(pid: number): ProbeTarget[] {
    let maps: string;
    let exePath: string;
    try {
      exePath = fs.readlinkSync(`${this.procRoot}/${pid}/exe`).replace(/ \(deleted\)$/, '');
      maps = fs.readFileSync(`${this.procRoot}/${pid}/maps`, 'utf8');
    } catch {
      return [];
    }
    let exeRange: string | undefined;
    let firstFile: [string, string] | undefined;
    const libs = new Map<string, string>();
    for (const line of maps.split('\n')) {
      // start-end perms offset dev inode path
      const m = /^([0-9a-f]+-[0-9a-f]+) \S+ \S+ \S+ (\d+)\s+(\/.*)$/.exec(line);
      if (!m || m[2] === '0') continue;
      const file = m[3].replace(/ \(deleted\)$/, '');
      firstFile ??= [m[1], file];
      if (file === exePath) exeRange ??= m[1];
      else if (READLINE_LIB.test(file) && !libs.has(file)) libs.set(file, m[1]);
    }
    const files: ProbeTarget[] = [];
    const exeFile: [string, string] | undefined = exeRange ? [exeRange, exePath] : firstFile;
    if (exeFile) {
      const t = this.target(pid, exeFile, false);
      if (t) return [t];
    }
    for (const [file, range] of libs) {
      const t = this.target(pid, [range, file], true);
      if (t) files.push(t);
    }
    return files;
  }

  /** A mapped file as a probe target, if it defines readline. */
  private target(pid: number, [range, file]: [string, string], shared: boolean): ProbeTarget | undefined {
    const p = `${this.procRoot}/${pid}/map_files/${range}`;
    const key = fileKey(p);
    if (!key) return undefined;
    let defines = this.definesReadline.get(key);
    if (defines === undefined) this.definesReadline.set(key, (defines = elfDefines(p, 'readline')));
    return defines ? { key, path: p, label: `${file} (mapped by process ${pid})`, shared } : undefined;
  }

  private place(t: ProbeTarget, pinned: boolean): Probe | undefined {
    if (this.failed.has(t.key)) return undefined;
    if (!this.sink.attach(t)) {
      this.failed.add(t.key);
      return undefined;
    }
    const p: Probe = { target: t, users: 0, pinned };
    this.probes.set(t.key, p);
    return p;
  }

  private release(e: ProcessEntry): void {
    for (const key of e.probes) {
      const p = this.probes.get(key);
      if (!p) continue;
      p.users--;
      this.drop(key, p);
    }
    e.probes = [];
  }

  /** Removes a probe nothing needs any more. */
  private drop(key: string, p: Probe): void {
    if (p.users > 0 || p.pinned) return;
    this.probes.delete(key);
    this.sink.detach(p.target);
  }
}
