// What finding the processes to probe costs, in user-space CPU, with many
// processes and a stream of execs: ebpf-bash's scan for bash
// (src/plugins/bash/discovery.ts) and httpflow's for TLS libraries and Go
// programs (src/plugins/httpflow/tls/discovery.ts, which also looks at each
// exec the kernel reports). No probe is placed: placing one is done once per
// file, not per process. Run through `ONLY=bash-discovery npm run bench`:
//   DISCOVERY_PROCESSES=2000   idle processes added to the host's own for the measurement
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { BashDiscovery } from '../src/plugins/bash/discovery';
import { TlsDiscovery } from '../src/plugins/httpflow/tls/discovery';
import { inspectGoBinary } from '../src/plugins/httpflow/tls/go';
import { killGroup, spawnGroup } from '../test/helpers/collector';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const processCount = () => fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;

/** CPU ms of `fn`, which runs `times` scans. */
function cpuMs(fn: () => void): number {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000;
}

export async function bashDiscovery(): Promise<string> {
  const extra = Number(process.env.DISCOVERY_PROCESSES ?? 2000);
  const spawned: ChildProcess[] = [];
  try {
    // idle processes: each a sleep of its own
    spawned.push(spawnGroup('sh', ['-c', `i=0; while [ $i -lt ${extra} ]; do sleep 3600 & i=$((i+1)); done; wait`], { stdio: 'ignore' }));
    const base = processCount();
    for (let i = 0; i < 100 && processCount() < base + extra - 5; i++) await sleep(100);
    const n = processCount();

    const sink = { attach: () => true, detach: () => undefined };
    const bash = await measure(n, new BashDiscovery(sink, { hostCheckMs: Infinity }), spawned);
    const tlsScan = new TlsDiscovery(sink, { hostCheckMs: Infinity, inspectGo: inspectGoBinary });
    const tls = await measure(n, tlsScan, spawned);
    // an exec the kernel reports: the process looked at once more, at once
    const pids = fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)).map(Number);
    const perExecUs = (cpuMs(() => {
      for (const pid of pids) tlsScan.noteExec(pid, 20_000_000);
    }) / pids.length) * 1000;
    return [
      `| scan | processes | first scan (all new) | steady scan (of which listing /proc) | full re-check | scan with N new processes/s | per new process, from the first scan | CPU per second at the defaults |`,
      '|---|---|---|---|---|---|---|---|',
      `| bash | ${bash}`,
      `| TLS | ${tls}`,
      '',
      `TLS also looks at each exec the kernel reports: ${perExecUs.toFixed(1)} µs of CPU per exec (its maps, its executable's identity; a Go executable is read once per file), so 100 execs/s cost ${((perExecUs * 100) / 1000).toFixed(2)} ms/s more.`,
    ].join('\n');
  } finally {
    for (const p of spawned) killGroup(p);
  }
}

interface Scanner {
  scan(nowMs: number): void;
  counts: Record<string, number>;
}

/** One row: a discovery's costs over `n` processes (cells after the first). */
async function measure(n: number, d: Scanner, spawned: ChildProcess[]): Promise<string> {
  {
    const first = cpuMs(() => d.scan(0)); // every process is new: the cost at start-up
    // steady: nothing new, nothing young (times past the young window, before the next full one)
    const steadyRounds = 20;
    const steady = cpuMs(() => {
      for (let i = 1; i <= steadyRounds; i++) d.scan(10_000 + i);
    }) / steadyRounds;
    // of which the kernel's listing of /proc alone
    const listing = cpuMs(() => {
      for (let i = 1; i <= steadyRounds; i++) fs.readdirSync('/proc');
    }) / steadyRounds;
    // a full re-check of every process (every 30 s by default)
    const full = cpuMs(() => d.scan(10_000_000));

    // a stream of execs: a shell starting a process that lives 1.5 s every 20 ms (one that
    // ends between two scans is never looked at: the cost follows processes, not execs)
    const before = d.counts.new_processes;
    const churn = spawnGroup('sh', ['-c', 'while :; do sleep 1.5 & sleep 0.02; done'], { stdio: 'ignore' });
    spawned.push(churn);
    let churnCpu = 0;
    let t = 10_000_100;
    const seconds = 10;
    for (let s = 0; s < seconds; s++) {
      await sleep(1000);
      t += 1000;
      churnCpu += cpuMs(() => d.scan(t)); // no full re-check within these 10 s
    }
    const examined = d.counts.new_processes - before;
    killGroup(churn);
    // each command is a fork and an exec: new processes = execs (each looked at once new, again while young)
    const perScan = churnCpu / seconds;
    // the first scan looked at every process as new: what a new process costs beyond the listing
    const perNewUs = ((first - steady) / n) * 1000;
    const perSecond = perScan + full / 30; // one scan a second, a full re-check every 30 s
    return `${n} | ${first.toFixed(1)} ms | ${steady.toFixed(2)} ms (${listing.toFixed(2)} ms) | ${full.toFixed(1)} ms | ${perScan.toFixed(2)} ms (${Math.round(examined / seconds)}/s) | ${perNewUs.toFixed(1)} µs | ${perSecond.toFixed(2)} ms (${(perSecond / 10).toFixed(3)}% of a core) |`;
  }
}
