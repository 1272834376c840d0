// The kernel matrix (npm run test:kernels [-- SUITE...]): the integration
// tests on Debian's stock kernels, each booted in qemu over this machine's
// files. On every kernel, every integration test runs once with the hooks the
// collector chooses itself (hooks.test.js among them, which checks every set
// the kernel offers); the tests whose numbers depend on the byte hooks run
// again with the sets of RERUNS. A test that fails or skips,
// or a VM that did not run the kernel it should have, fails the matrix.
// The table of results goes to stdout and to test/kernels/RESULTS.md.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ByteHooks } from '../../src/plugins/netflow/hooks';
import { FileFailure, FileResult, parseGuestOutput } from './guest';
import { KERNEL_SERIES, Kernel, prepareKernel, runInVm, Suite, SUITES } from './vm';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const integrationDir = path.join(repoRoot, 'dist', 'test', 'integration');
const guest = path.join(__dirname, 'guest.js');

/** The byte-hook sets each kernel must offer, cheapest first (hooks.test.js checks exactly these). */
export const MATRIX: Record<Suite, ByteHooks[]> = {
  bullseye: ['fentry', 'kprobe'],
  bookworm: ['fentry', 'kprobe'],
  trixie: ['tracepoint', 'fentry', 'kprobe'],
};

/**
 * The sets, besides the one chosen automatically, that the tests of
 * PER_HOOKS_FILES run again with. fentry and kprobe each run whole on two
 * kernels (fentry as 5.10's and 6.1's automatic one), tracepoint on the one
 * Debian kernel that has it: every set on every kernel would take CI past its
 * 90 minutes, and hooks.test.js checks each set on each kernel anyway.
 */
export const RERUNS: Record<Suite, ByteHooks[]> = {
  bullseye: ['kprobe'],
  bookworm: [],
  trixie: ['kprobe'],
};

/** The tests whose numbers depend on which set counts bytes (the rest run once per kernel). */
export const PER_HOOKS_FILES = ['netflow.test.js', 'netflow-more.test.js', 'httpflow.test.js', 'tls.test.js', 'k8s.test.js', 'lifecycle.test.js'];

/**
 * Tests of user-space behaviour that no kernel changes (delivery to DataKit
 * across outages and restarts, signals and the log, the packages installed in a
 * bare Debian): they run on the host only; under emulation they would take
 * minutes and show nothing new. The containers test too: it assembles a root
 * file system from the host's files and makes cgroups, which the VMs' minimal
 * root does not offer as a host does.
 */
export const HOST_ONLY_FILES = ['delivery.test.js', 'process.test.js', 'package.test.js', 'containers.test.js'];

/** What each test file shows working, for the table. hooks.test.js runs every set itself. */
const COVERS: Record<string, string[]> = {
  'netflow.test.js': ['netflow'],
  'netflow-more.test.js': ['netflow'],
  'httpflow.test.js': ['httpflow'],
  'tls.test.js': ['https'],
  'dnsflow.test.js': ['dnsflow'],
  'bash.test.js': ['bash'],
  'k8s.test.js': ['k8s'],
  'lifecycle.test.js': ['lifecycle'],
  'startup.test.js': ['lifecycle'],
  'hooks.test.js': ['netflow', 'httpflow', 'dnsflow', 'bash'],
};
const COLUMNS = ['netflow', 'httpflow', 'https', 'dnsflow', 'bash', 'k8s', 'lifecycle'];

export interface Run {
  suite: Suite;
  /** The set this run counts bytes with. */
  hooks: ByteHooks;
  /** true: the collector chooses (and must choose `hooks`); false: --hooks forces it. */
  auto: boolean;
  files: string[];
}

export function plan(suites: Suite[], allFiles: string[]): Run[] {
  return suites.flatMap((suite) => {
    return [
      { suite, hooks: MATRIX[suite][0], auto: true, files: allFiles },
      ...RERUNS[suite].map((hooks) => ({ suite, hooks, auto: false, files: allFiles.filter((f) => PER_HOOKS_FILES.includes(f)) })),
    ];
  });
}

export interface RunOutcome {
  run: Run;
  release?: string;
  results: FileResult[];
  failures: FileFailure[];
  problems: string[];
  ms: number;
  /** The guest kernel died once and the files it left unfinished ran again: its crash. */
  crashedOnce?: string;
}

const OOPS = /^.*(BUG:|Oops|general protection|invalid opcode|kernel BUG|Kernel panic|WARNING:|RIP:).*$/m;

