// The overhead benchmark (`npm run bench`, root): each workload runs without
// and with the collector (all plugins on), in ABBA order, between two test
// namespaces, and the table shows what the collector costs and whether it
// reported what was made. Each round also runs the workload beside a plain busy
// loop taking the collector's measured share of a CPU: on a machine the load
// saturates, that shows how much of the cost is CPU competition alone.
//   ROUNDS=3 SECONDS=10 IDLE_CONNECTIONS=100000 npm run bench
//   ONLY=DNS DNS_QPS=20000 npm run bench     (workloads whose name contains ONLY; a capped query rate)
//   ONLY=kubernetes npm run bench             (only the Kubernetes API load: a steady 1,000-pod cluster, one compressed hour)
//   ONLY=hooks npm run bench                  (only the cost of each set of byte hooks this kernel offers)
//   ONLY=floor npm run bench                  (only the floor: empty programs on the collector's hooks)
//   FLOOR_HOOKS=bytes,packets ONLY=floor npm run bench (the floor on some sets of hooks only: bench/floor.ts)
//   FLOOR=0 ONLY=DNS npm run bench            (no floor rows: for A/B runs of the collector alone)
//   ONLY=soak SOAK_MINUTES=30 npm run bench   (only the soak: a mixed load for that long; memory and losses; bench/SOAK.md)
//   ONLY=startup npm run bench                (only the start-up time of the package of `npm run package`)
//   ONLY=bash-discovery npm run bench         (only the CPU cost of finding bash processes, with DISCOVERY_PROCESSES=2000 more processes)
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { killGroup, nodeComm, RunningCollector, spawnGroup, startCollector, startDaemon } from '../test/helpers/collector';
import { ParsedPoint, parseLine } from '../test/helpers/lineprotocol-parse';
import { BYTE_HOOKS } from '../src/plugins/netflow/hooks';
import { createHostPair, HostPair } from '../test/helpers/netns';
import { makeCertificate } from '../test/helpers/tls';
import { bashDiscovery } from './bash-discovery';
import { soak } from './soak';
import { startup } from './startup';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 10);
const IDLE = Number(process.env.IDLE_CONNECTIONS ?? 100_000);
const ONLY = process.env.ONLY ?? '';
const DNS_QPS = process.env.DNS_QPS ? ['-Q', process.env.DNS_QPS] : [];
const SOAK_MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const FLOOR = process.env.FLOOR !== '0';
const peer = path.join(__dirname, '..', 'test', 'helpers', 'peer.js');
/** Workloads that also get a floor row. */
const FLOORED = ['HTTP keep-alive (wrk -> nginx)', 'HTTPS keep-alive (wrk -> nginx, TLS)', 'short connections (wrk Connection: close)', 'DNS (dnsperf -> dnsmasq)'];

interface RunResult {
  rate: number; // per second, in the workload's unit
  made: number; // events the workload made (requests, connections, queries, bytes)
  pid: number; // the load generator
}

interface Workload {
  name: string;
  unit: string;
  run(): Promise<RunResult>;
  /** The measurement `reported` counts: only its lines are parsed (a run may write millions). */
  measurement: string;
  /** How much of `r` one point of `measurement` reports (0 for points of others' traffic). */
  reported(point: ParsedPoint, r: RunResult): number;
  /** The loss counters that matter, as plugin:counter. */
  losses: string[];
  /** Send to a DataKit stand-in (which writes what it receives to the points file) instead of stdout. */
  viaDataKit?: boolean;
  /** Extra flags for the collector. */
  args?: string[];
}

interface Usage {
  cpuSeconds: number;
  peakRssMb: number;
}

/** Kernel memory of the process's BPF maps (their fdinfo's memlock), MB. */
/** The fdinfo texts of the process's descriptors of one kind of BPF object. */
function bpfFdinfos(pid: number, kind: 'bpf-map' | 'bpf-prog'): string[] {
  const infos: string[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `anon_inode:${kind}`) infos.push(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    } catch {
      /* closed meanwhile */
    }
  }
  return infos;
}

