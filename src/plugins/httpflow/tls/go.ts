// Finds, in a Go program's ELF file, what the capture of plaintext HTTP from
// Go's crypto/tls needs to place its uprobes: the file offsets of
// crypto/tls.(*Conn).Write and (*Conn).Read and of every return instruction in
// them (Go code cannot take uretprobes: goroutine stacks move, so the probes go
// on the RETs), plus the structure offsets that lead from a *tls.Conn to its
// socket's file descriptor.
//
// Only linux/amd64 and Go 1.17 or later (the register ABI, which the eBPF side
// reads arguments and results with). Functions come from .symtab or, in a
// stripped program, from .gopclntab (Go 1.16–1.19 and 1.20+ layouts); the Go
// version from .go.buildinfo (the pointer layout before Go 1.18 and the inline
// one after). The file is read piecemeal at offsets (headers, then the few
// sections needed), never whole. Nothing is cached here.

import * as fs from 'node:fs';
import { walkCode, X86DecodeError } from './x86';

export interface GoFunc {
  /**
   * file offset where the entry probe goes: the first instruction past the
   * function's stack-bound check (its first instruction if it has none)
   */
  entry: number;
  /** file offset of each return instruction in the function, ascending */
  returns: number[];
}

/**
 * Byte offsets along *tls.Conn → conn (net.Conn) → its data word →
 * *net.TCPConn → (embedded conn).fd (*netFD) → pfd (poll.FD) → Sysfd (int).
 */
export interface GoOffsets {
  /** tls.Conn.conn, a net.Conn interface value */
  connConn: number;
  /** the data pointer inside an interface value (after the itab pointer) */
  ifaceData: number;
  /** net.TCPConn's embedded net.conn.fd */
  tcpConnFd: number;
  /** net.netFD.pfd */
  netFdPfd: number;
  /** internal/poll.FD.Sysfd */
  pfdSysfd: number;
}

export interface GoTlsTarget {
  /** as the program reports it, e.g. "go1.19.8" */
  goVersion: string;
  write: GoFunc;
  read: GoFunc;
  offsets: GoOffsets;
}

export const GO_TLS_WRITE = 'crypto/tls.(*Conn).Write';
export const GO_TLS_READ = 'crypto/tls.(*Conn).Read';

/** The first Go minor version handled: 1.17 brought the register ABI on amd64. */
export const MIN_GO_MINOR = 17;

/**
 * The offsets for a Go minor version (1.x). The layouts of tls.Conn (conn
 * first), net.TCPConn{conn{fd}}, netFD (pfd first) and poll.FD (a 16-byte
 * fdMutex, then Sysfd) have not changed since long before 1.17; checked
 * with reflect on Go 1.19 (test/unit/go-tls.test.ts).
 */
export function goOffsets(minor: number): GoOffsets | undefined {
  if (minor < MIN_GO_MINOR) return undefined;
  return { connConn: 0, ifaceData: 8, tcpConnFd: 0, netFdPfd: 0, pfdSysfd: 16 };
}

/**
 * Inspects the ELF file `file`. Returns null when it is not a Go program or
 * has no crypto/tls, `{unsupported}` with the reason when it is one this
 * capture cannot handle (another architecture, Go before 1.17, code that does
 * not decode, a malformed file), else the target. Throws only when the file
 * cannot be opened.
 */
export function inspectGoBinary(file: string): GoTlsTarget | { unsupported: string } | null {
  const fd = fs.openSync(file, 'r');
  const state = { isGo: false };
  try {
    return inspect(new Elf(fd), state);
  } catch (e) {
    if (!state.isGo) return null;
    return { unsupported: `malformed Go program: ${(e as Error).message}` };
  } finally {
    fs.closeSync(fd);
  }
}

