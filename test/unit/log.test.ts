// The log never stops the collector: lines that cannot be written are lost
// and counted. Each case runs in a process of its own, whose stderr it reads.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';

const logModule = path.join(__dirname, '..', '..', 'src', 'log.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-log-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) /;

/** Runs `body` with the log module's exports in scope; its stdout is the JSON it prints last. */
function script(body: string): string {
  return `const { configureLog, log, logStats, reopenLog } = require(${JSON.stringify(logModule)});\nconst fs = require('node:fs');\n${body}`;
}

test('a full disk: lines are counted as lost, stderr is told once per streak, the next line written says how many', () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'full-'));
  const link = path.join(dir, 'log');
  const file = path.join(dir, 'real');
  fs.symlinkSync('/dev/full', link); // every write: ENOSPC
  const res = spawnSync(
    process.execPath,
    [
      '-e',
      script(`
        const point = (to) => { fs.unlinkSync(${JSON.stringify(link)}); fs.symlinkSync(to, ${JSON.stringify(link)}); reopenLog(); };
        configureLog('info', ${JSON.stringify(link)});
        log.info('one'); log.warn('two'); log.debug('below the level: not written, not lost'); log.error('three');
        point(${JSON.stringify(file)});
        log.info('four'); log.info('five');
        point('/dev/full');
        log.info('six');
        process.stdout.write(JSON.stringify(logStats()));
      `),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(res.status, 0, res.stderr);
  assert.deepEqual(JSON.parse(res.stdout), { written: 3, failed: 4 });
  const told = `datakit-ebpf: cannot write to the log ${link}: ENOSPC; lines are lost (and counted) until writing works again\n`;
  assert.equal(res.stderr, told + told, 'once for each of the two streaks');
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0], /Z WARN log: 3 lines could not be written \(ENOSPC\)$/);
  assert.match(lines[1], /Z INFO four$/);
  assert.match(lines[2], /Z INFO five$/);
  assert.equal(lines[3], '');
});

test('stderr a full non-blocking pipe (EAGAIN): whole lines or none, all counted', async () => {
  const total = 20_000;
  const child = spawn(
    process.execPath,
    [
      '-e',
      script(`
        process.stderr; // Node opens a stderr pipe non-blocking
        configureLog('info');
        for (let i = 0; i < ${total}; i++) log.info('line ' + i + ' ' + 'x'.repeat(80));
        process.stdout.write(JSON.stringify(logStats()));
      `),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // stderr is not read until the child is done, so the pipe fills: a 'readable' listener
  // that reads nothing stops the stream at its high-water mark, and keeps Node from
  // discarding what it holds when the child exits
  child.stderr.on('readable', () => {});
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  let err = '';
  for await (const chunk of child.stderr.setEncoding('utf8')) err += chunk;
  assert.equal(code, 0);
  const stats = JSON.parse(out) as { written: number; failed: number };
  assert.ok(stats.failed > 0, 'the pipe was full');

  const lines = err.split('\n');
  assert.equal(lines.pop(), '', 'ends with a whole line');
  assert.equal(lines.length, stats.written);
  const numbers = lines.flatMap((l) => /^\S+ INFO line (\d+) x{80}$/.exec(l)?.[1] ?? []).map(Number);
  const notices = lines.flatMap((l) => /^\S+ WARN log: (\d+) lines could not be written \(EAGAIN\)$/.exec(l)?.[1] ?? []).map(Number);
  assert.equal(numbers.length + notices.length, lines.length, 'nothing but whole lines');
  assert.equal(numbers.length + stats.failed, total);
  assert.ok(numbers.every((n, i) => i === 0 || n > numbers[i - 1]), 'in order');
  // each notice counts the lines missing before the line written with it
  const lostBeforeLast = numbers[numbers.length - 1] + 1 - numbers.length;
  assert.equal(notices.reduce((a, b) => a + b, 0), lostBeforeLast);
});

test('a closed stderr (EBADF) and a pipe nobody reads any more (EPIPE): counted, and the process carries on', () => {
  const fifo = path.join(tmp, 'fifo');
  spawnSync('mkfifo', [fifo]);
  const cases = {
    EBADF: `fs.closeSync(2); configureLog('info');`,
    // the log is the write end of a pipe whose read end is closed before the first line
    EPIPE: `const reader = fs.openSync(${JSON.stringify(fifo)}, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
            configureLog('info', ${JSON.stringify(fifo)});
            fs.closeSync(reader);`,
  };
  for (const [code, setUp] of Object.entries(cases)) {
    const res = spawnSync(
      process.execPath,
      ['-e', script(`${setUp}\nfor (let i = 0; i < 3; i++) log.error('e' + i);\nprocess.stdout.write(JSON.stringify(logStats()));`)],
      { encoding: 'utf8' },
    );
    assert.equal(res.status, 0, `${code}: ${res.stderr}`);
    assert.deepEqual(JSON.parse(res.stdout), { written: 0, failed: 3 }, code);
    // a log file's failure is told on stderr (here, that of the pipe); stderr's own cannot be
    const told = code === 'EPIPE' ? `datakit-ebpf: cannot write to the log ${fifo}: EPIPE; lines are lost (and counted) until writing works again\n` : '';
    assert.equal(res.stderr, told, code);
  }
});

test('reopen after a rename: lines before in the old file, lines after in a new one', () => {
  const file = path.join(tmp, 'rotated');
  const res = spawnSync(
    process.execPath,
    [
      '-e',
      script(`
        configureLog('info', ${JSON.stringify(file)});
        log.info('before');
        fs.renameSync(${JSON.stringify(file)}, ${JSON.stringify(file + '.1')});
        log.info('still the open file');
        process.stdout.write(JSON.stringify([reopenLog()]));
        log.info('after');
      `),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(res.status, 0, res.stderr);
  assert.deepEqual(JSON.parse(res.stdout), [true]);
  const old = fs.readFileSync(`${file}.1`, 'utf8').trim().split('\n');
  assert.equal(old.length, 2);
  assert.ok(old.every((l) => LINE.test(l)));
  assert.match(old[1], /INFO still the open file$/);
  assert.match(fs.readFileSync(file, 'utf8'), /^\S+ INFO after\n$/);
});
