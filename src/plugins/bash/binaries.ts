// Where readline lives: in each distinct bash binary (Debian links it in
// statically), or in a shared libreadline that bash loads.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostPath } from '../../paths';

const BASH_CANDIDATES = ['/bin/bash', '/usr/bin/bash', '/usr/local/bin/bash', '/bin/rbash', '/usr/bin/rbash'];
const LIB_DIRS = ['/lib', '/usr/lib', '/lib64', '/usr/lib64', '/usr/local/lib', `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, `/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`];

/** Distinct bash binaries (by device and inode: /bin is often /usr/bin), from /etc/shells and the usual places. */
export function findBashBinaries(shells = hostPath('/etc/shells')): string[] {
  const candidates = BASH_CANDIDATES.map(hostPath);
  try {
    for (const line of fs.readFileSync(shells, 'utf8').split('\n')) {
      const p = line.trim();
      if (p.startsWith('/') && /^r?bash$/.test(path.basename(p))) candidates.push(hostPath(p));
    }
  } catch {
    /* no /etc/shells: the usual places only */
  }
  const seen = new Set<string>();
  const out: string[] = [];
  for (const p of candidates) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      continue;
    }
    const id = `${st.dev}:${st.ino}`;
    if (!st.isFile() || seen.has(id)) continue;
    seen.add(id);
    out.push(p);
  }
  return out;
}

/** Shared readline libraries present on the system, distinct by inode. */
export function findReadlineLibraries(): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const dir of LIB_DIRS.map(hostPath)) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (!/^libreadline\.so(\.\d+)*$/.test(n)) continue;
      const p = path.join(dir, n);
      try {
        const st = fs.statSync(p);
        const id = `${st.dev}:${st.ino}`;
        if (seen.has(id)) continue;
        seen.add(id);
        out.push(p);
      } catch {
        /* dangling link */
      }
    }
  }
  return out;
}
