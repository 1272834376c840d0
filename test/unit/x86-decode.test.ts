// The x86-64 length decoder on hand-picked instructions (each one's length and
// reading as binutils' objdump gives them), on what it must refuse, and on
// return instructions hidden in other instructions' bytes. Its agreement with
// objdump over whole Go programs is in go-tls.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeInsn, walkCode, X86DecodeError } from '../../src/plugins/httpflow/tls/x86';

const hex = (s: string) => Buffer.from(s.replace(/ /g, ''), 'hex');

// [bytes, objdump's reading]
const VECTORS: [string, string][] = [
  ['c3', 'ret'],
  ['c2 10 00', 'ret $0x10'],
  ['f3 c3', 'repz ret'],
  ['f2 c3', 'bnd ret'],
  ['66 c3', 'retw'],
  ['48 89 e5', 'mov %rsp,%rbp'],
  ['48 8b 44 24 08', 'mov 0x8(%rsp),%rax'],
  ['48 8b 84 24 00 01 00 00', 'mov 0x100(%rsp),%rax'],
  ['48 8b 05 10 20 30 40', 'mov 0x40302010(%rip),%rax'],
  ['4c 8b 6c 24 f8', 'mov -0x8(%rsp),%r13'],
  ['48 c7 c0 01 00 00 00', 'mov $0x1,%rax'],
  ['48 b8 01 02 03 04 05 06 07 08', 'movabs $0x807060504030201,%rax'],
  ['b8 01 02 03 04', 'mov $0x4030201,%eax'],
  ['66 b8 01 02', 'mov $0x201,%ax'],
  ['66 81 c1 34 12', 'add $0x1234,%cx'],
  ['48 81 ec c3 00 00 00', 'sub $0xc3,%rsp'],
  ['48 83 ec 18', 'sub $0x18,%rsp'],
  ['f6 c3 01', 'test $0x1,%bl'],
  ['f7 c3 c3 00 00 00', 'test $0xc3,%ebx'],
  ['66 f7 c3 c3 00', 'test $0xc3,%bx'],
  ['f7 d8', 'neg %eax'],
  ['a0 11 22 33 44 55 66 77 88', 'movabs 0x8877665544332211,%al'],
  ['67 a0 11 22 33 44', 'addr32 mov 0x44332211,%al'],
  ['0f 1f 44 00 00', 'nopl 0x0(%rax,%rax,1)'],
  ['66 0f 1f 84 00 00 00 00 00', 'nopw 0x0(%rax,%rax,1)'],
  ['0f 1f 40 00', 'nopl 0x0(%rax)'],
  ['f3 0f 1e fa', 'endbr64'],
  ['0f 05', 'syscall'],
  ['0f 84 10 00 00 00', 'je 0x9d'],
  ['74 05', 'je 0x94'],
  ['e8 c3 c3 c3 c3', 'call 0xffffffffc3c3c457'],
  ['e9 00 00 00 00', 'jmp 0x99'],
  ['eb fe', 'jmp 0x99'],
  ['c5 fd 6f 06', 'vmovdqa (%rsi),%ymm0'],
  ['c5 f8 77', 'vzeroupper'],
  ['c4 e2 79 18 05 00 00 00 00', 'vbroadcastss 0x0(%rip),%xmm0'],
  ['c4 e3 7d 38 c1 01', 'vinserti128 $0x1,%xmm1,%ymm0,%ymm0'],
  ['c4 e2 fb f6 c8', 'mulx %rax,%rax,%rcx'],
  ['66 0f 3a 0f c1 08', 'palignr $0x8,%xmm1,%xmm0'],
  ['66 0f 38 00 c1', 'pshufb %xmm1,%xmm0'],
  ['66 0f 70 c8 1b', 'pshufd $0x1b,%xmm0,%xmm1'],
  ['0f c2 c1 03', 'cmpunordps %xmm1,%xmm0'],
  ['62 f1 fe 48 6f 06', 'vmovdqu64 (%rsi),%zmm0'],
  ['62 f1 7d 48 72 e0 05', 'vpsrad $0x5,%zmm0,%zmm0'],
  ['62 f3 fd 48 3a c1 01', 'vinserti64x4 $0x1,%ymm1,%zmm0,%zmm0'],
  ['f0 48 0f b1 0e', 'lock cmpxchg %rcx,(%rsi)'],
  ['f3 48 a5', 'rep movsq %ds:(%rsi),%es:(%rdi)'],
  ['64 48 8b 04 25 28 00 00 00', 'mov %fs:0x28,%rax'],
  ['0f ae f0', 'mfence'],
  ['c8 10 00 01', 'enter $0x10,$0x1'],
  ['cd 80', 'int $0x80'],
  ['c6 44 24 1f 00', 'movb $0x0,0x1f(%rsp)'],
  ['66 c7 44 24 1f 34 12', 'movw $0x1234,0x1f(%rsp)'],
  ['48 8d 0c 8d 00 00 00 00', 'lea 0x0(,%rcx,4),%rcx'],
  ['8b 04 25 00 00 00 00', 'mov 0x0,%eax'],
  ['41 ff e3', 'jmp *%r11'],
  ['ff 24 c5 00 10 40 00', 'jmp *0x401000(,%rax,8)'],
  ['d9 44 24 04', 'flds 0x4(%rsp)'],
  ['dd 1c 24', 'fstpl (%rsp)'],
  ['0f ba e0 03', 'bt $0x3,%eax'],
  ['0f a4 c2 05', 'shld $0x5,%eax,%edx'],
  ['48 0f c7 0e', 'cmpxchg16b (%rsi)'],
  ['0f 0d 08', 'prefetchw (%rax)'],
  ['66 0f d6 04 24', 'movq %xmm0,(%rsp)'],
  ['f3 0f b8 c1', 'popcnt %ecx,%eax'],
  ['f3 48 0f bc c1', 'tzcnt %rcx,%rax'],
  ['c4 62 f3 f6 c8', 'mulx %rax,%rcx,%r9'],
  ['c4 e2 e9 f7 c8', 'shlx %rdx,%rax,%rcx'],
];