function inspect(elf: Elf, state: { isGo: boolean }): GoTlsTarget | { unsupported: string } | null {
  if (!elf.parse()) return null;
  const buildinfo = elf.section('.go.buildinfo');
  const pclntab = elf.section('.gopclntab') ?? elf.section('.data.rel.ro.gopclntab');
  if (!buildinfo && !pclntab) return null;
  state.isGo = true;

  const goVersion = buildinfo ? readBuildInfoVersion(elf, buildinfo) : undefined;
  const funcs = findFuncs(elf, [GO_TLS_WRITE, GO_TLS_READ], pclntab);
  const write = funcs.get(GO_TLS_WRITE);
  const read = funcs.get(GO_TLS_READ);
  if (!write && !read) return null;
  if (!write || !read) return { unsupported: `${write ? GO_TLS_READ : GO_TLS_WRITE} not found` };

  if (elf.machine !== EM_X86_64 || !elf.is64 || !elf.le) {
    return { unsupported: `linux/amd64 only; this program is for ELF machine ${elf.machine}` };
  }
  if (goVersion === undefined) return { unsupported: 'no Go version: no readable .go.buildinfo' };
  const m = /go1\.(\d+)/.exec(goVersion);
  if (!m) return { unsupported: `unknown Go version ${JSON.stringify(goVersion)}` };
  const offsets = goOffsets(Number(m[1]));
  if (!offsets) return { unsupported: `${goVersion}: Go 1.${MIN_GO_MINOR} or later only (register ABI)` };

  const w = locate(elf, GO_TLS_WRITE, write);
  if ('unsupported' in w) return w;
  const r = locate(elf, GO_TLS_READ, read);
  if ('unsupported' in r) return r;
  return { goVersion, write: w, read: r, offsets };
}

/** A function's virtual address range [start, end). */
interface FuncRange {
  start: number;
  end: number;
}

function locate(elf: Elf, name: string, f: FuncRange): GoFunc | { unsupported: string } {
  const seg = elf.segmentOf(f.start);
  if (!seg || !(seg.flags & PF_X)) return { unsupported: `${name} at 0x${f.start.toString(16)} is in no executable segment` };
  if (f.end <= f.start || f.end > seg.vaddr + seg.filesz) {
    return { unsupported: `${name}: bad extent 0x${f.start.toString(16)}-0x${f.end.toString(16)}` };
  }
  const entry = f.start - seg.vaddr + seg.offset;
  const code = elf.read(entry, f.end - f.start);
  let walked: ReturnType<typeof walkCode>;
  try {
    walked = walkCode(code);
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
    return { unsupported: `cannot decode ${name}: ${e.message} (file offset ${entry + e.offset})` };
  }
  if (walked.rets.length === 0) return { unsupported: `${name} has no return instruction` };
  return { entry: entry + pastStackCheck(code, walked.starts), returns: walked.rets.map((r) => entry + r) };
}

/** Instructions at a function's start that its stack-bound check can take (LEA, CMP, Jcc, twice for big frames). */
const STACK_CHECK_SPAN = 8;
/** Instructions of the block that grows the stack: argument spills, the call, reloads, the jump back. */
const MORESTACK_BLOCK_SPAN = 48;

/**
 * The offset of a Go function's body: past the last conditional jump among its
 * first instructions whose target block jumps back to the function's entry.
 * That is the stack-bound check: when the goroutine's stack must grow, it calls
 * runtime.morestack and runs the function again from its entry, so a probe on
 * the entry would see that one call twice (one Write read twice). 0 when there
 * is no check (a nosplit function).
 */
function pastStackCheck(code: Uint8Array, starts: number[]): number {
  const index = new Map(starts.map((at, i) => [at, i]));
  const end = (i: number) => (i + 1 < starts.length ? starts[i + 1] : code.length);
  let body = 0;
  for (let i = 0; i < Math.min(STACK_CHECK_SPAN, starts.length); i++) {
    const target = branchTarget(code, starts[i], end(i), true);
    const first = target === undefined ? undefined : index.get(target);
    if (first === undefined) continue;
    for (let j = first; j < Math.min(first + MORESTACK_BLOCK_SPAN, starts.length); j++) {
      const back = branchTarget(code, starts[j], end(j), false);
      if (back === undefined) continue;
      if (back === 0) body = end(i);
      break;
    }
  }
  return body;
}

