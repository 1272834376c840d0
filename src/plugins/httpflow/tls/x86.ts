// An x86-64 (64-bit mode) instruction-length decoder: enough to walk machine
// code instruction by instruction from a function's entry and find its return
// instructions, which is what the Go crypto/tls capture needs (uprobes on each
// RET of a Go function, since Go code cannot take uretprobes).
//
// It decodes lengths only, never operands: legacy prefixes, REX, the one-byte
// map and the 0F, 0F38, 0F3A maps (and 3DNow!'s 0F 0F), ModRM, SIB,
// displacements and immediates, VEX (C4, C5), XOP (8F with ModRM.reg != 0) and
// EVEX (62). Opcodes invalid in 64-bit mode are refused, never guessed.

export interface Insn {
  /** bytes, prefixes included */
  length: number;
  /** a near return: C3, or C2 iw, whatever its prefixes */
  ret: boolean;
}

export class X86DecodeError extends Error {
  constructor(readonly offset: number, reason: string) {
    super(`${reason} at offset ${offset}`);
  }
}

const MAX_INSN = 15;

// Immediate kinds
const NONE = 0;
const IB = 1; // 8 bits
const IW = 2; // 16 bits
const IZ = 3; // 16 with 66, else 32 (REX.W keeps 32: sign-extended)
const IV = 4; // 16 with 66, 32, or 64 with REX.W (MOV r, imm)
const MOFFS = 5; // 8 bytes, 4 with 67
const IWB = 6; // ENTER: 16 + 8 bits
const BAD = 7; // invalid in 64-bit mode, or a prefix handled elsewhere

/** Per opcode: whether a ModRM byte follows and which immediate. */
interface OpTable {
  modrm: Uint8Array;
  imm: Uint8Array;
}

function table(fill: (op: number) => [boolean, number]): OpTable {
  const modrm = new Uint8Array(256);
  const imm = new Uint8Array(256);
  for (let op = 0; op < 256; op++) {
    const [m, i] = fill(op);
    modrm[op] = m ? 1 : 0;
    imm[op] = i;
  }
  return { modrm, imm };
}