function bpfMapMb(pid: number): number {
  const bytes = bpfFdinfos(pid, 'bpf-map').reduce((a, info) => a + Number(/^memlock:\s+(\d+)/m.exec(info)?.[1] ?? 0), 0);
  return bytes / 2 ** 20;
}

/** The kernel time of the process's BPF programs so far, by program name (with kernel.bpf_stats_enabled). */
function programTimes(pid: number): Map<string, { ns: number; runs: number }> {
  const ids = new Set(bpfFdinfos(pid, 'bpf-prog').map((info) => Number(/^prog_id:\s+(\d+)/m.exec(info)?.[1])));
  const times = new Map<string, { ns: number; runs: number }>();
  const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as { id: number; name?: string; run_time_ns?: number; run_cnt?: number }[];
  for (const p of progs) {
    if (!ids.has(p.id)) continue;
    const t = times.get(p.name ?? String(p.id)) ?? { ns: 0, runs: 0 };
    t.ns += p.run_time_ns ?? 0;
    t.runs += p.run_cnt ?? 0;
    times.set(p.name ?? String(p.id), t);
  }
  return times;
}

/** Which plugin's object a program belongs to, by its name (bpf/*.bpf.c). */
function objectOf(program: string): string {
  // httpflow's packet programs call dnsflow's, whose time the kernel counts as theirs
  if (program.startsWith('http_')) return 'httpflow+dnsflow';
  // httpflow's TLS probes, apart: their cost follows TLS calls, not packets
  if (/^(ssl_|go_|tls_)/.test(program)) return 'httpflow TLS';
  if (program.startsWith('dns_')) return 'dnsflow';
  if (program.startsWith('bash')) return 'bash';
  return 'netflow';
}

/**
 * One more run with the kernel's own accounting of BPF program time on
 * (kernel.bpf_stats_enabled): the collector's kernel-side time per event of
 * the workload, in total and by object. A count, not a rate: it does not move
 * with what else the machine runs, as throughput does.
 */
async function kernelTime(w: Workload, dir: string): Promise<string> {
  const collector = await startCollector(['--interval', '5s', ...(w.args ?? [])], {}, path.join(dir, 'points-stats'));
  const sysctl = (on: number) => execFileSync('sysctl', ['-qw', `kernel.bpf_stats_enabled=${on}`]);
  try {
    sysctl(1);
    const before = programTimes(collector.proc.pid!);
    const r = await w.run();
    const after = programTimes(collector.proc.pid!);
    sysctl(0);
    const byObject = new Map<string, number>();
    const byProgram: string[] = [];
    for (const [name, t] of after) {
      const ns = t.ns - (before.get(name)?.ns ?? 0);
      const runs = t.runs - (before.get(name)?.runs ?? 0);
      byObject.set(objectOf(name), (byObject.get(objectOf(name)) ?? 0) + ns / r.made);
      if (runs > 0) byProgram.push(`${name} ${(ns / r.made).toFixed(0)} ns (${(runs / r.made).toFixed(2)} runs)`);
    }
    // where each object's time goes, per event of the workload: in the log, not the table
    console.error(`${w.name}, kernel time by program per event: ${byProgram.join('; ')}`);
    const total = [...byObject.values()].reduce((a, b) => a + b, 0);
    const fmt = (x: number) => (x >= 10 ? x.toFixed(0) : x.toFixed(2));
    return `${fmt(total)} (${[...byObject].filter(([, ns]) => ns > 0).map(([o, ns]) => `${o} ${fmt(ns)}`).join(', ')})`;
  } finally {
    sysctl(0);
    await collector.stop('SIGKILL');
  }
}

function usage(pid: number): Usage {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime
  const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuSeconds: ticks / 100, peakRssMb: Number(hwm?.[1] ?? 0) / 1024 };
}

