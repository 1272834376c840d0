// Runs bin/datakit-ebpf as a child process and collects what it prints.
import { ChildProcess, spawn, SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ParsedPoint, parseLine } from './lineprotocol-parse';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
/**
 * The kernel's name (comm) of a process of the Node.js running the tests, as
 * the peers are: Node.js 24 names its main thread, so "MainThread"; "node" before.
 */
export const nodeComm = fs.readFileSync('/proc/self/comm', 'utf8').trim();
export const binPath = path.join(repoRoot, 'bin', 'datakit-ebpf');

export interface RunningCollector {
  proc: ChildProcess;
  lines: string[];
  stderr(): string;
  points(measurement?: string): ParsedPoint[];
  /** Resolves once a printed line satisfies `pred`. */
  waitForLine(pred: (line: string) => boolean, timeoutMs: number): Promise<string>;
  /** Signals the collector and waits for it to exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) killGroup(p);
});

/**
 * Starts a process in a process group of its own, so that killGroup() also
 * ends what it forks (nginx's workers, dnsmasq's TCP children): killing only
 * the parent would leave them running in a namespace nobody can see.
 */
export function spawnGroup(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  return spawn(cmd, args, { ...opts, detached: true });
}

export function killGroup(p: ChildProcess | undefined): void {
  if (!p?.pid) return;
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch {
    p.kill('SIGKILL'); // not a group leader, or already gone
  }
}

/** The collector's log so far: its `--log` file if it has one, else its stderr. */
function logText(args: string[], stderr: string): string {
  const i = args.indexOf('--log');
  if (i < 0) return stderr;
  try {
    return fs.readFileSync(args[i + 1], 'utf8');
  } catch {
    return '';
  }
}

/**
 * With `stdoutFile` the collector writes there instead of to a pipe (so a
 * benchmark does not pay for reading it live); lines and points are then read
 * from the file when asked for. `wrapper` runs it through another command
 * (e.g. unshare), which must exec it. It is ready once its log says it
 * started, or once `ready` resolves true (for a log that cannot be read).
 * `bin` is the executable: this checkout's unless another is named (an
 * installed package's).
 */
export async function startCollector(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  stdoutFile?: string,
  wrapper: string[] = [],
  ready?: () => boolean | Promise<boolean>,
  bin = binPath,
): Promise<RunningCollector> {
  // the kernel matrix runs the suites once per byte-hook path
  if (process.env.TEST_HOOKS && !args.some((a) => a.startsWith('--hooks'))) args = [...args, '--hooks', process.env.TEST_HOOKS];
  const out = stdoutFile ? fs.openSync(stdoutFile, 'w') : 'pipe';
  // run the executable itself, as users do, so its interpreter flags apply
  const [cmd, ...pre] = [...wrapper, bin];
  const proc = spawn(cmd, [...pre, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', out, 'pipe'],
  });
  if (typeof out === 'number') fs.closeSync(out);
  running.add(proc);
  const lines: string[] = [];
  const allLines = () => (stdoutFile ? fs.readFileSync(stdoutFile, 'utf8').split('\n') : lines);
  let err = '';
  let partial = '';
  const waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.pred(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    }),
  );

  // Ready once it says so; fail fast if it exits first.
  // an emulated kernel (the kernel matrix) verifies programs many times slower
  const deadline = Date.now() + 45000;
  const started = ready ?? (() => /datakit-ebpf started/.test(logText(args, err)));
  while (!(await started())) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`collector did not start (exit ${proc.exitCode}):\n${err}${err === logText(args, err) ? '' : logText(args, err)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    proc,
    lines,
    stderr: () => err,
    points: (m) => allLines().filter((l) => l && (!m || l.startsWith(`${m},`))).map(parseLine),
    waitForLine(pred, timeoutMs) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching line within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
    async stop(signal = 'SIGTERM', graceMs = 15000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const res = await exited;
      clearTimeout(timer);
      return res;
    },
  };
}

/** Runs a command to completion; rejects on a non-zero exit. */
export function run(cmd: string, args: string[]): Promise<{ pid: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0 ? resolve({ pid: p.pid!, stdout: out }) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}\n${err}`)),
    );
  });
}

/**
 * Runs a command to its end, whatever its status, without blocking this
 * process (a fake DataKit here may have to answer it): for start-ups that must fail.
 */
export function runToExit(cmd: string, args: string[], timeoutMs = 60000): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}

/** Starts a long-running process and resolves once it prints `ready` (within `timeoutMs`). */
export function startDaemon(cmd: string, args: string[], ready: string, timeoutMs = 10000): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawnGroup(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(p);
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`${cmd} not ready: ${out}${err}`)), timeoutMs);
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes(ready)) {
        clearTimeout(t);
        resolve(p);
      }
    });
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('exit', (code) => {
      running.delete(p);
      clearTimeout(t);
      reject(new Error(`${cmd} exited ${code}: ${err}`));
    });
  });
}

/** The counters a plugin logged in its last interval line ("NAME: N points; key=value ..."). */
export function pluginStats(stderr: string, plugin: string): Record<string, number> {
  const lines = stderr.split('\n').filter((l) => l.includes(`${plugin}: `) && l.includes(' points; '));
  return Object.fromEntries([...(lines.at(-1) ?? '').matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `pred` until it holds or `timeoutMs` has passed, and says whether it
 * held: for waits whose length a slow (emulated) machine sets. The caller's
 * assertions then say what is missing.
 */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

/** Like until(), but a timeout fails, naming what was waited for. */
export async function waitFor(what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
  if (!(await until(pred, timeoutMs))) throw new Error(`timed out waiting for ${what}`);
}

/** nginx with `conf` in network namespace `ns`, and its one worker's pid once it runs. */
export async function startNginx(ns: string, conf: string): Promise<{ nginx: ChildProcess; worker: number }> {
  const nginx = spawnGroup('ip', ['netns', 'exec', ns, 'nginx', '-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    const kids = fs.readFileSync(`/proc/${nginx.pid}/task/${nginx.pid}/children`, 'utf8').trim();
    if (kids) return { nginx, worker: Number(kids.split(' ')[0]) };
  }
  killGroup(nginx);
  throw new Error('nginx worker did not start');
}
