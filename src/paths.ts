// Locations of build artefacts, relative to the compiled file (dist/src/paths.js).
import * as path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..');
export const bpfObjectPath = (name: string): string => path.join(repoRoot, 'build', 'bpf', `${name}.bpf.o`);
export const nativeAddonPath = path.join(repoRoot, 'native', 'build', 'Release', 'datakit_ebpf.node');

/**
 * A host file's path as this process sees it: under $HOST_ROOT when the
 * collector runs in a container with the host's / mounted there.
 */
export function hostPath(p: string): string {
  const root = process.env.HOST_ROOT?.replace(/\/+$/, '');
  return root ? path.join(root, p) : p;
}