function spawnOut(cmd: string, args: string[]): Promise<{ pid: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args);
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.resume();
    p.on('exit', (code) => (code === 0 ? resolve({ pid: p.pid!, out }) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`))));
  });
}

const sum = (ps: ParsedPoint[], f: string) => ps.reduce((a, p) => a + ((p.fields[f] as number) ?? 0), 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function stat(stderr: string, plugin: string, key: string): number {
  // plugins report "NAME: N points; key=value ...", the output "output: sent=... dropped_full=..."
  const line = stderr.split('\n').filter((l) => l.includes(`${plugin}: `) && (l.includes(' points; ') || plugin === 'output')).pop() ?? '';
  return Number(new RegExp(`\\b${key}=(\\d+)`).exec(line)?.[1] ?? NaN);
}

function workloads(hosts: HostPair, dir: string): Workload[] {
  const inClient = (cmd: string[]) => ['netns', 'exec', hosts.client, ...cmd];
  const url = `http://${hosts.serverV4}/`;
  const wrk = async (extra: string[], to = url): Promise<RunResult> => {
    const { pid, out } = await spawnOut('ip', inClient(['wrk', '-t1', '-c50', `-d${SECONDS}s`, ...extra, to]));
    const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
    return { rate: requests / SECONDS, made: requests, pid };
  };
  const iperf = async (extra: string[]): Promise<RunResult> => {
    const { pid, out } = await spawnOut('ip', inClient(['iperf3', '-c', hosts.serverV4, '-p', '5201', '-t', String(SECONDS), '-J', ...extra]));
    const end = JSON.parse(out).end;
    return { rate: end.sum_received.bits_per_second / 1e9, made: end.sum_sent.bytes, pid };
  };
  // bytes written by the client, control connection included
  const bytesWritten = (p: ParsedPoint, r: RunResult) => (p.tags.pid === String(r.pid) ? (p.fields.bytes_written as number) : 0);
  // a series counts its exchanges; a point per request counts one
  const exchanges = (p: ParsedPoint, r: RunResult) => (p.tags.pid === String(r.pid) ? ((p.fields.count as number | undefined) ?? 1) : 0);
  const queries = path.join(dir, 'queries');
  const dnsperf = async (): Promise<RunResult> => {
    const { pid, out } = await spawnOut('ip', inClient(['dnsperf', '-s', hosts.serverV4, '-d', queries, '-l', String(SECONDS), '-c', '4', '-q', '200', ...DNS_QPS]));
    return { rate: Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]), made: Number(/Queries sent:\s+(\d+)/.exec(out)?.[1]), pid };
  };
  fs.writeFileSync(queries, 'www.example.test A\nnx.example.test A\nwww.example.test AAAA\n');
  return [
    {
      name: 'HTTP keep-alive (wrk -> nginx)',
      unit: 'req/s',
      measurement: 'httpflow',
      run: () => wrk([]),
      reported: exchanges,
      losses: ['httpflow:ringbuf_full', 'httpflow:overflow', 'httpflow:series_lost', 'netflow:conn_map_full'],
    },
    {
      // wrk and nginx both through the host's libssl: OpenSSL's calls probed on both sides
      name: 'HTTPS keep-alive (wrk -> nginx, TLS)',
      unit: 'req/s',
      measurement: 'httpflow',
      run: () => wrk([], `https://${hosts.serverV4}/`),
      reported: exchanges,
      losses: ['httpflow:ringbuf_full', 'httpflow:overflow', 'httpflow:series_lost', 'httpflow:tls_no_socket', 'netflow:conn_map_full'],
    },
    {
      name: 'HTTP keep-alive, a point per request (--l7-per-request)',
      unit: 'req/s',
      measurement: 'httpflow',
      args: ['--l7-per-request'],
      run: () => wrk([]),
      reported: exchanges,
      losses: ['httpflow:ringbuf_full', 'httpflow:queue_overflow', 'netflow:conn_map_full'],
    },
    {
      name: 'HTTP keep-alive, points posted to DataKit',
      unit: 'req/s',
      measurement: 'httpflow',
      run: () => wrk([]),
      reported: exchanges,
      losses: ['httpflow:ringbuf_full', 'httpflow:overflow', 'output:dropped_full', 'output:rejected'],
      viaDataKit: true,
    },
    {
      name: 'short connections (wrk Connection: close)',
      unit: 'conn/s',
      measurement: 'netflow',
      run: () => wrk(['-H', 'Connection: close']),
      reported: (p, r) => (p.tags.pid === String(r.pid) ? (p.fields.tcp_closed as number) : 0),
      losses: ['netflow:conn_map_full', 'netflow:close_lost', 'httpflow:ringbuf_full'],
    },
    {
      name: 'bulk TCP (iperf3)',
      unit: 'Gbit/s',
      measurement: 'netflow',
      run: () => iperf([]),
      reported: bytesWritten,
      losses: ['netflow:conn_map_full', 'netflow:close_lost'],
    },
    // every send and receive goes through the byte hooks: what each set costs
    ...BYTE_HOOKS.map(
      (hooks): Workload => ({
        name: `small writes (iperf3 -l 64), bytes counted by ${hooks} hooks`,
        unit: 'Gbit/s',
        measurement: 'netflow',
        args: ['--hooks', hooks],
        run: () => iperf(['-l', '64']),
        reported: bytesWritten,
        losses: ['netflow:conn_map_full', 'netflow:kretprobe_missed'],
      }),
    ),
    {
      name: 'DNS, a point per query (--l7-per-request)',
      unit: 'q/s',
      measurement: 'dnsflow',
      args: ['--l7-per-request'],
      run: dnsperf,
      reported: (p) => (p.tags.dst_ip === hosts.serverV4 ? 1 : 0),
      losses: ['dnsflow:ringbuf_full', 'dnsflow:pending_overflow'],
    },
    {
      name: 'DNS (dnsperf -> dnsmasq)',
      unit: 'q/s',
      measurement: 'dnsflow',
      run: dnsperf,
      // a series counts its answered queries (and timeouts)
      reported: (p) => (p.tags.dst_ip === hosts.serverV4 ? (p.fields.count as number) : 0),
      losses: ['dnsflow:ringbuf_full', 'dnsflow:pending_full', 'dnsflow:overflow', 'dnsflow:series_lost'],
    },
  ];
}

