// Typed wrapper over the N-API addon (native/addon.cc). The rest of the code
// touches eBPF only through this module.
import * as fs from 'node:fs';
import { bpfObjectPath, nativeAddonPath } from '../paths';
import { ensureTracefs } from '../runtime';

interface RawProgram { name: string; section: string; fd: number }
interface RawMap { name: string; fd: number; type: number; keySize: number; valueSize: number; maxEntries: number }

interface Addon {
  openObject(elf: Buffer, name: string): number;
  setInitialValue(obj: number, map: string, data: Buffer, offset: number): void;
  setMaxEntries(obj: number, map: string, n: number): void;
  setAutoload(obj: number, prog: string, load: boolean): void;
  reuseMap(obj: number, map: string, fd: number): void;
  loadObject(obj: number): void;
  closeObject(obj: number): void;
  programs(obj: number): RawProgram[];
  maps(obj: number): RawMap[];
  attachRawTracepoint(obj: number, prog: string, tp: string): number;
  attachTracepoint(obj: number, prog: string, category: string, name: string): number;
  attachTrace(obj: number, prog: string): number;
  attachKprobe(obj: number, prog: string, retprobe: boolean, func: string): number;
  attachUprobe(obj: number, prog: string, retprobe: boolean, pid: number, binary: string, offset: number, func: string): number;
  attachCgroup(obj: number, prog: string, cgroupDir: string): number;
  attachSocketFilter(obj: number, prog: string): number;
  detach(link: number): void;
  mapLookup(fd: number, key: Buffer, value: Buffer): boolean;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapBatch(fd: number, keys: Buffer, keySize: number, values: Buffer, valueSize: number, del: boolean, cursor?: Buffer): number;
  mapDeleteBatch(fd: number, keys: Buffer, keySize: number, count: number): number;
  numPossibleCpus(): number;
  kernelBtfFind(name: string, kind: number): number;
  libbpfVersion(): string;
  kernelHasHelper(progType: number, helperId: number): boolean;
  ringOpen(fd: number, buffer: Buffer, onData: (bytes: number) => void): number;
  ringDrain(ring: number): number;
  ringClose(ring: number): void;
  ringWatch(ring: number, on: boolean): void;
  probeTarget(value: number): number;
}

/** An eBPF operation failed; carries the errno and what libbpf logged. */
export class BpfError extends Error {
  constructor(message: string, readonly op: string, readonly errno: number, readonly libbpfLog: string) {
    super(message);
    this.name = 'BpfError';
  }
}

let addon: Addon | undefined;

function native(): Addon {
  if (!addon) {
    if (!fs.existsSync(nativeAddonPath)) {
      throw new Error(`native addon not built (${nativeAddonPath}): run "npm run setup"`);
    }
    addon = require(nativeAddonPath) as Addon;
  }
  return addon;
}

/** Runs a native call and turns its errors into BpfError. */
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const e = err as Error & { op?: string; errno?: number; libbpfLog?: string };
    if (e && typeof e.errno === 'number' && e.op) {
      const log = (e.libbpfLog ?? '').trim();
      throw new BpfError(log ? `${e.message}\n${log}` : e.message, e.op, e.errno, e.libbpfLog ?? '');
    }
    throw err;
  }
}

/** BTF kinds that kernelBtf() looks up. */
export const BTF_KIND = { STRUCT: 4, TYPEDEF: 8, FUNC: 12 } as const;

/**
 * Looks `name` up in the running kernel's BTF: undefined when absent, else its
 * member count (for a function, how many parameters it takes).
 */
export function kernelBtf(name: string, kind: number): number | undefined {
  const n = call(() => native().kernelBtfFind(name, kind));
  return n < 0 ? undefined : n;
}

/** Program types and helpers that kernelHasHelper is asked about (numbers from linux/bpf.h). */
export const PROG_TYPE_CGROUP_SKB = 8;
export const HELPER_GET_CURRENT_PID_TGID = 14;

/** Whether programs of `progType` may call helper `helperId` on this kernel. */
export function kernelHasHelper(progType: number, helperId: number): boolean {
  return call(() => native().kernelHasHelper(progType, helperId));
}

