// The kernel matrix's runner inside a VM: runs each test file in turn with its
// output passed through, then prints one marked line per file with what the
// test runner counted, for the host to read back (parseGuestOutput).
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';

const MARK = '@@dkeb-matrix';

export interface FileResult {
  file: string;
  status: number | null;
  ms: number;
  tests: number;
  pass: number;
  fail: number;
  skipped: number;
  todo: number;
  cancelled: number;
}

/** A failing file's own account of what failed, for the end of the matrix's output. */
export interface FileFailure {
  file: string;
  text: string;
}

export interface GuestReport {
  /** uname -r inside the VM */
  release?: string;
  results: FileResult[];
  failures: FileFailure[];
}

/** What the node test runner's summary says ("ℹ pass 12"), by name. */
export function summaryCounts(output: string): Omit<FileResult, 'file' | 'status' | 'ms'> {
  const count = (name: string) => Number(new RegExp(`^ℹ ${name} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);
  return { tests: count('tests'), pass: count('pass'), fail: count('fail'), skipped: count('skipped'), todo: count('todo'), cancelled: count('cancelled') };
}

/**
 * What the spec reporter lists under "failing tests", without stack frames: the
 * names and assertion messages, which a CI log that keeps only its tail would
 * otherwise lose among the other files' output.
 */
export function failingTests(output: string, limit = 4000): string {
  const at = output.lastIndexOf('✖ failing tests:');
  const text = (at >= 0 ? output.slice(at) : output.slice(-limit))
    .split('\n')
    .filter((l) => !/^\s+at /.test(l))
    .join('\n')
    .trim();
  return text.length > limit ? `${text.slice(0, limit)}\n…` : text;
}

export function parseGuestOutput(output: string): GuestReport {
  const report: GuestReport = { results: [], failures: [] };
  for (const line of output.split('\n')) {
    if (!line.startsWith(`${MARK} `)) continue;
    const [, kind, ...rest] = line.trimEnd().split(' ');
    if (kind === 'kernel') report.release = rest[0];
    else if (kind === 'result') report.results.push(JSON.parse(rest.join(' ')) as FileResult);
    else if (kind === 'failure') report.failures.push(JSON.parse(rest.join(' ')) as FileFailure);
  }
  return report;
}

function runFile(file: string): Promise<{ result: FileResult; output: string }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const pass = (d: Buffer) => {
      output += d.toString('utf8');
      process.stdout.write(d);
    };
    p.stdout.on('data', pass);
    p.stderr.on('data', pass);
    p.on('close', (status) => resolve({ result: { file: path.basename(file), status, ms: Date.now() - t0, ...summaryCounts(output) }, output }));
  });
}

async function main(files: string[]): Promise<void> {
  process.stdout.write(`${MARK} kernel ${os.release()}\n`);
  let failed = false;
  for (const f of files) {
    const { result: r, output } = await runFile(f);
    failed ||= r.status !== 0;
    process.stdout.write(`${MARK} result ${JSON.stringify(r)}\n`);
    if (r.status !== 0) process.stdout.write(`${MARK} failure ${JSON.stringify({ file: r.file, text: failingTests(output) })}\n`);
  }
  process.exitCode = failed ? 1 : 0;
}

if (require.main === module) void main(process.argv.slice(2));