/** A DataKit stand-in: answers posts at once and appends their lines to `file`. */
async function startDataKitSink(file: string): Promise<{ address: string; close(): Promise<void> }> {
  fs.writeFileSync(file, '');
  const out = fs.openSync(file, 'a');
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      chunks.push(Buffer.from('\n'));
      fs.writeSync(out, Buffer.concat(chunks));
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          fs.closeSync(out);
          resolve();
        });
      }),
  };
}

/**
 * Sums `fn` over the points of `measurement` in `file`, a line at a time: a
 * run at hundreds of thousands of requests a second writes more than one
 * string can hold.
 */
async function sumPoints(file: string, measurement: string, fn: (p: ParsedPoint) => number): Promise<number> {
  let total = 0;
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  for await (const l of lines) if (l.startsWith(`${measurement},`)) total += fn(parseLine(l));
  return total;
}

/** Keeps `argv[1]` (a fraction) of one CPU busy, in 10 ms slices. */
const BURNER = `const duty = Number(process.argv[1]);
setInterval(() => { const end = performance.now() + 10 * duty; while (performance.now() < end); }, 10);`;

/**
 * The floor of a workload: the same runs beside empty programs on the
 * collector's hooks (bench/floor.bpf.c), which is what the hooks cost before
 * the collector does any work in them.
 */