export function libbpfVersion(): string {
  return native().libbpfVersion();
}

/** A 32-bit map key or value (an array index, a flag, a program's file descriptor). */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function possibleCpus(): number {
  return call(() => native().numPossibleCpus());
}

const PERCPU_MAP_TYPES = new Set([5 /* PERCPU_HASH */, 6 /* PERCPU_ARRAY */, 10 /* LRU_PERCPU_HASH */]);
export const BPF_NOEXIST = 1;

export class Link {
  private open = true;
  constructor(private readonly handle: number, readonly description: string) {}
  detach(): void {
    if (this.open) native().detach(this.handle);
    this.open = false;
  }
}

export interface BatchResult {
  count: number;
  keys: Buffer;
  values: Buffer;
}

export class BpfMap {
  readonly name: string;
  readonly fd: number;
  readonly type: number;
  readonly keySize: number;
  readonly maxEntries: number;
  /** Bytes per value as user space sees it: per-CPU maps hold one 8-byte-aligned slot per CPU. */
  readonly valueSize: number;
  private chunkKeys?: Buffer;
  private chunkValues?: Buffer;

  constructor(raw: RawMap) {
    this.name = raw.name;
    this.fd = raw.fd;
    this.type = raw.type;
    this.keySize = raw.keySize;
    this.maxEntries = raw.maxEntries;
    this.valueSize = PERCPU_MAP_TYPES.has(raw.type) ? ((raw.valueSize + 7) & ~7) * possibleCpus() : raw.valueSize;
  }

  lookup(key: Buffer, value: Buffer = Buffer.alloc(this.valueSize)): Buffer | undefined {
    return call(() => native().mapLookup(this.fd, key, value)) ? value : undefined;
  }

  update(key: Buffer, value: Buffer, flags = 0): void {
    call(() => native().mapUpdate(this.fd, key, value, flags));
  }

  delete(key: Buffer): boolean {
    return call(() => native().mapDelete(this.fd, key));
  }

  /** Deletes the first `count` keys packed in `keys`, in as few syscalls as it can; returns how many were there. */
  deleteBatch(keys: Buffer, count: number): number {
    return count ? call(() => native().mapDeleteBatch(this.fd, keys, this.keySize, count)) : 0;
  }

  /**
   * Reads every entry (optionally deleting them) a chunk of `chunkEntries` at a
   * time, through buffers reused from chunk to chunk (and call to call): memory
   * stays small however full the map is. `onChunk` must copy what it keeps.
   */
  forEachChunk(chunkEntries: number, onChunk: (chunk: BatchResult) => void, opts: { delete?: boolean } = {}): number {
    const n = Math.max(1, Math.min(chunkEntries, this.maxEntries));
    if (!this.chunkKeys || this.chunkKeys.length < n * this.keySize) {
      this.chunkKeys = Buffer.allocUnsafeSlow(n * this.keySize);
      this.chunkValues = Buffer.allocUnsafeSlow(n * this.valueSize);
    }
    const keys = this.chunkKeys;
    const values = this.chunkValues!;
    const cursor = Buffer.alloc(1 + this.keySize + 8);
    let total = 0;
    while (cursor[0] !== 2) {
      const count = call(() => native().mapBatch(this.fd, keys, this.keySize, values, this.valueSize, !!opts.delete, cursor));
      if (count === 0 && cursor[0] !== 2) throw new BpfError(`map ${this.name}: a batch did not fit in ${n} entries`, 'map lookup_batch', 28, '');
      total += count;
      if (count) onChunk({ count, keys, values });
    }
    return total;
  }

  /** A per-CPU array of u64 counters, summed over CPUs, by slot name. */
  namedCounters(names: readonly string[]): Record<string, number> {
    const sums = this.sumPerCpuCounters();
    const out: Record<string, number> = {};
    names.forEach((name, i) => (out[name] = Number(sums[i] ?? 0n)));
    return out;
  }