/** Target of the near jump at [at, next): conditional ones (Jcc) or unconditional (JMP), relative forms only. */
function branchTarget(code: Uint8Array, at: number, next: number, conditional: boolean): number | undefined {
  const op = code[at];
  const len = next - at;
  if (conditional) {
    if (op >= 0x70 && op <= 0x7f && len === 2) return next + ((code[at + 1] << 24) >> 24);
    if (op === 0x0f && code[at + 1] >= 0x80 && code[at + 1] <= 0x8f && len === 6) return next + readInt32(code, at + 2);
  } else {
    if (op === 0xeb && len === 2) return next + ((code[at + 1] << 24) >> 24);
    if (op === 0xe9 && len === 5) return next + readInt32(code, at + 1);
  }
  return undefined;
}

function readInt32(code: Uint8Array, at: number): number {
  return (code[at] | (code[at + 1] << 8) | (code[at + 2] << 16) | (code[at + 3] << 24)) | 0;
}

// ---------------------------------------------------------------- ELF

const EM_X86_64 = 62;
const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const PT_LOAD = 1;
const PF_X = 1;

interface Section {
  name: string;
  type: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

interface Segment {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

class Malformed extends Error {}

/** Reads an ELF file's headers, and any part of it on demand. */
class Elf {
  is64 = false;
  le = true;
  machine = 0;
  size = 0;
  sections: Section[] = [];
  segments: Segment[] = [];

  constructor(private readonly fd: number) {}

  read(offset: number, length: number): Buffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new Malformed(`read of ${length} bytes at ${offset} is past the end of the file (${this.size})`);
    }
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new Malformed('file shorter than it was');
      done += n;
    }
    return buf;
  }

  u16(b: Buffer, o: number): number {
    return this.le ? b.readUInt16LE(o) : b.readUInt16BE(o);
  }
  u32(b: Buffer, o: number): number {
    return this.le ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }
  /** A 64-bit value as a number; throws past 2^53. */
  u64(b: Buffer, o: number): number {
    const v = this.le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Malformed(`value 0x${v.toString(16)} too large`);
    return Number(v);
  }
  /** A word of the ELF class: 8 bytes in ELF64, 4 in ELF32. */
  word(b: Buffer, o: number): number {
    return this.is64 ? this.u64(b, o) : this.u32(b, o);
  }

  /** Reads the ELF, program and section headers; false if not an ELF file. */
  parse(): boolean {
    this.size = fs.fstatSync(this.fd).size;
    if (this.size < 52) return false;
    const h = this.read(0, Math.min(64, this.size));
    if (h.readUInt32BE(0) !== 0x7f454c46) return false;
    if (h[4] !== 1 && h[4] !== 2) return false;
    if (h[5] !== 1 && h[5] !== 2) return false;
    this.is64 = h[4] === 2;
    this.le = h[5] === 1;
    if (this.is64 && h.length < 64) return false;
    this.machine = this.u16(h, 18);
    const W = this.is64 ? 8 : 4;
    // e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize, e_phnum, ...
    const phoff = this.word(h, 24 + W);
    const shoff = this.word(h, 24 + 2 * W);
    const after = 24 + 3 * W + 4; // e_ehsize
    const phentsize = this.u16(h, after + 2);
    const phnum = this.u16(h, after + 4);
    const shentsize = this.u16(h, after + 6);
    let shnum = this.u16(h, after + 8);
    let shstrndx = this.u16(h, after + 10);

    if (phoff && phnum) {
      if (phentsize < (this.is64 ? 56 : 32)) throw new Malformed('bad program header size');
      const ph = this.read(phoff, phentsize * phnum);
      for (let i = 0; i < phnum; i++) {
        const o = i * phentsize;
        this.segments.push(this.is64
          ? { type: this.u32(ph, o), flags: this.u32(ph, o + 4), offset: this.u64(ph, o + 8), vaddr: this.u64(ph, o + 16), filesz: this.u64(ph, o + 32) }
          : { type: this.u32(ph, o), offset: this.u32(ph, o + 4), vaddr: this.u32(ph, o + 8), filesz: this.u32(ph, o + 16), flags: this.u32(ph, o + 24) });
      }
    }

    if (!shoff) return true; // no section headers
    if (shentsize < (this.is64 ? 64 : 40)) throw new Malformed('bad section header size');
    const parseSh = (b: Buffer, o: number): Section => this.is64
      ? { name: String(this.u32(b, o)), type: this.u32(b, o + 4), addr: this.u64(b, o + 16), offset: this.u64(b, o + 24), size: this.u64(b, o + 32), link: this.u32(b, o + 40), entsize: this.u64(b, o + 56) }
      : { name: String(this.u32(b, o)), type: this.u32(b, o + 4), addr: this.u32(b, o + 12), offset: this.u32(b, o + 16), size: this.u32(b, o + 20), link: this.u32(b, o + 24), entsize: this.u32(b, o + 36) };
    if (shnum === 0 || shstrndx === 0xffff) {
      // extended numbering: the real values are in section 0
      const s0 = parseSh(this.read(shoff, shentsize), 0);
      if (shnum === 0) shnum = s0.size;
      if (shstrndx === 0xffff) shstrndx = s0.link;
    }
    if (shnum > 65536) throw new Malformed('too many sections');
    const sh = this.read(shoff, shentsize * shnum);
    const raw: Section[] = [];
    for (let i = 0; i < shnum; i++) raw.push(parseSh(sh, i * shentsize));
    const strs = raw[shstrndx];
    if (!strs) throw new Malformed('no section name table');
    const names = this.read(strs.offset, strs.size);
    for (const s of raw) {
      const at = Number(s.name);
      const z = names.indexOf(0, at);
      s.name = at < names.length ? names.toString('latin1', at, z < 0 ? names.length : z) : '';
    }
    this.sections = raw;
    return true;
  }

  section(name: string): Section | undefined {
    return this.sections.find((s) => s.name === name && s.type !== SHT_NOBITS && s.size > 0);
  }

  sectionData(s: Section): Buffer {
    return this.read(s.offset, s.size);
  }

  segmentOf(vaddr: number): Segment | undefined {
    return this.segments.find((p) => p.type === PT_LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz);
  }

  /** `length` bytes at virtual address `vaddr`, from the file. */
  readAt(vaddr: number, length: number): Buffer {
    const seg = this.segmentOf(vaddr);
    if (!seg || vaddr + length > seg.vaddr + seg.filesz) throw new Malformed(`address 0x${vaddr.toString(16)} not in the file`);
    return this.read(vaddr - seg.vaddr + seg.offset, length);
  }
}