async function measureFloor(w: Workload): Promise<string[]> {
  const ratios: number[] = [];
  let base = 0;
  let withFloor = 0;
  for (let round = 0; round < ROUNDS; round++) {
    let b = round % 2 ? undefined : await w.run();
    const floor = await startDaemon(process.execPath, [path.join(__dirname, 'floor.js')], 'attached');
    const r = await w.run().finally(() => floor.kill('SIGTERM'));
    b ??= await w.run();
    ratios.push(r.rate / b.rate);
    base += b.rate / ROUNDS;
    withFloor += r.rate / ROUNDS;
  }
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
  return [`${w.name}: empty programs on the same hooks (floor)`, `${fmt(base)} ${w.unit}`, `${fmt(withFloor)} ${w.unit}`, median(ratios).toFixed(3), '-', '-', '-', '-', '-', '-'];
}

async function measure(w: Workload, dir: string): Promise<string[]> {
  const ratios: number[] = [];
  const burnRatios: number[] = [];
  const shares: number[] = [];
  let base = 0;
  let withC = 0;
  let cpuPerM = 0;
  let rss = 0;
  let maps = 0;
  let made = 0;
  let reported = 0;
  const losses = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    // ABBA: the baseline runs first in even rounds and last in odd ones, so drift over time cancels
    let b = round % 2 ? undefined : await w.run();
    const pointsFile = path.join(dir, 'points');
    const datakit = w.viaDataKit ? await startDataKitSink(pointsFile) : undefined;
    const toDataKit = datakit ? ['--datakit-apiserver', datakit.address, '--buffer-dir', path.join(dir, 'buffer')] : [];
    const collector = await startCollector(['--interval', '5s', ...(w.args ?? []), ...toDataKit], {}, pointsFile);
    const before = usage(collector.proc.pid!);
    const r = await w.run();
    // CPU is read after the next report, which reads and sends what this run left in the kernel
    const reports = (collector.stderr().match(/ memory: /g) ?? []).length;
    const deadline = Date.now() + 15_000;
    while ((collector.stderr().match(/ memory: /g) ?? []).length <= reports && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    const after = usage(collector.proc.pid!);
    maps = Math.max(maps, bpfMapMb(collector.proc.pid!));
    await collector.stop('SIGTERM', 300_000);
    b ??= await w.run();
    // the same share of a CPU taken by a plain busy loop: how much of the cost is CPU competition alone
    const share = (after.cpuSeconds - before.cpuSeconds) / SECONDS;
    const burner = spawn(process.execPath, ['-e', BURNER, String(Math.min(1, share))], { stdio: 'ignore' });
    const burnt = await w.run().finally(() => burner.kill('SIGKILL'));
    burnRatios.push(burnt.rate / b.rate);
    shares.push(share);
    ratios.push(r.rate / b.rate);
    base += b.rate / ROUNDS;
    withC += r.rate / ROUNDS;
    cpuPerM += ((after.cpuSeconds - before.cpuSeconds) / r.made) * 1e6 / ROUNDS;
    rss = Math.max(rss, after.peakRssMb);
    made += r.made;
    await datakit?.close();
    reported += await sumPoints(pointsFile, w.measurement, (p) => w.reported(p, r));
    for (const l of w.losses) {
      const [plugin, key] = l.split(':');
      losses.set(l, (losses.get(l) ?? 0) + (stat(collector.stderr(), plugin, key) || 0));
    }
  }
  const kernelNs = await kernelTime(w, dir);
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));
  return [
    w.name,
    `${fmt(base)} ${w.unit}`,
    `${fmt(withC)} ${w.unit}`,
    median(ratios).toFixed(3),
    `${(median(shares) * 100).toFixed(0)}% / ${median(burnRatios).toFixed(3)}`,
    cpuPerM.toFixed(2),
    kernelNs,
    `${rss.toFixed(0)} / ${maps.toFixed(0)}`,
    `${reported} / ${made}`,
    [...losses].map(([k, v]) => `${k.split(':')[1]}=${v}`).join(' '),
  ];
}