  /** Sums a per-CPU array of u64 counters into one bigint per slot. */
  sumPerCpuCounters(): bigint[] {
    const cpus = possibleCpus();
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(this.valueSize);
    const out: bigint[] = [];
    for (let slot = 0; slot < this.maxEntries; slot++) {
      key.writeUInt32LE(slot);
      let sum = 0n;
      if (this.lookup(key, value)) for (let c = 0; c < cpus; c++) sum += value.readBigUInt64LE(c * 8);
      out.push(sum);
    }
    return out;
  }
}

/** Called with a buffer of records: [u32 length][u32 pad][data padded to 8]. */
export type RecordHandler = (buf: Buffer, bytes: number) => void;

/** Iterates the records of a drained chunk. */
export function forEachRecord(buf: Buffer, bytes: number, fn: (offset: number, length: number) => void): void {
  let off = 0;
  while (off < bytes) {
    const len = buf.readUInt32LE(off);
    try {
      fn(off + 8, len);
    } catch (err) {
      // one record is lost, counted; the rest of the chunk still goes through
      recordFailed(err);
    }
    off += 8 + ((len + 7) & ~7);
  }
}

const failures = { count: 0, last: '' };

function recordFailed(err: unknown): void {
  failures.count++;
  failures.last = err instanceof Error ? `${err.message.split('\n')[0]} (${err.stack?.split('\n')[1]?.trim() ?? ''})` : String(err);
}

/** Ring-buffer records whose handler threw (each lost), and what the latest one said. */
export function recordFailures(): { count: number; last: string } {
  return failures;
}

/**
 * Consumer of a BPF ring buffer map. The kernel side wakes us only past a
 * threshold; drain() on a timer picks up the rest. Records are copied in bulk
 * into one reused buffer and handed over a chunk at a time.
 */
export class RingBuffer {
  private handle: number;
  private readonly buffer: Buffer;
  /** One wake-up per drain() at most (see wakeOncePerDrain). */
  private wakeOnce = false;
  private watching = true;

  constructor(map: BpfMap, private readonly onRecords: RecordHandler, bufferBytes = 1 << 20) {
    this.buffer = Buffer.alloc(bufferBytes);
    this.handle = call(() => native().ringOpen(map.fd, this.buffer, (n) => this.woken(n)));
  }

  /**
   * For a ring whose every record may wake us (the kernel wakes a reader that
   * had caught up): after a wake-up, the next waits for the next drain(). The
   * first record after a quiet spell is read at once, and a stream of them
   * wakes us no more often than drain() runs.
   */
  wakeOncePerDrain(): this {
    this.wakeOnce = true;
    return this;
  }

  private woken(bytes: number): void {
    this.deliver(bytes);
    if (this.wakeOnce && this.watching && this.handle) {
      this.watching = false;
      native().ringWatch(this.handle, false);
    }
  }

  private deliver(bytes: number): void {
    try {
      this.onRecords(this.buffer, bytes);
    } catch (err) {
      // An exception must not unwind through the native callback; what the chunk held is lost, counted.
      recordFailed(err);
    }
  }

  /**
   * Reads what is pending, at most `maxChunks` buffers' worth, so a producer
   * faster than us cannot hold the event loop (timers, flushes) forever: the
   * next drain or wake-up takes the rest. Returns the record bytes delivered.
   */
  drain(maxChunks = 16): number {
    if (!this.watching && this.handle) {
      this.watching = true;
      native().ringWatch(this.handle, true);
    }
    let total = 0;
    for (let i = 0; i < maxChunks; i++) {
      const n = native().ringDrain(this.handle);
      if (!n) break;
      total += n;
      this.deliver(n);
    }
    return total;
  }

  close(): void {
    if (this.handle) native().ringClose(this.handle);
    this.handle = 0;
  }
}

/** Calls the addon's own uprobe target (see native/addon.cc); for self-tests. */
export function probeTarget(value: number): number {
  return native().probeTarget(value);
}

export const nativeAddonFile = nativeAddonPath;

/** A loaded (or about to be loaded) eBPF object file from build/bpf/. */
export class BpfObject {
  private handle: number;
  private readonly links: Link[] = [];
  private mapsByName?: Map<string, BpfMap>;

  private constructor(handle: number, readonly name: string) {
    this.handle = handle;
  }