const ONE_BYTE = table((op) => {
  if (op < 0x40) {
    const lo = op & 7;
    if (op === 0x0f) return [false, BAD]; // escape, handled apart
    if (lo <= 3) return [true, NONE];
    if (lo === 4) return [false, IB];
    if (lo === 5) return [false, IZ];
    return [false, BAD]; // push/pop seg, daa..., and the segment prefixes
  }
  if (op < 0x50) return [false, BAD]; // REX, handled apart
  if (op < 0x60) return [false, NONE]; // push/pop r
  switch (op) {
    case 0x60: case 0x61: case 0x62: return [false, BAD]; // 62: EVEX, apart
    case 0x63: return [true, NONE]; // movsxd
    case 0x64: case 0x65: case 0x66: case 0x67: return [false, BAD]; // prefixes
    case 0x68: return [false, IZ];
    case 0x69: return [true, IZ];
    case 0x6a: return [false, IB];
    case 0x6b: return [true, IB];
    case 0x6c: case 0x6d: case 0x6e: case 0x6f: return [false, NONE];
  }
  if (op >= 0x70 && op < 0x80) return [false, IB]; // jcc rel8
  switch (op) {
    case 0x80: return [true, IB];
    case 0x81: return [true, IZ];
    case 0x82: return [false, BAD];
    case 0x83: return [true, IB];
  }
  if (op >= 0x84 && op <= 0x8f) return [true, NONE]; // 8f: pop Ev (XOP apart)
  if (op >= 0x90 && op <= 0x9f) return op === 0x9a ? [false, BAD] : [false, NONE];
  if (op >= 0xa0 && op <= 0xa3) return [false, MOFFS];
  if (op >= 0xa4 && op <= 0xa7) return [false, NONE];
  if (op === 0xa8) return [false, IB];
  if (op === 0xa9) return [false, IZ];
  if (op >= 0xaa && op <= 0xaf) return [false, NONE];
  if (op >= 0xb0 && op <= 0xb7) return [false, IB];
  if (op >= 0xb8 && op <= 0xbf) return [false, IV];
  switch (op) {
    case 0xc0: case 0xc1: return [true, IB];
    case 0xc2: return [false, IW];
    case 0xc3: return [false, NONE];
    case 0xc4: case 0xc5: return [false, BAD]; // VEX, apart
    case 0xc6: return [true, IB]; // mov Eb, ib; xabort ib
    case 0xc7: return [true, IZ]; // mov Ev, iz; xbegin rel32
    case 0xc8: return [false, IWB];
    case 0xc9: return [false, NONE];
    case 0xca: return [false, IW];
    case 0xcb: case 0xcc: return [false, NONE];
    case 0xcd: return [false, IB];
    case 0xce: return [false, BAD];
    case 0xcf: return [false, NONE];
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return [true, NONE];
    case 0xd4: case 0xd5: case 0xd6: return [false, BAD];
    case 0xd7: return [false, NONE];
  }
  if (op >= 0xd8 && op <= 0xdf) return [true, NONE]; // x87
  if (op >= 0xe0 && op <= 0xe7) return [false, IB]; // loop, jrcxz, in, out
  switch (op) {
    case 0xe8: case 0xe9: return [false, IZ]; // call/jmp rel32 (66 ignored, below)
    case 0xea: return [false, BAD];
    case 0xeb: return [false, IB];
    case 0xec: case 0xed: case 0xee: case 0xef: return [false, NONE];
    case 0xf0: case 0xf2: case 0xf3: return [false, BAD]; // prefixes
    case 0xf1: case 0xf4: case 0xf5: return [false, NONE];
    case 0xf6: case 0xf7: return [true, NONE]; // test's immediate: by ModRM.reg, below
    case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd: return [false, NONE];
    case 0xfe: case 0xff: return [true, NONE];
  }
  return [false, BAD];
});

const TWO_BYTE = table((op) => {
  switch (op) {
    case 0x00: case 0x01: case 0x02: case 0x03: return [true, NONE];
    case 0x05: case 0x06: case 0x07: case 0x08: case 0x09: case 0x0b: case 0x0e: return [false, NONE];
    case 0x0d: return [true, NONE]; // prefetch
    case 0x0f: return [true, IB]; // 3DNow!: the opcode is a trailing byte
    case 0x04: case 0x0a: case 0x0c: return [false, BAD];
  }
  if (op >= 0x10 && op <= 0x1f) return [true, NONE]; // 18-1f: hint nops, endbr
  if (op >= 0x20 && op <= 0x23) return [true, NONE]; // mov cr/dr: register only, below
  if (op >= 0x24 && op <= 0x27) return [false, BAD];
  if (op >= 0x28 && op <= 0x2f) return [true, NONE];
  if (op >= 0x30 && op <= 0x37) return op === 0x36 ? [false, BAD] : [false, NONE];
  if (op >= 0x38 && op <= 0x3f) return [false, BAD]; // 38, 3a: escapes, apart
  if (op >= 0x40 && op <= 0x6f) return [true, NONE];
  if (op >= 0x70 && op <= 0x73) return [true, IB];
  if (op >= 0x74 && op <= 0x76) return [true, NONE];
  if (op === 0x77) return [false, NONE]; // emms
  if (op === 0x78 || op === 0x79) return [true, NONE]; // vmread, vmwrite
  if (op === 0x7a || op === 0x7b) return [false, BAD];
  if (op >= 0x7c && op <= 0x7f) return [true, NONE];
  if (op >= 0x80 && op <= 0x8f) return [false, IZ]; // jcc rel32 (66 ignored, below)
  if (op >= 0x90 && op <= 0x9f) return [true, NONE]; // setcc
  switch (op) {
    case 0xa0: case 0xa1: case 0xa2: case 0xa8: case 0xa9: case 0xaa: return [false, NONE];
    case 0xa3: case 0xa5: case 0xab: case 0xad: case 0xae: case 0xaf: return [true, NONE];
    case 0xa4: case 0xac: return [true, IB];
    case 0xa6: case 0xa7: return [true, NONE]; // VIA PadLock (montmul, xsha*, xstore, xcrypt*)
    case 0xba: return [true, IB];
    case 0xc2: case 0xc4: case 0xc5: case 0xc6: return [true, IB];
  }
  if (op >= 0xb0 && op <= 0xbf) return [true, NONE];
  if (op >= 0xc0 && op <= 0xc7) return [true, NONE];
  if (op >= 0xc8 && op <= 0xcf) return [false, NONE]; // bswap
  return [true, NONE]; // d0-ff: MMX/SSE, ff: ud0
});

