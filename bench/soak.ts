// The soak row of the benchmark (ONLY=soak SOAK_MINUTES=30 npm run bench): the
// collector (all plugins, default mode) under a mixed load for a long time —
// kept-alive HTTP, short connections, DNS queries and UDP from one-off sockets
// — with its resident memory sampled every 10 s. It passes when memory after
// the warm-up (the first sixth, at least a minute) stays within 10% of where
// the warm-up left it, and no loss counter grew. "Memory" is the median of
// each minute's six samples: V8's young generation alone (up to 3 × 8 MB)
// swings single samples by ±8 MB from one collection to the next, which is
// no growth; a leak moves every sample of a minute, so the median shows it.
// The raw lowest and highest samples are reported beside it.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killGroup, startCollector, startDaemon } from '../test/helpers/collector';
import type { HostPair } from '../test/helpers/netns';

const SAMPLE_MS = 10_000;
const FLAT = 1.1;
const SOAK_LOG = path.join(os.tmpdir(), 'datakit-ebpf-soak-collector.log');

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(stat[11]) + Number(stat[12])) / 100;
}

/** Runs `cmd` again and again until `until`; counts the runs that failed. */
function repeat(cmd: string[], until: number, failures: string[]): { done: Promise<number>; stop(): void } {
  let child: ChildProcess | undefined;
  let stopped = false;
  const done = (async () => {
    let runs = 0;
    while (!stopped && Date.now() < until) {
      const code = await new Promise<number | null>((resolve) => {
        child = spawn(cmd[0], cmd.slice(1), { stdio: 'ignore', detached: true });
        child.on('exit', (c) => resolve(c));
      });
      if (code !== 0 && !stopped) failures.push(`${cmd[4] === process.execPath ? cmd[6] : cmd[4]} exited ${code}`);
      runs++;
    }
    return runs;
  })();
  return {
    done,
    stop() {
      stopped = true;
      killGroup(child);
    },
  };
}

/** The soak; returns its report (markdown). `queries` is dnsperf's query file. */
export async function soak(hosts: HostPair, dir: string, minutes: number, queries: string, peer: string): Promise<string> {
  const inClient = (cmd: string[]) => ['ip', 'netns', 'exec', hosts.client, ...cmd];
  const udpServer = await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'udp-server', hosts.serverV4, '9100', '40'], 'listening');
  const collector = await startCollector(['--interval', '10s'], {}, path.join(dir, 'soak-points'));
  const pid = collector.proc.pid!;
  const started = Date.now();
  const until = started + minutes * 60_000;
  const failures: string[] = [];
  const url = `http://${hosts.serverV4}/`;
  const loads = [
    repeat(inClient(['wrk', '-t1', '-c10', '-d30s', url]), until, failures),
    repeat(inClient(['wrk', '-t1', '-c4', '-d30s', '-H', 'Connection: close', url]), until, failures),
    repeat(inClient(['dnsperf', '-s', hosts.serverV4, '-d', queries, '-l', '30', '-Q', '3000']), until, failures),
    // ports the kernel picks: dnsperf holds some of the ephemeral range too
    repeat(inClient([process.execPath, peer, 'udp-churn', hosts.serverV4, '9100', '20000', '20', '2']), until, failures),
  ];
  const samples: { minute: number; rss: number }[] = [];
  try {
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
      samples.push({ minute: (Date.now() - started) / 60_000, rss: rssMb(pid) });
    }
    const runs = await Promise.all(loads.map((l) => l.done));
    const cpu = cpuSeconds(pid);
    await collector.stop('SIGTERM', 300_000);
    // the collector's own log (its memory line each interval) for a closer look
    fs.writeFileSync(SOAK_LOG, collector.stderr());

    const warmMinutes = Math.max(1, Math.round(minutes / 6));
    // each whole minute's median; the warm-up's level is its last minute's
    const perMinute = new Map<number, number[]>();
    for (const s of samples) {
      const m = Math.ceil(s.minute - 1e-9);
      perMinute.set(m, [...(perMinute.get(m) ?? []), s.rss]);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const minuteRss = [...perMinute].map(([m, xs]) => ({ minute: m, rss: median(xs) }));
    const warm = minuteRss.find((s) => s.minute === warmMinutes)?.rss ?? minuteRss[0].rss;
    const afterMinutes = minuteRss.filter((s) => s.minute > warmMinutes).map((s) => s.rss);
    const max = Math.max(...afterMinutes);
    const min = Math.min(...afterMinutes);
    const raw = samples.filter((s) => s.minute > warmMinutes).map((s) => s.rss);
    // every loss warning the collector logged: "plugin: counter +N (what was lost)"
    const losses = [...collector.stderr().matchAll(/WARN (\w+): (\w+) \+(\d+) \(/g)].map((m) => `${m[1]}:${m[2]}+${m[3]}`);
    const dropped = [...collector.stderr().matchAll(/WARN output: (\d+) points dropped/g)].map((m) => `output:dropped+${m[1]}`);
    const flat = max / warm <= FLAT && min / warm >= 1 / FLAT;
    const rows = [
      ['minutes', 'load runs (HTTP, short, DNS, UDP)', 'collector CPU', `RSS at ${warmMinutes} min (median)`, 'RSS after, minute medians: min / max', 'max / warm-up', 'RSS after, raw samples: min / max', 'losses', 'verdict'],
      [
        minutes.toFixed(0),
        runs.join(', '),
        `${((cpu / (minutes * 60)) * 100).toFixed(0)}%`,
        `${warm.toFixed(0)} MB`,
        `${min.toFixed(0)} / ${max.toFixed(0)} MB`,
        (max / warm).toFixed(3),
        `${Math.min(...raw).toFixed(0)} / ${Math.max(...raw).toFixed(0)} MB`,
        [...losses, ...dropped].join(' ') || 'none',
        flat && !losses.length && !dropped.length && !failures.length ? 'pass' : 'FAIL',
      ],
    ];
    const table = [rows[0], rows[0].map(() => '---'), rows[1]].map((r) => `| ${r.join(' | ')} |`).join('\n');
    const curve = minuteRss.map((s) => `${s.minute} min: ${s.rss.toFixed(0)} MB`).join(', ');
    // each kind of failure once, with how many times
    const failed = [...new Set(failures)].map((f) => `${f} (${failures.filter((x) => x === f).length}×)`);
    return `## Soak\n\n${table}\n\nRSS each minute (median): ${curve}${failed.length ? `\n\nLoad failures: ${failed.join('; ')}` : ''}\n`;
  } finally {
    for (const l of loads) l.stop();
    killGroup(udpServer);
    await collector.stop('SIGKILL');
  }
}
