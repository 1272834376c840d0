// ebpf-bash against real interactive bash sessions on a pseudo-terminal.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, sleep, startCollector, until } from '../helpers/collector';
import { FakeDataKit, startFakeDataKit } from '../helpers/fake-datakit';
import { startInteractiveBash } from '../helpers/interactive-bash';
import { parseLine, ParsedPoint } from '../helpers/lineprotocol-parse';
import { skip } from '../helpers/privileged';

const CTRL_V = '\x16'; // readline's quoted-insert: the next key (a tab) is typed literally

function messageOf(p: ParsedPoint): RegExpMatchArray | null {
  return (p.fields.message as string).match(/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)) pid:`(\d+)` user:`([^`]*)` cmd:`([\s\S]*)`$/);
}

describe('ebpf-bash', { skip }, () => {
  let dk: FakeDataKit;
  // not the default buffer dir: nothing an earlier run left there may reach this stand-in
  const bufferDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-bash-'));
  before(async () => (dk = await startFakeDataKit()));
  after(async () => {
    await dk?.close();
    fs.rmSync(bufferDir, { recursive: true, force: true });
  });

  test('every typed line, exactly, with pid, user and the DataKit message', async () => {
    // a bash that was already running when the collector started
    const early = await startInteractiveBash();
    const collector = await startCollector(['--enabled', 'ebpf-bash', '--interval', '60s']);
    const t0 = Date.now();
    try {
      const sh = early;
      const long = `echo ${'x'.repeat(5000)}`;
      // This bash sat in a readline() call that began before the probe existed:
      // a return probe only sees calls that start after it is placed, so the
      // line ending that call is not seen. Every later line is.
      await sh.type('true');
      await sh.type('echo hello');
      await sh.type(`echo "quoted 's'" `); // trailing space kept
      await sh.type(`printf '%s\\n' a${CTRL_V}\tb é 中文 ☃`);
      await sh.type(''); // not reported
      await sh.type(long);
      await sh.exit();
      const noninteractive = spawnSync('bash', ['-c', 'echo not-interactive'], { encoding: 'utf8' });
      assert.equal(noninteractive.status, 0);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());

      const points = collector.points('bash').filter((p) => p.fields.pid === String(sh.bashPid) && p.fields.cmd !== 'true');
      assert.deepEqual(
        points.map((p) => p.fields.cmd),
        ['echo hello', `echo "quoted 's'" `, "printf '%s\\n' a\tb é 中文 ☃", long.slice(0, 4095), 'exit'],
      );
      for (const p of points) {
        assert.equal(p.tags.source, 'bash');
        assert.equal(p.fields.user, 'root');
        const m = messageOf(p);
        assert.ok(m, `message format: ${p.fields.message}`);
        assert.deepEqual([m[2], m[3], m[4]], [String(sh.bashPid), 'root', p.fields.cmd]);
        const ms = Number(p.time / 1_000_000n);
        assert.ok(ms >= t0 && ms <= Date.now(), 'timestamp: when the line was entered');
        assert.ok(Math.abs(Date.parse(m[1]) - ms) < 1000, 'message time matches the point time');
      }
      assert.equal(points[3].fields.truncated, true, 'the long line is marked truncated');
      assert.equal(points.filter((p) => p.fields.truncated !== undefined).length, 1);
      const ordered = points.map((p) => p.time);
      assert.deepEqual([...ordered].sort(), ordered);
      assert.ok(!collector.points('bash').some((p) => (p.fields.cmd as string).includes('not-interactive')), 'bash -c is not reported');
    } finally {
      await collector.stop('SIGKILL');
      killGroup(early.proc);
    }
  });

  test('another user, a bash started after the collector, posted to the logging endpoint', async () => {
    dk.requests.length = 0;
    const collector = await startCollector(['--enabled', 'ebpf-bash', '--datakit-apiserver', dk.address, '--buffer-dir', bufferDir, '--hostname', 'bash-host']);
    try {
      const sh = await startInteractiveBash(65534);
      await sh.type('id -u');
      await sh.exit();
      // event points are flushed within a second, not at the interval (60 s): waited for up to
      // 15 s, which an emulated machine may need, and still far from the interval's end
      const posted = () => {
        const posts = dk.requests.filter((r) => r.url.startsWith('/v1/write/'));
        return { posts, points: posts.flatMap((r) => r.body.split('\n').map(parseLine)).filter((p) => p.fields.pid === String(sh.bashPid)) };
      };
      await until(() => posted().points.length >= 2, 15_000);
      const { posts, points } = posted();
      assert.ok(posts.length >= 1, 'posted before the interval ended');
      assert.ok(posts.every((r) => r.method === 'POST' && r.url === '/v1/write/logging?input=ebpf-bash'));
      assert.deepEqual(points.map((p) => p.fields.cmd), ['id -u', 'exit']);
      assert.equal(points[0].fields.user, 'nobody');
      assert.equal(points[0].tags.host, 'bash-host');
      assert.match(points[0].fields.message as string, new RegExp(` pid:\`${sh.bashPid}\` user:\`nobody\` cmd:\`id -u\`$`));
    } finally {
      await collector.stop('SIGKILL');
    }
  });
});