// ---------------------------------------------------------------- .go.buildinfo

const BUILDINFO_MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');

/** The Go version recorded in .go.buildinfo ("go1.19.8"), or undefined. */
function readBuildInfoVersion(elf: Elf, s: Section): string | undefined {
  const b = elf.read(s.offset, Math.min(s.size, 32 + 10 + 1024));
  if (b.length < 32 || !b.subarray(0, 14).equals(BUILDINFO_MAGIC)) return undefined;
  const ptrSize = b[14];
  const flags = b[15];
  if (flags & 2) {
    // Go 1.18+: length-prefixed (uvarint) strings right after the 32-byte header
    let n = 0;
    let shift = 0;
    let p = 32;
    for (;;) {
      if (p >= b.length || shift > 28) return undefined;
      const c = b[p++];
      n |= (c & 0x7f) << shift;
      if (!(c & 0x80)) break;
      shift += 7;
    }
    if (n === 0 || n > 1024 || p + n > b.length) return undefined;
    return b.toString('utf8', p, p + n);
  }
  // before: a pointer to the version's string header {data, len}, in the
  // byte order the flags tell
  if (ptrSize !== 4 && ptrSize !== 8) return undefined;
  const be = (flags & 1) !== 0;
  const ptr = (buf: Buffer, o: number): number => {
    if (ptrSize === 4) return be ? buf.readUInt32BE(o) : buf.readUInt32LE(o);
    const v = be ? buf.readBigUInt64BE(o) : buf.readBigUInt64LE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Malformed('pointer too large');
    return Number(v);
  };
  const hdr = elf.readAt(ptr(b, 16), 2 * ptrSize);
  const data = ptr(hdr, 0);
  const len = ptr(hdr, ptrSize);
  if (len === 0 || len > 1024) return undefined;
  return elf.readAt(data, len).toString('utf8');
}

