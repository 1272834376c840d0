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
import { FileTarget, fileKey, ProbedFiles, ProcessEntry, ProcessScan, ScanOptions, TargetSink } from '../process-scan';
import { findBashBinaries, findReadlineLibraries } from './binaries';
import { elfDefines } from './elf';

export interface ProbeTarget extends FileTarget {
  /** A shared library: other programs use it too. */
  shared: boolean;
}

export type ProbeSink = TargetSink<ProbeTarget>;

export interface DiscoveryOptions extends ScanOptions {
  /** Told of each process found running bash, and of each such process gone. */
  onBash?: (pid: number) => void;
  onGone?: (pid: number) => void;
}

interface BashEntry extends ProcessEntry {
  /** device:inode of its executable ('' unknown: looked at again). */
  exe: string;
  bash: boolean;
  /** Probes it holds. */
  probes: string[];
}

const BASH_NAME = /^r?bash$/;
const READLINE_LIB = /\/libreadline\.so[.\d]*$/;

export class BashDiscovery extends ProcessScan<BashEntry> {
  /** Executables by device:inode: bash or not. */
  private readonly exes = new Map<string, boolean>();
  /** Files by device:inode: whether they define readline. */
  private readonly definesReadline = new Map<string, boolean>();
  private readonly files: ProbedFiles<ProbeTarget>;

  constructor(
    sink: ProbeSink,
    private readonly opts: DiscoveryOptions = {},
  ) {
    super(opts);
    this.files = new ProbedFiles(sink);
    this.counts.bash_found = 0;
  }

  /** The files probed now. */
  targets(): ProbeTarget[] {
    return this.files.targets();
  }

  /** Is any probed file a shared library? */
  anyShared(): boolean {
    return this.files.targets().some((t) => t.shared);
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
    this.files.clear();
    this.processes.clear();
  }

  protected entry(nowMs: number, serial: number): BashEntry {
    return { exe: '', firstSeenMs: nowMs, serial, bash: false, probes: [] };
  }

  protected gone(pid: number, e: BashEntry): void {
    e.probes = this.files.hold(e.probes, []);
    if (e.bash) this.opts.onGone?.(pid);
  }

  protected checkHost(): void {
    this.files.pin(BashDiscovery.hostTargets(this.definesReadline));
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

  protected examine(pid: number, e: BashEntry): void {
    const exe = fileKey(`${this.procRoot}/${pid}/exe`) ?? '-'; // a kernel thread has none
    if (exe === e.exe) return;
    e.probes = this.files.hold(e.probes, []);
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
    e.probes = this.files.hold([], targets);
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
}