/**
 * What of a dead VM's console explains it: from the first oops line (what
 * went wrong, and where), then the end; the console is kept whole nowhere else.
 */
export function crashExcerpt(consoleText: string, limit = 3000): string {
  const at = consoleText.search(OOPS);
  const tail = consoleText.slice(-limit);
  if (at < 0 || at >= consoleText.length - limit) return tail;
  const head = consoleText.slice(at, at + limit);
  return `${head}
[…]
${consoleText.slice(-Math.floor(limit / 3))}`;
}

/** Everything wrong with a run, from what came back of the VM. */
export function judge(run: Run, status: number | undefined, output: string): Omit<RunOutcome, 'run' | 'ms'> {
  const { release, results, failures } = parseGuestOutput(output);
  const problems: string[] = [];
  if (status === undefined) problems.push('the VM ended without the command status');
  if (!release?.startsWith(`${KERNEL_SERIES[run.suite]}.`)) problems.push(`ran on Linux ${release ?? '?'}, not ${KERNEL_SERIES[run.suite]}`);
  for (const f of run.files) {
    const r = results.find((x) => x.file === f);
    if (!r) problems.push(`${f}: no result`);
    else if (r.status !== 0 || r.fail || r.cancelled) problems.push(`${f}: failed (${r.fail} failed, ${r.cancelled} cancelled, exit ${r.status})`);
    else if (!r.tests || r.skipped || r.todo) problems.push(`${f}: ${r.tests} tests, ${r.skipped} skipped, ${r.todo} todo`);
  }
  if (status !== undefined && status !== 0 && !problems.length) problems.push(`the runner exited ${status}`);
  return { release, results, failures, problems };
}

