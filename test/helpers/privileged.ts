// Integration tests need root and a kernel with BPF and BTF. They skip, saying
// why, only where those are missing, and never in CI, where they must run.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) return 'kernel has no BTF';
  try {
    execFileSync('bpftool', ['prog', 'show'], { stdio: 'ignore' });
  } catch {
    return 'BPF unavailable (bpftool prog show failed)';
  }
  return undefined;
}

const reason = missing();
if (reason) process.stderr.write(`integration tests: ${reason}${process.env.CI ? ' (CI: running anyway)' : ': skipping'}\n`);

/** Pass as `{ skip }` to test(): false where the tests can (or must) run. */
export const skip: string | false = reason && !process.env.CI ? reason : false;

/** IDs of every eBPF program loaded in the kernel. */
export function loadedProgramIds(): Set<number> {
  const out = execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' });
  return new Set((JSON.parse(out) as { id: number }[]).map((p) => p.id));
}

/** Waits until none of `ids` is loaded (the kernel frees programs asynchronously); returns those left. */
export async function programsGone(ids: number[], timeoutMs = 10000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const loaded = loadedProgramIds();
    const left = ids.filter((id) => loaded.has(id));
    if (!left.length || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}