  /** Opens build/bpf/<name>.bpf.o (or an explicit path). */
  static open(name: string, file = bpfObjectPath(name)): BpfObject {
    const elf = fs.readFileSync(file);
    return new BpfObject(call(() => native().openObject(elf, name)), name);
  }

  /** Writes read-only configuration before load (a `const volatile` global). */
  setConfig(data: Buffer, offset = 0): void {
    call(() => native().setInitialValue(this.handle, '.rodata', data, offset));
  }

  setMaxEntries(map: string, n: number): void {
    call(() => native().setMaxEntries(this.handle, map, n));
  }

  /** Leaves a program out of load (a variant for other kernels); call before load(). */
  setAutoload(prog: string, load: boolean): void {
    call(() => native().setAutoload(this.handle, prog, load));
  }

  /** Makes this object use `map` (another object's) for its map `name`; call before load(). */
  reuseMap(name: string, map: BpfMap): void {
    call(() => native().reuseMap(this.handle, name, map.fd));
  }

  load(): void {
    call(() => native().loadObject(this.handle));
  }

  map(name: string): BpfMap {
    if (!this.mapsByName) {
      this.mapsByName = new Map(native().maps(this.handle).map((m) => [m.name, new BpfMap(m)]));
    }
    const m = this.mapsByName.get(name);
    if (!m) throw new Error(`${this.name}: no map named ${name}`);
    return m;
  }

  programs(): string[] {
    return native().programs(this.handle).map((p) => p.name);
  }

  /** A loaded program's file descriptor: a value for another object's program array. */
  programFd(name: string): number {
    const p = native().programs(this.handle).find((x) => x.name === name);
    if (!p || p.fd < 0) throw new Error(`${this.name}: no loaded program named ${name}`);
    return p.fd;
  }

  private track(handle: number, description: string): Link {
    const link = new Link(handle, description);
    this.links.push(link);
    return link;
  }

  attachRawTracepoint(prog: string, tracepoint: string): Link {
    return this.track(call(() => native().attachRawTracepoint(this.handle, prog, tracepoint)), `raw_tp/${tracepoint}`);
  }

  /** A classic tracepoint: libbpf finds its id in tracefs, which is mounted first if it is not. */
  attachTracepoint(prog: string, category: string, name: string): Link {
    ensureTracefs();
    return this.track(call(() => native().attachTracepoint(this.handle, prog, category, name)), `tp/${category}/${name}`);
  }

  /** fentry/fexit at the kernel function named by the program's section. */
  attachTrace(prog: string): Link {
    return this.track(call(() => native().attachTrace(this.handle, prog)), `trace/${prog}`);
  }

  attachKprobe(prog: string, func: string, retprobe = false): Link {
    return this.track(call(() => native().attachKprobe(this.handle, prog, retprobe, func)), `${retprobe ? 'kretprobe' : 'kprobe'}/${func}`);
  }

  /** A uprobe at `func` (+offset) or, without `func`, at a file offset of `binary`. */
  attachUprobe(prog: string, o: { binary: string; func?: string; offset?: number; retprobe?: boolean; pid?: number }): Link {
    const h = call(() =>
      native().attachUprobe(this.handle, prog, !!o.retprobe, o.pid ?? -1, o.binary, o.offset ?? 0, o.func ?? ''),
    );
    return this.track(h, `${o.retprobe ? 'uretprobe' : 'uprobe'}/${o.binary}:${o.func ?? ''}+${o.offset ?? 0}`);
  }

  attachCgroup(prog: string, cgroupDir: string): Link {
    return this.track(call(() => native().attachCgroup(this.handle, prog, cgroupDir)), `cgroup/${cgroupDir}`);
  }

  attachSocketFilter(prog: string): Link {
    return this.track(call(() => native().attachSocketFilter(this.handle, prog)), 'socket_filter');
  }

  /** Detaches one program (its link forgotten). */
  detach(link: Link | undefined): void {
    if (!link) return;
    link.detach();
    const i = this.links.indexOf(link);
    if (i >= 0) this.links.splice(i, 1);
  }

  /** Detaches every program and frees the object's maps. */
  close(): void {
    if (!this.handle) return;
    for (const l of this.links) l.detach();
    native().closeObject(this.handle);
    this.handle = 0;
  }
}