/** Markdown: kernel × plugin, each cell the byte-hook sets its tests passed with. */
export function table(outcomes: RunOutcome[]): string {
  const rows = [`| kernel | ${COLUMNS.join(' | ')} |`, `|---|${COLUMNS.map(() => '---').join('|')}|`];
  for (const suite of SUITES) {
    const runs = outcomes.filter((o) => o.run.suite === suite);
    if (!runs.length) continue;
    const cells = COLUMNS.map((col) => {
      const files = Object.keys(COVERS).filter((f) => COVERS[f].includes(col));
      const ok = new Set<string>();
      const bad = new Set<string>();
      for (const o of runs) {
        for (const r of o.results.filter((x) => files.includes(x.file))) {
          const good = r.status === 0 && !r.fail && !r.skipped;
          // hooks.test.js tries every set the kernel offers in one run
          const sets = r.file === 'hooks.test.js' ? MATRIX[suite] : [o.run.hooks];
          for (const s of sets) (good ? ok : bad).add(s);
        }
      }
      for (const s of bad) ok.delete(s);
      const sets = MATRIX[suite].filter((s) => ok.has(s));
      return bad.size ? `✖ ${[...bad].join(', ')}` : sets.length ? `✔ ${sets.join(', ')}` : '–';
    });
    const release = runs.find((o) => o.release)?.release ?? KERNEL_SERIES[suite];
    rows.push(`| ${release} (Debian ${suite}) | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

function timings(outcomes: RunOutcome[]): string {
  const rows = ['| kernel | hooks | files | minutes | result |', '|---|---|---|---|---|'];
  for (const o of outcomes) {
    rows.push(
      `| ${o.release ?? o.run.suite} | ${o.run.hooks}${o.run.auto ? ' (auto)' : ''} | ${o.run.files.length} | ${(o.ms / 60_000).toFixed(1)} | ` +
        `${o.problems.length ? `✖ ${o.problems.join('; ')}` : o.crashedOnce ? '✔ (the VM died once; its unfinished files passed in a new one)' : '✔'} |`,
    );
  }
  return rows.join('\n');
}

/** The harness itself: a command's output and a failing status come back from the VM. */
async function selfTest(kernel: Kernel): Promise<string[]> {
  const r = await runInVm(kernel, ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; uname -r; exit 3'], { timeoutMs: 5 * 60_000 });
  const problems: string[] = [];
  if (r.status !== 3) problems.push(`harness: expected status 3, got ${r.status}\n${r.console.slice(-2000)}`);
  for (const text of ['to-stdout', 'to-stderr', kernel.release]) if (!r.output.includes(text)) problems.push(`harness: "${text}" did not come back`);
  return problems;
}

async function main(args: string[]): Promise<void> {
  const suites = args.length ? args : SUITES;
  for (const s of suites) if (!(SUITES as string[]).includes(s)) throw new Error(`unknown suite ${s} (known: ${SUITES.join(', ')})`);
  const say = (msg: string) => process.stdout.write(`kernel matrix: ${msg}\n`);
  const kernels = new Map((suites as Suite[]).map((s) => [s, prepareKernel(s, say)]));
  const allFiles = fs.readdirSync(integrationDir).filter((f) => f.endsWith('.test.js') && !HOST_ONLY_FILES.includes(f)).sort();
  const t0 = Date.now();

  const harness = await selfTest(kernels.get(suites[0] as Suite)!);
  if (harness.length) throw new Error(harness.join('\n'));
  say(`harness checked on ${kernels.get(suites[0] as Suite)!.release}`);

  const outcomes: RunOutcome[] = [];
  for (const run of plan(suites as Suite[], allFiles)) {
    const kernel = kernels.get(run.suite)!;
    const label = `[${run.suite} ${run.hooks}${run.auto ? ' auto' : ''}]`;
    say(`${label} booting Linux ${kernel.release}: ${run.files.length} test files`);
    const env: Record<string, string> = { CI: '1' };
    if (run.auto) env.EXPECT_BYTE_HOOKS = MATRIX[run.suite].join(',');
    else env.TEST_HOOKS = run.hooks;
    const started = Date.now();
    let partial = '';
    const boot = (files: string[]) =>
      runInVm(kernel, [process.execPath, guest, ...files.map((f) => path.join(integrationDir, f))], {
        env,
        timeoutMs: 40 * 60_000,
        onOutput: (chunk) => {
          const lines = (partial + chunk).split('\n');
          partial = lines.pop()!;
          for (const l of lines) process.stdout.write(`${label} ${l}\n`);
        },
      });
    let r = await boot(run.files);
    let output = r.output;
    let crashedOnce: string | undefined;
    if (r.status === undefined && /Kernel panic - not syncing/.test(r.console)) {
      // The guest kernel died (seen once: 6.12 panicked in ip_finish_output under
      // emulation while tests attached and detached programs). Its console goes to the
      // log and the report; the files it left unfinished run once more in a new VM, and
      // a second death fails the run. A VM that hung (timed out) is not run again: CI's
      // time could not pay for it.
      crashedOnce = crashExcerpt(r.console);
      const finished = new Set(parseGuestOutput(r.output).results.map((x) => x.file));
      const rest = run.files.filter((f) => !finished.has(f));
      say(`${label} the VM died; its console:\n${crashedOnce}\n${label} running again in a new VM: ${rest.join(', ')}`);
      if (rest.length) {
        partial = '';
        r = await boot(rest);
        output += `\n${r.output}`;
      }
    }
    const outcome: RunOutcome = { run, ms: Date.now() - started, crashedOnce, ...judge(run, r.status, output) };
    if (r.status === undefined) outcome.problems.push(`console:\n${crashExcerpt(r.console)}`);
    outcomes.push(outcome);
    say(`${label} ${outcome.problems.length ? `FAILED: ${outcome.problems.join('; ')}` : 'passed'} in ${(outcome.ms / 60_000).toFixed(1)} min`);
  }

  const report =
    `Kernel matrix of ${new Date().toISOString()} on ${os.cpus().length} cores, Node ${process.version}, ` +
    `${((Date.now() - t0) / 60_000).toFixed(1)} minutes in all (qemu, emulated).\n\n` +
    `${table(outcomes)}\n\nEach cell: the byte-hook sets (SPEC §2 --hooks) with which that plugin's tests passed.\n\n${timings(outcomes)}\n`;
  fs.writeFileSync(path.join(repoRoot, 'test', 'kernels', 'RESULTS.md'), `# Kernel matrix\n\n${report}`);
  process.stdout.write(`\n${report}`);
  // last, so that a log cut to its tail still says what failed
  for (const o of outcomes) {
    if (o.crashedOnce) process.stdout.write(`\nThe VM died once on ${o.release ?? o.run.suite} with ${o.run.hooks} hooks; its console:\n${o.crashedOnce}\n`);
    for (const f of o.failures) process.stdout.write(`\nFailed on ${o.release ?? o.run.suite} with ${o.run.hooks} hooks: ${f.file}\n${f.text}\n`);
  }
  if (outcomes.some((o) => o.problems.length)) process.exitCode = 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`kernel matrix: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 1;
  });
}
