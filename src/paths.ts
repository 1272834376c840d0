// Locations of build artefacts, relative to the compiled file (dist/src/paths.js).
import * as path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..');
export const bpfObjectPath = (name: string): string => path.join(repoRoot, 'build', 'bpf', `${name}.bpf.o`);
export const nativeAddonPath = path.join(repoRoot, 'native', 'build', 'Release', 'datakit_ebpf.node');
