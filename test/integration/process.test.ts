// The collector as a process: log rotation on SIGHUP, a second SIGTERM while
// shutdown is stuck, and a log on a full file system.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { sleep, startCollector, waitFor } from '../helpers/collector';
import { startInteractiveBash } from '../helpers/interactive-bash';
import { loadedProgramIds, programsGone, skip } from '../helpers/privileged';
import { freePort, sample } from '../helpers/scrape';

const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) /;
/** One report of ebpf-bash ends with this line. */
const REPORT = /INFO memory: rss=/;

const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');



describe('collector process', { skip }, () => {
  test('SIGHUP with --log: after a rename, lines go to a new file and the collector carries on', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-rotate-'));
    const log = path.join(dir, 'log');
    const collector = await startCollector(['--enabled', 'ebpf-bash', '--interval', '1s', '--log', log]);
    try {
      fs.renameSync(log, `${log}.1`);
      collector.proc.kill('SIGHUP');
      await waitFor('a report in the new file', () => REPORT.test(read(log)), 5000);
      assert.equal(collector.proc.exitCode, null, 'alive');
      assert.match(read(log).split('\n')[0], /INFO SIGHUP: log file reopened$/);
      assert.match(read(`${log}.1`), /INFO datakit-ebpf started/);

      assert.equal((await collector.stop('SIGTERM')).code, 0);
      const rotated = read(`${log}.1`);
      const fresh = read(log);
      assert.doesNotMatch(rotated, /SIGHUP|SIGTERM/);
      assert.match(fresh, /INFO SIGTERM: flushing and detaching\n/);
      assert.ok(`${rotated}${fresh}`.split('\n').every((l) => l === '' || LINE.test(l)), 'whole lines only');
      assert.equal(collector.stderr(), '', 'nothing on stderr');
    } finally {
      await collector.stop('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SIGHUP without --log is ignored', async () => {
    const collector = await startCollector(['--enabled', 'ebpf-bash', '--interval', '1s']);
    try {
      collector.proc.kill('SIGHUP');
      const after = () => collector.stderr().split('INFO SIGHUP: no --log file to reopen: ignored\n')[1] ?? '';
      await waitFor('a report after the SIGHUP', () => REPORT.test(after()), 5000);
      assert.equal(collector.proc.exitCode, null, 'alive');
      assert.equal((await collector.stop('SIGTERM')).code, 0);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('a second SIGTERM exits at once while the first shutdown waits on a DataKit that never answers', async () => {
    // accepts and reads requests, never answers: a post waits for its 10 s timeout
    const received: string[] = [];
    const sockets: net.Socket[] = [];
    const standIn = net.createServer((s) => {
      sockets.push(s);
      s.setEncoding('utf8').on('data', (d: string) => received.push(d));
    });
    await new Promise<void>((r) => standIn.listen(0, '127.0.0.1', r));
    const { port } = standIn.address() as net.AddressInfo;
    const before = loadedProgramIds();
    const collector = await startCollector(['--enabled', 'ebpf-bash', '--interval', '60s', '--datakit-apiserver', `127.0.0.1:${port}`]);
    const ours = [...loadedProgramIds()].filter((id) => !before.has(id));
    const sh = await startInteractiveBash();
    try {
      await sh.type('echo posted-but-never-answered');
      await waitFor('the post of the bash point', () => {
        const all = received.join('');
        return all.startsWith('POST /v1/write/logging?input=ebpf-bash ') && all.includes('posted-but-never-answered');
      }, 5000);

      collector.proc.kill('SIGTERM');
      await sleep(1000);
      assert.equal(collector.proc.exitCode, null, 'the first SIGTERM waits for the post in flight');
      assert.match(collector.stderr(), /INFO SIGTERM: flushing and detaching\n/);

      const t0 = Date.now();
      const { code } = await collector.stop('SIGTERM', 5000);
      const took = Date.now() - t0;
      assert.equal(code, 143, collector.stderr());
      assert.ok(took < 1000, `exited ${took} ms after the second SIGTERM`);
      assert.match(collector.stderr(), /WARN SIGTERM again: exiting at once \(status 143\)\n$/);
      assert.ok(ours.length >= 1);
      assert.deepEqual(await programsGone(ours), [], 'its programs went with the process');
    } finally {
      await sh.exit();
      await collector.stop('SIGKILL');
      for (const s of sockets) s.destroy();
      await new Promise((r) => standIn.close(r));
    }
  });

  test('a log on a full file system: the collector reports on, lost lines are counted in /metrics', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-fullfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'dkeb-test', dir]);
    let collector: Awaited<ReturnType<typeof startCollector>> | undefined;
    let sh: Awaited<ReturnType<typeof startInteractiveBash>> | undefined;
    try {
      // 16 pages: 15 of filler, and the log's last page with 20 bytes free
      const log = path.join(dir, 'log');
      const filler = path.join(dir, 'filler');
      const ROOM = 20;
      const before = `${'o'.repeat(4096 - ROOM - 1)}\n`;
      fs.writeFileSync(filler, Buffer.alloc(15 * 4096));
      fs.writeFileSync(log, before);
      assert.equal(fs.statfsSync(dir).bavail, 0, 'the file system is full');

      const port = await freePort();
      const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      // its log cannot say it started: it has once /metrics answers
      const ready = () => metrics().then(() => true, () => false);
      collector = await startCollector(['--enabled', 'ebpf-bash', '--interval', '1s', '--log', log, '--metrics-listen', `127.0.0.1:${port}`], {}, undefined, [], ready);

      sh = await startInteractiveBash();
      await sh.type('echo reported-while-the-log-is-full');
      await collector.waitForLine((l) => l.startsWith('bash,') && l.includes('echo reported-while-the-log-is-full'), 5000);

      const first = await metrics();
      const failed = sample(first, 'datakit_ebpf_log_lines_total{result="failed"}');
      assert.equal(sample(first, 'datakit_ebpf_log_lines_total{result="written"}'), 0);
      assert.ok(failed > 0);
      await sleep(1300); // a report: more lines lost
      assert.ok(sample(await metrics(), 'datakit_ebpf_log_lines_total{result="failed"}') > failed);
      assert.equal(
        collector.stderr(),
        `datakit-ebpf: cannot write to the log ${log}: ENOSPC; lines are lost (and counted) until writing works again\n`,
        'told once',
      );

      // room again: the next line written says how many were lost
      fs.unlinkSync(filler);
      const NOTICE = /^\S+ WARN log: (\d+) lines could not be written \(ENOSPC\)$/m;
      await waitFor('the count of lost lines in the log', () => NOTICE.test(read(log)), 5000);
      const lost = Number(NOTICE.exec(read(log))![1]);
      const recovered = await metrics();
      assert.equal(sample(recovered, 'datakit_ebpf_log_lines_total{result="failed"}'), lost);
      assert.ok(sample(recovered, 'datakit_ebpf_log_lines_total{result="written"}') >= 2);
      assert.equal((await collector.stop('SIGTERM')).code, 0);

      // the old content, the first 20 bytes of the line the disk ran out in, then whole lines
      const text = read(log);
      assert.ok(text.startsWith(before));
      const rest = text.slice(before.length).split('\n');
      assert.match(rest[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.$/, 'a line cut at the 20th byte');
      assert.match(rest[1], NOTICE);
      assert.equal(rest.pop(), '');
      assert.ok(rest.slice(1).every((l) => LINE.test(l)), 'whole lines after the cut one');
      assert.match(rest[rest.length - 1], /INFO memory: rss=/, 'the last report of the shutdown');
    } finally {
      await sh?.exit();
      await collector?.stop('SIGKILL');
      try {
        execFileSync('umount', [dir]);
      } catch {
        execFileSync('umount', ['-l', dir]);
      }
      fs.rmdirSync(dir);
    }
  });
});