/** Why the collector will not start with `args` on this kernel (a set of hooks it lacks); undefined if it starts. */
async function refusal(args: string[]): Promise<string | undefined> {
  if (!args.length) return undefined;
  try {
    const c = await startCollector(['--interval', '60s', ...args], {}, '/dev/null');
    await c.stop('SIGTERM');
    return undefined;
  } catch (err) {
    return / ERROR (.*)/.exec((err as Error).message)?.[1] ?? (err as Error).message.split('\n')[0];
  }
}

/** IDLE connections held open by several processes (20,000 descriptors each at most). */
async function idle(hosts: HostPair, dir: string): Promise<string[]> {
  const perProcess = 20_000 - 200;
  const procs: ChildProcess[] = [];
  const collector: RunningCollector = await startCollector(['--interval', '5s'], {}, path.join(dir, 'points'));
  try {
    const servers = Math.ceil(IDLE / perProcess);
    for (let i = 0; i < servers; i++) {
      procs.push(await startDaemon('ip', ['netns', 'exec', hosts.server, process.execPath, peer, 'hold-server', hosts.serverV4, String(7100 + i)], 'listening'));
    }
    for (let i = 0; i < servers; i++) {
      const n = Math.min(perProcess, IDLE - i * perProcess);
      procs.push(await startDaemon('ip', ['netns', 'exec', hosts.client, process.execPath, peer, 'hold', hosts.serverV4, String(7100 + i), String(n)], 'held'));
    }
    await new Promise((r) => setTimeout(r, 6000)); // one report with everything open
    const u = usage(collector.proc.pid!);
    const maps = bpfMapMb(collector.proc.pid!);
    await collector.stop('SIGTERM', 300_000);
    const established = collector.points('netflow').filter((p) => p.tags.process_name === nodeComm && p.tags.direction === 'outgoing');
    // where the memory went, for whoever reads the run's log
    for (const l of collector.stderr().split('\n')) if (/memory:|netflow: \d+ points/.test(l)) console.error(l);
    return [
      `${IDLE} idle connections held`,
      '-',
      '-',
      '-',
      '-',
      '-',
      '-',
      `${u.peakRssMb.toFixed(0)} / ${maps.toFixed(0)}`,
      `${sum(established, 'tcp_established')} / ${IDLE}`,
      `conn_map_full=${stat(collector.stderr(), 'netflow', 'conn_map_full')}`,
    ];
  } finally {
    for (const p of procs) killGroup(p);
    await collector.stop('SIGKILL');
  }
}

