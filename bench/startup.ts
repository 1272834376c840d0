// Start-up time of the packaged collector (ONLY=startup npm run bench): the
// tarball of build/package (`npm run package`) unpacked in a scratch directory,
// then RUNS (10) runs each of `datakit-ebpf --version` and of a full start
// (every plugin loaded and attached: until its log says "datakit-ebpf started",
// then SIGTERM), and the same start from this checkout (the machine's Node.js)
// for comparison. Prints the medians (min-max) and the packages' sizes.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { binPath, repoRoot } from '../test/helpers/collector';

const RUNS = Number(process.env.RUNS ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs: number[]) => `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** Milliseconds from spawn to "datakit-ebpf started" in the log, then a clean SIGTERM. */
function timeToReady(bin: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(bin, ['--interval', '60s', '--enabled', 'ebpf-net,ebpf-bash'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let ready = 0;
    p.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (!ready && err.includes('datakit-ebpf started')) {
        ready = Number(process.hrtime.bigint() - t0) / 1e6;
        p.kill('SIGTERM');
      }
    });
    p.on('exit', (code) => (ready && code === 0 ? resolve(ready) : reject(new Error(`${bin}: exit ${code}\n${err}`))));
  });
}

function timeVersion(bin: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${bin} --version: exit ${r.status}\n${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function startup(): Promise<string> {
  const version = (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  const out = path.join(repoRoot, 'build', 'package');
  const tarball = path.join(out, `datakit-ebpf-${version}-linux-x64.tar.gz`);
  const deb = path.join(out, `datakit-ebpf_${version}_amd64.deb`);
  if (!fs.existsSync(tarball)) throw new Error(`${tarball} is missing: run "npm run package" first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-startup-'));
  try {
    spawnSync('tar', ['-xzf', tarball, '-C', dir], { stdio: 'inherit' });
    const pkgBin = path.join(dir, 'datakit-ebpf', 'bin', 'datakit-ebpf');
    const node = spawnSync(pkgBin, ['--version'], { encoding: 'utf8' }).stdout.match(/^node: (\S+)$/m)?.[1];
    const versionRuns: number[] = [];
    const pkgReady: number[] = [];
    const checkoutReady: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      versionRuns.push(timeVersion(pkgBin));
      pkgReady.push(await timeToReady(pkgBin));
      checkoutReady.push(await timeToReady(binPath));
    }
    const sizes = [tarball, deb].filter((f) => fs.existsSync(f)).map((f) => `| \`${path.basename(f)}\` | ${mb(fs.statSync(f).size)} |`);
    return [
      `${RUNS} runs each, median (min-max), ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)} at the end:`,
      '',
      '| what | time |',
      '|---|---|',
      `| package (Node.js ${node}): \`datakit-ebpf --version\` | ${fmt(versionRuns)} |`,
      `| package (Node.js ${node}): start to ready, netflow, dnsflow, httpflow, bash attached | ${fmt(pkgReady)} |`,
      `| checkout (Node.js ${process.version}): start to ready, the same | ${fmt(checkoutReady)} |`,
      '',
      '| package | size |',
      '|---|---|',
      ...sizes,
    ].join('\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