test('x86 decoder: lengths of prefixed, REX, 0F/0F38/0F3A, VEX and EVEX instructions', () => {
  for (const [bytes, text] of VECTORS) {
    const code = hex(bytes);
    const insn = decodeInsn(code, 0);
    assert.equal(insn.length, code.length, `${bytes} (${text})`);
    assert.equal(insn.ret, /^(repz |bnd )?ret/.test(text), `${bytes} (${text}) is ${insn.ret ? '' : 'not '}a return`);
  }
  // all of them in a row
  const all = Buffer.concat(VECTORS.map(([b]) => hex(b)));
  const { starts, rets } = walkCode(all);
  assert.equal(starts.length, VECTORS.length);
  assert.equal(rets.length, 5);
});

test('x86 decoder: a C3 byte inside an instruction is not a return', () => {
  // mov $0xc3c3c3c3,%eax; test $0xc3,%bl; sub $0xc3,%rsp; ret
  const code = hex('b8 c3 c3 c3 c3 f6 c3 c3 48 81 ec c3 00 00 00 c3');
  assert.deepEqual(walkCode(code), { starts: [0, 5, 8, 15], rets: [15] });
});

test('x86 decoder: opcodes invalid in 64-bit mode, cut or overlong instructions are refused', () => {
  for (const bytes of [
    '06', '07', '0e', '16', '17', '1e', '1f', '27', '2f', '37', '3f', '60', '61', '82 c0 01', '9a 00 00 00 00 00 00',
    'ce', 'd4 0a', 'd5 0a', 'd6', 'ea 00 00 00 00 00 00', '0f 04', '0f 0a', '0f 24', '0f 36', '0f 39',
    'c4 e0 79 18 c1', // VEX map 0
    '62 f1 79 08 6f 06', // EVEX with its fixed bit clear
    '62 f1 7d 08 6f', // EVEX cut before its ModRM
    '48', '48 8b', '48 8b 84 24 00 01', 'e8 00 00', '0f', '0f 38', 'c5 fd', '66 '.repeat(15) + '90',
    '66 66 66 66 66 66 66 66 66 66 48 8b 84 24 00 01 00 00',
  ]) {
    assert.throws(() => walkCode(hex(bytes)), X86DecodeError, bytes);
  }
  // 14 prefixes and a one-byte opcode: 15 bytes, the most there can be
  assert.equal(decodeInsn(hex('66 '.repeat(14) + '90'), 0).length, 15);
});
