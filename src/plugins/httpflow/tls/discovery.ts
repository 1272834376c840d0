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
import { FileTarget, fileKey, ProbedFiles, ProcessEntry, ProcessScan, ScanOptions, TargetSink } from '../../process-scan';
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

export interface TlsTarget extends FileTarget {
  library: TlsLibrary;
  go?: GoProbePoints;
}

export type TlsProbeSink = TargetSink<TlsTarget>;

export interface TlsDiscoveryOptions extends ScanOptions {
  /** Reads an executable for Go's crypto/tls; without it Go programs are not looked for. */
  inspectGo?: GoInspector;
  /** The Conn layout the loaded programs follow: a program with another one is not probed. */
  goOffsets?: GoOffsets;
  /** Told once per Go executable that cannot be probed, and why. */
  onUnsupported?: (file: string, why: string) => void;
}

interface TlsEntry extends ProcessEntry {
  /** Probes it holds. */
  probes: string[];
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

export class TlsDiscovery extends ProcessScan<TlsEntry> {
  /** Executables by device:inode: their Go probe points, or null (not Go, or not probeable). */
  private readonly executables = new Map<string, GoProbePoints | null>();
  private readonly files: ProbedFiles<TlsTarget>;

  constructor(
    sink: TlsProbeSink,
    private readonly opts: TlsDiscoveryOptions = {},
  ) {
    super(opts);
    this.files = new ProbedFiles(sink);
    this.counts.executables_read = 0;
  }

  /** The files probed now. */
  targets(): TlsTarget[] {
    return this.files.targets();
  }

  /** Removes every probe. */
  clear(): void {
    this.files.clear();
    this.processes.clear();
  }

  protected entry(nowMs: number, serial: number): TlsEntry {
    return { firstSeenMs: nowMs, serial, probes: [] };
  }

  protected gone(_pid: number, e: TlsEntry): void {
    e.probes = this.files.hold(e.probes, []);
  }

  protected checkHost(): void {
    this.files.pin(findHostTlsLibraries());
  }

  /** The process's TLS files now: libssl copies it maps, and its executable if Go. */
  protected examine(pid: number, e: TlsEntry): void {
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
    e.probes = this.files.hold(e.probes, wanted);
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
}
