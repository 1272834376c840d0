// Just enough ELF64 (little-endian) reading to know whether a file defines a
// function symbol: the uprobe itself is placed by libbpf, which resolves the
// symbol's offset the same way.
import * as fs from 'node:fs';

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const SHN_UNDEF = 0;

/** True when `file` is an ELF64 object whose symbol tables define `name`. */
export function elfDefines(file: string, name: string): boolean {
  let elf: Buffer;
  try {
    elf = fs.readFileSync(file);
  } catch {
    return false;
  }
  // "\x7fELF", 64-bit, little-endian
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      type: elf.readUInt32LE(o + 4),
      offset: Number(elf.readBigUInt64LE(o + 0x18)),
      size: Number(elf.readBigUInt64LE(o + 0x20)),
      link: elf.readUInt32LE(o + 0x28),
      entsize: Number(elf.readBigUInt64LE(o + 0x38)),
    };
  };
  if (shoff + shnum * shentsize > elf.length) return false;
  const wanted = Buffer.from(`${name}\0`);
  for (let i = 0; i < shnum; i++) {
    const sym = section(i);
    if ((sym.type !== SHT_SYMTAB && sym.type !== SHT_DYNSYM) || !sym.entsize) continue;
    const strtab = section(sym.link);
    for (let o = sym.offset; o + sym.entsize <= sym.offset + sym.size; o += sym.entsize) {
      const nameOff = strtab.offset + elf.readUInt32LE(o);
      const shndx = elf.readUInt16LE(o + 6);
      if (shndx !== SHN_UNDEF && elf.compare(wanted, 0, wanted.length, nameOff, nameOff + wanted.length) === 0) return true;
    }
  }
  return false;
}