// ---------------------------------------------------------------- functions

/**
 * The ranges of the named functions: from .symtab when the program has one
 * (its sizes; a function without a size takes its end from .gopclntab), else
 * from .gopclntab.
 */
function findFuncs(elf: Elf, names: string[], pclntab: Section | undefined): Map<string, FuncRange> {
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB && s.size > 0);
  if (symtab) {
    const found = symtabLookup(elf, symtab, names);
    if (found.size > 0 || !pclntab) {
      const unsized = [...found].filter(([, f]) => f.end <= f.start).map(([n]) => n);
      if (unsized.length && pclntab) {
        const fromPcln = pclntabLookup(elf, pclntab, unsized);
        for (const [n, f] of fromPcln) if (found.get(n)!.start === f.start) found.set(n, f);
      }
      return found;
    }
  }
  return pclntab ? pclntabLookup(elf, pclntab, names) : new Map();
}

function symtabLookup(elf: Elf, symtab: Section, names: string[]): Map<string, FuncRange> {
  const strtab = elf.sections[symtab.link];
  if (!strtab) throw new Malformed('.symtab without a string table');
  const syms = elf.sectionData(symtab);
  const strs = elf.sectionData(strtab);
  const wanted = names.map((n) => Buffer.from(n + '\0', 'latin1'));
  const found = new Map<string, FuncRange>();
  const entsize = elf.is64 ? 24 : 16;
  for (let o = 0; o + entsize <= syms.length; o += entsize) {
    const nameOff = elf.u32(syms, o);
    const first = strs[nameOff];
    for (let i = 0; i < wanted.length; i++) {
      const w = wanted[i];
      if (first !== w[0] || nameOff + w.length > strs.length) continue;
      if (strs.compare(w, 0, w.length, nameOff, nameOff + w.length) !== 0) continue;
      const value = elf.is64 ? elf.u64(syms, o + 8) : elf.u32(syms, o + 4);
      const size = elf.is64 ? elf.u64(syms, o + 16) : elf.u32(syms, o + 8);
      const info = elf.is64 ? syms[o + 4] : syms[o + 12];
      if ((info & 0xf) !== 2 /* STT_FUNC */ || value === 0) continue;
      found.set(names[i], { start: value, end: value + size });
    }
  }
  return found;
}

// pclntab header magics
const PCLN_GO12 = 0xfffffffb; // Go 1.2–1.15
const PCLN_GO116 = 0xfffffffa; // Go 1.16–1.17
const PCLN_GO118 = 0xfffffff0; // Go 1.18–1.19
const PCLN_GO120 = 0xfffffff1; // Go 1.20 and later

/**
 * The ranges of the named functions from .gopclntab's function table: the
 * entries of the functions by name, each ending where the next begins (the
 * table's last entry is the end of the text).
 */