/** VEX/EVEX map 1 (0F) opcodes that take an 8-bit immediate. */
function map1HasImm8(op: number): boolean {
  return (op >= 0x70 && op <= 0x73) || op === 0xc2 || op === 0xc4 || op === 0xc5 || op === 0xc6;
}

/**
 * Decodes the instruction at `code[at]`: its length and whether it is a near
 * return. Throws X86DecodeError for an opcode invalid in 64-bit mode, an
 * instruction longer than 15 bytes or one cut by the end of `code`.
 */
export function decodeInsn(code: Uint8Array, at: number): Insn {
  const end = code.length;
  let p = at;
  const byte = (): number => {
    if (p >= end) throw new X86DecodeError(at, 'instruction cut by the end of the code');
    if (p - at >= MAX_INSN) throw new X86DecodeError(at, 'instruction longer than 15 bytes');
    return code[p++];
  };

  // legacy prefixes and REX (a REX is effective only right before the opcode)
  let opsize16 = false;
  let addr32 = false;
  let repne = false;
  let rexW = false; // a REX not right before the opcode is ignored
  let op: number;
  for (;;) {
    op = byte();
    if (op === 0x66) { opsize16 = true; rexW = false; continue; }
    if (op === 0x67) { addr32 = true; rexW = false; continue; }
    if (op === 0xf2) { repne = true; rexW = false; continue; }
    if (op === 0xf0 || op === 0xf3 || op === 0x2e || op === 0x36 ||
        op === 0x3e || op === 0x26 || op === 0x64 || op === 0x65) { rexW = false; continue; }
    if ((op & 0xf0) === 0x40) { rexW = (op & 8) !== 0; continue; }
    break;
  }

  const modrmAt = (): { mod: number; reg: number } => {
    const m = byte();
    const mod = m >> 6;
    const rm = m & 7;
    if (mod !== 3) {
      let base = -1;
      if (rm === 4) base = byte() & 7; // SIB
      if (mod === 1) p += 1;
      else if (mod === 2) p += 4;
      else if (rm === 5 || base === 5) p += 4; // RIP-relative / no base: disp32
    }
    return { mod, reg: (m >> 3) & 7 };
  };
  const finish = (immBytes: number, ret = false): Insn => {
    p += immBytes;
    if (p > end) throw new X86DecodeError(at, 'instruction cut by the end of the code');
    if (p - at > MAX_INSN) throw new X86DecodeError(at, 'instruction longer than 15 bytes');
    return { length: p - at, ret };
  };
  const immSize = (kind: number): number => {
    switch (kind) {
      case NONE: return 0;
      case IB: return 1;
      case IW: return 2;
      case IZ: return opsize16 && !rexW ? 2 : 4;
      case IV: return rexW ? 8 : opsize16 ? 2 : 4;
      case MOFFS: return addr32 ? 4 : 8;
      case IWB: return 3;
    }
    throw new Error('unreachable');
  };
  const hex = (b: number) => b.toString(16).padStart(2, '0');

  // VEX (C4 three bytes, C5 two), XOP (8F, ModRM.reg != 0), EVEX (62)
  if (op === 0xc5 || op === 0xc4 || op === 0x62 || (op === 0x8f && p < end && (code[p] & 0x38) !== 0)) {
    const kind = op;
    let map: number;
    if (kind === 0xc5) {
      byte();
      map = 1;
    } else if (kind === 0x62) {
      const p0 = byte();
      const p1 = byte();
      byte();
      if ((p1 & 0x04) === 0) throw new X86DecodeError(at, 'invalid EVEX prefix');
      map = p0 & 7;
    } else {
      map = byte() & 0x1f;
      byte();
    }
    const opc = byte();
    if (kind === 0x8f) {
      // XOP maps 8 (imm8), 9 (none), 0A (imm32)
      if (map < 8 || map > 10) throw new X86DecodeError(at, `invalid XOP map ${map}`);
      modrmAt();
      return finish(map === 8 ? 1 : map === 10 ? 4 : 0);
    }
    if (kind !== 0x62 && map === 1 && opc === 0x77) return finish(0); // vzeroupper, vzeroall
    let imm: number;
    if (map === 1) imm = map1HasImm8(opc) ? 1 : 0;
    else if (map === 2) imm = 0;
    else if (map === 3) imm = 1;
    else if (kind === 0x62 && (map === 5 || map === 6)) imm = 0; // AVX512-FP16
    else throw new X86DecodeError(at, `invalid ${kind === 0x62 ? 'EVEX' : 'VEX'} map ${map}`);
    modrmAt();
    return finish(imm);
  }

  if (op === 0x0f) {
    const op2 = byte();
    if (op2 === 0x38) {
      byte();
      modrmAt();
      return finish(0);
    }
    if (op2 === 0x3a) {
      byte();
      modrmAt();
      return finish(1);
    }
    const immKind = TWO_BYTE.imm[op2];
    if (immKind === BAD) throw new X86DecodeError(at, `invalid opcode 0f ${hex(op2)}`);
    if (op2 >= 0x20 && op2 <= 0x23) {
      byte(); // mov to/from control or debug register: ModRM always a register
      return finish(0);
    }
    if (TWO_BYTE.modrm[op2]) modrmAt();
    // SSE4a extrq (66 0f 78 /0 ib ib) and insertq (f2 0f 78 /r ib ib)
    if (op2 === 0x78 && (opsize16 || repne)) return finish(2);
    // jcc rel32: 66 is ignored in 64-bit mode (as for call/jmp rel32)
    if (op2 >= 0x80 && op2 <= 0x8f) return finish(4);
    return finish(immSize(immKind));
  }

  const immKind = ONE_BYTE.imm[op];
  if (immKind === BAD) throw new X86DecodeError(at, `invalid opcode ${hex(op)} in 64-bit mode`);
  if (ONE_BYTE.modrm[op]) {
    const { reg } = modrmAt();
    if (op === 0xf6 || op === 0xf7) {
      // test Eb, ib / Ev, iz: ModRM.reg 0 and 1; not, neg, mul, div...: none
      if (reg <= 1) return finish(op === 0xf6 ? 1 : immSize(IZ));
      return finish(0);
    }
  }
  if (op === 0xe8 || op === 0xe9) return finish(4);
  return finish(immSize(immKind), op === 0xc3 || op === 0xc2);
}

/**
 * Decodes `code` from its first byte to its last, one instruction after the
 * other. Returns the offset of each instruction and of each near return.
 * Throws X86DecodeError where an instruction cannot be decoded or the last one
 * runs past the end.
 */
export function walkCode(code: Uint8Array): { starts: number[]; rets: number[] } {
  const starts: number[] = [];
  const rets: number[] = [];
  let at = 0;
  while (at < code.length) {
    const insn = decodeInsn(code, at);
    starts.push(at);
    if (insn.ret) rets.push(at);
    at += insn.length;
  }
  return { starts, rets };
}
