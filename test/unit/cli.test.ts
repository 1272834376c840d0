// The executable's contract for bad input: one line on stderr, status 2.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { binPath } from '../helpers/collector';

function cli(...args: string[]) {
  return spawnSync(process.execPath, [binPath, ...args], { encoding: 'utf8', timeout: 10000 });
}

test('--help lists every flag and exits 0', () => {
  const r = cli('--help');
  assert.equal(r.status, 0);
  for (const flag of [
    '--datakit-apiserver', '--hostname', '--log', '--log-level', '--service', '--enabled',
    '--interval', '--tags', '--config', '--include-loopback',
  ]) {
    assert.ok(r.stdout.includes(flag), `help mentions ${flag}`);
  }
});

for (const [args, pattern] of [
  [['--interval', '5x'], /--interval/],
  [['--no-such-flag'], /no-such-flag/],
  [['--enabled', 'ebpf-foo'], /ebpf-foo/],
  [['--log-level', 'loud'], /--log-level/],
  [['--config', '/nonexistent/ebpf.conf'], /\/nonexistent\/ebpf\.conf/],
  [['--tags', 'novalue'], /--tags/],
  [['stray'], /stray/],
  [['--buffer-max-size', '2 lots'], /^datakit-ebpf: --buffer-max-size: expected a size such as 512MiB or 2GiB .*, got "2 lots"$/],
] as [string[], RegExp][]) {
  test(`bad input ${args.join(' ')}: one line, exit 2`, () => {
    const r = cli(...args);
    assert.equal(r.status, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^datakit-ebpf: /);
    assert.match(lines[0], pattern);
    assert.equal(r.stdout, '');
  });
}
