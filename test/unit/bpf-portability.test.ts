// The eBPF objects must load on the oldest kernel supported (Linux 5.10): no
// instruction that kernel's verifier does not know. The kernel matrix finds
// such a thing too, but only after an hour; this finds it in a second.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { bpfObjectPath } from '../../src/paths';

/** Instructions newer than 5.10, as llvm-objdump prints them. */
const NEWER_THAN_5_10: [RegExp, string][] = [
  // atomics that return a value (5.12): an add whose result is used, exchanges
  [/atomic_fetch_|\bxchg|cmpxchg/, 'atomic fetch or exchange (Linux 5.12)'],
  // the sign-extending loads and moves, sdiv/smod, gotol, bswap of cpu v4 (6.6)
  [/\bs(8|16|32)\b|\bsdiv|\bsmod|\bgotol\b|\bbswap/, 'cpu v4 instruction (Linux 6.6)'],
];

for (const name of ['netflow', 'httpflow', 'dnsflow', 'bash']) {
  test(`${name}: no instruction Linux 5.10 refuses`, () => {
    const text = execFileSync('llvm-objdump', ['-d', '--no-show-raw-insn', bpfObjectPath(name)], { encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.ok(text.split('\n').length > 100, 'the object disassembles');
    for (const [re, what] of NEWER_THAN_5_10) {
      const found = text.split('\n').filter((l) => re.test(l));
      assert.deepEqual(found.slice(0, 5), [], `${what} in ${name}`);
    }
  });
}