async function main(): Promise<void> {
  if (ONLY === 'startup') {
    console.log(`# Start-up\n\n${new Date().toISOString()}.\n\n${await startup()}`);
    return;
  }
  if (ONLY === 'bash-discovery') {
    console.log(`# bash discovery\n\n${new Date().toISOString()} on Linux ${os.release()}, Node ${process.version}.\n\n${await bashDiscovery()}`);
    return;
  }
  // left on by something else, the kernel's program accounting would cost every
  // program run two clock reads in the ratio runs too: only kernelTime() turns it on
  if (fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() !== '0') {
    execFileSync('sysctl', ['-qw', 'kernel.bpf_stats_enabled=0']);
    console.error('kernel.bpf_stats_enabled was on: turned off for the ratio runs');
  }
  const hosts = createHostPair(9);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-bench-'));
  fs.chmodSync(dir, 0o755);
  const daemons: ChildProcess[] = [];
  try {
    // the test hosts hold many sockets: raise what a namespace allows
    for (const ns of [hosts.client, hosts.server]) {
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1', 'net.core.somaxconn=4096', 'net.ipv4.tcp_max_syn_backlog=4096']);
    }
    makeCertificate(dir);
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000; server { listen ${hosts.serverV4}:80; listen ${hosts.serverV4}:443 ssl;
  ssl_certificate ${dir}/cert.pem; ssl_certificate_key ${dir}/key.pem; location / { return 200 "ok\\n"; } } }
`,
    );
    daemons.push(spawnGroup('ip', ['netns', 'exec', hosts.server, 'nginx', '-c', `${dir}/nginx.conf`], { stdio: 'ignore' }));
    daemons.push(spawnGroup('ip', ['netns', 'exec', hosts.server, 'iperf3', '-s', '-B', hosts.serverV4, '-p', '5201'], { stdio: 'ignore' }));
    daemons.push(
      spawnGroup('ip', ['netns', 'exec', hosts.server, 'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces',
        `--listen-address=${hosts.serverV4}`, '--pid-file=', '--user=root', `--host-record=www.example.test,${hosts.serverV4},${hosts.serverV6}`,
        '--address=/nx.example.test/', '--log-facility=/dev/null', '--dns-forward-max=1000'], { stdio: 'ignore' }),
    );
    await new Promise((r) => setTimeout(r, 1000));

    const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, Node ${process.version}`;
    if (ONLY === 'soak') {
      workloads(hosts, dir); // writes the DNS query file
      const report = `# Soak\n\n${new Date().toISOString()} on ${machine}.\n\n${await soak(hosts, dir, SOAK_MINUTES, path.join(dir, 'queries'), peer)}`;
      console.log(report);
      if (SOAK_MINUTES >= 30) fs.writeFileSync(path.join(__dirname, '..', '..', 'bench', 'SOAK.md'), report);
      return;
    }
    const header = ['workload', 'baseline', 'with collector', 'ratio (median)', 'collector CPU / ratio beside a busy loop of that CPU',
      'collector CPU s / 1M events', 'kernel ns / event: total (by object)', 'peak RSS / BPF maps MB', 'reported / made', 'losses'];
    const rows: string[][] = [];
    for (const w of workloads(hosts, dir).filter((w) => w.name.includes(ONLY))) {
      const refused = await refusal(w.args ?? []);
      rows.push(refused ? [w.name, '-', '-', '-', '-', '-', '-', '-', '-', `not on this kernel: ${refused}`] : await measure(w, dir));
      console.error(`done: ${w.name}`);
    }
    // the floor of the rows the collector's hooks see most often
    for (const w of workloads(hosts, dir).filter((w) => FLOOR && FLOORED.includes(w.name) && `${w.name} floor`.includes(ONLY))) {
      rows.push(await measureFloor(w));
      console.error(`done: ${w.name} floor`);
    }
    if (IDLE > 0 && 'idle connections'.includes(ONLY)) rows.push(await idle(hosts, dir));

    const table = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
    // in a process of its own, where it can measure its heap (--expose-gc)
    const k8sOut = !ONLY || 'kubernetes'.includes(ONLY) ? (await spawnOut(process.execPath, ['--expose-gc', path.join(__dirname, 'k8s-api.js')])).out : '';
    const k8s = k8sOut ? `\n## Kubernetes API load\n\n${k8sOut}` : '';
    const report = `# Benchmark results\n\n${new Date().toISOString()} on ${machine}; ${ROUNDS} rounds of ${SECONDS} s per workload.\n\n${table}\n${k8s}`;
    console.log(report);
    // a partial run does not replace the full table: it is kept beside it
    const partial = ONLY || DNS_QPS.length ? `\nA partial run: ONLY=${JSON.stringify(ONLY)}${DNS_QPS.length ? ` DNS_QPS=${DNS_QPS[1]}` : ''}.\n` : '';
    fs.writeFileSync(path.join(__dirname, '..', '..', 'bench', partial ? 'RESULTS-partial.md' : 'RESULTS.md'), report + partial);
  } finally {
    for (const d of daemons) killGroup(d);
    hosts.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