function pclntabLookup(elf: Elf, s: Section, names: string[]): Map<string, FuncRange> {
  const found = new Map<string, FuncRange>();
  const h = elf.read(s.offset, Math.min(s.size, 8 + 8 * 8));
  if (h.length < 16) throw new Malformed('.gopclntab too short');
  const magic = elf.u32(h, 0);
  const minLC = h[6];
  const ptrSize = h[7];
  if (h[4] !== 0 || h[5] !== 0 || (minLC !== 1 && minLC !== 2 && minLC !== 4) || (ptrSize !== 4 && ptrSize !== 8)) {
    throw new Malformed('bad .gopclntab header');
  }
  const word = (b: Buffer, o: number) => (ptrSize === 8 ? elf.u64(b, o) : elf.u32(b, o));
  const wantedNames = names.map((n) => Buffer.from(n, 'latin1'));

  /** Offsets in `tab` where a wanted name starts (NUL-terminated, after a NUL or at 0). */
  const nameOffsets = (tab: Buffer): Map<number, string> => {
    const m = new Map<number, string>();
    wantedNames.forEach((w, i) => {
      const needle = Buffer.concat([w, Buffer.from([0])]);
      for (let at = tab.indexOf(needle); at >= 0; at = tab.indexOf(needle, at + 1)) {
        if (at === 0 || tab[at - 1] === 0) m.set(at, names[i]);
      }
    });
    return m;
  };

  if (magic === PCLN_GO12) {
    // header, nfunc, then functab pairs {entry, funcoff} of pointer size;
    // _func {entry uintptr, nameoff int32}, offsets from the table's start
    const t = elf.sectionData(s);
    const nfunc = word(t, 8);
    const ftab = 8 + ptrSize;
    if (ftab + (2 * nfunc + 1) * ptrSize > t.length) throw new Malformed('.gopclntab function table past its end');
    const want = new Set(names);
    for (let i = 0; i < nfunc; i++) {
      const entry = word(t, ftab + 2 * i * ptrSize);
      const funcoff = word(t, ftab + (2 * i + 1) * ptrSize);
      if (funcoff + ptrSize + 4 > t.length) throw new Malformed('_func past the end');
      const nameoff = elf.u32(t, funcoff + ptrSize);
      if (nameoff >= t.length) continue;
      const z = t.indexOf(0, nameoff);
      const name = t.toString('latin1', nameoff, z < 0 ? t.length : z);
      if (want.has(name)) found.set(name, { start: entry, end: word(t, ftab + 2 * (i + 1) * ptrSize) });
    }
    return found;
  }

  const go118 = magic === PCLN_GO118 || magic === PCLN_GO120;
  if (!go118 && magic !== PCLN_GO116) throw new Malformed(`unknown .gopclntab magic 0x${magic.toString(16)}`);
  // Go 1.16+: after the 8 first bytes, words: nfunc, nfiles, [textStart (1.18+)],
  // funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
  const nwords = go118 ? 8 : 7;
  if (h.length < 8 + nwords * ptrSize) throw new Malformed('.gopclntab too short');
  const words: number[] = [];
  for (let i = 0; i < nwords; i++) words.push(word(h, 8 + i * ptrSize));
  const nfunc = words[0];
  let textStart = go118 ? words[2] : 0;
  const [funcnameOffset, cuOffset, , , pclnOffset] = words.slice(go118 ? 3 : 2);
  if (go118 && textStart === 0) {
    // position-independent: the field is filled by a relocation; it is runtime.text
    textStart = elf.section('.text')?.addr ?? 0;
  }
  if (funcnameOffset > cuOffset || cuOffset > s.size || pclnOffset > s.size) throw new Malformed('bad .gopclntab offsets');

  // the names, then the function table and the _func records after it
  const wantedAt = nameOffsets(elf.read(s.offset + funcnameOffset, cuOffset - funcnameOffset));
  if (wantedAt.size === 0) return found;
  const pcln = elf.read(s.offset + pclnOffset, s.size - pclnOffset);
  const fieldSize = go118 ? 4 : ptrSize; // functab fields and _func's entry
  if ((nfunc + 1) * 2 * fieldSize > pcln.length) throw new Malformed('.gopclntab function table past its end');
  const entryOf = (i: number): number => {
    const v = go118 ? elf.u32(pcln, i * 8) : word(pcln, i * 2 * ptrSize);
    return go118 ? textStart + v : v;
  };
  for (let i = 0; i < nfunc; i++) {
    const funcoff = go118 ? elf.u32(pcln, i * 8 + 4) : word(pcln, (2 * i + 1) * ptrSize);
    if (funcoff + fieldSize + 4 > pcln.length) throw new Malformed('_func past the end');
    const name = wantedAt.get(elf.u32(pcln, funcoff + fieldSize));
    if (name !== undefined) found.set(name, { start: entryOf(i), end: entryOf(i + 1) });
  }
  return found;
}
