// An interactive bash on a pseudo-terminal (util-linux `script`), typed into
// line by line: what a person at a terminal does.
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { killGroup, spawnGroup } from './collector';

export interface InteractiveBash {
  proc: ChildProcess;
  /** pid of the bash process itself (a child of `script`). */
  bashPid: number;
  type(line: string): Promise<void>;
  exit(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function children(pid: number): number[] {
  try {
    const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids ? kids.split(' ').map(Number) : [];
  } catch {
    return [];
  }
}

/** The first descendant of `pid` whose command is bash (script may run it through a shell). */
function findBash(pid: number): number | undefined {
  const queue = children(pid);
  while (queue.length) {
    const p = queue.shift()!;
    try {
      if (fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'bash') return p;
    } catch {
      continue;
    }
    queue.push(...children(p));
  }
  return undefined;
}

/**
 * `asUid` runs bash as that user (through setpriv); `command` is a shell
 * command line that runs the interactive bash some other way (in a container).
 */
export async function startInteractiveBash(asUid?: number, command?: string): Promise<InteractiveBash> {
  const bash = 'bash --norc --noprofile -i';
  const cmd = command ?? (asUid === undefined ? bash : `setpriv --reuid=${asUid} --regid=${asUid} --clear-groups ${bash}`);
  const proc = spawnGroup('script', ['-qfec', cmd, '/dev/null'], {
    env: { PATH: process.env.PATH, LANG: 'C.UTF-8', TERM: 'dumb', PS1: '$ ', HOME: '/', SHELL: '/bin/sh' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  proc.stdout!.resume();
  proc.stderr!.resume();
  let bashPid: number | undefined;
  for (let i = 0; i < 100 && !bashPid; i++) {
    await sleep(20);
    bashPid = findBash(proc.pid!);
  }
  if (!bashPid) throw new Error('bash did not start under script');
  await sleep(300); // until readline waits for input
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  return {
    proc,
    bashPid,
    async type(line) {
      proc.stdin!.write(`${line}\r`);
      await sleep(150);
    },
    async exit() {
      proc.stdin!.write('exit\r');
      const t = setTimeout(() => killGroup(proc), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
