import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { UserNames } from '../../src/enrich/users';
import { bashPoint } from '../../src/plugins/bash/plugin';
import { findBashBinaries } from '../../src/plugins/bash/binaries';
import { elfDefines } from '../../src/plugins/bash/elf';
import { rfc3339 } from '../../src/timefmt';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-bash-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('uid to login name, re-read when /etc/passwd changes; unknown uid is the number', () => {
  const passwd = path.join(dir, 'passwd');
  fs.writeFileSync(passwd, 'root:x:0:0:Super User,,,:/root:/bin/bash\n# comment\nalice:x:1000:1000:Alice Liddell:/home/alice:/bin/bash\nbroken line\n');
  const users = new UserNames(passwd, 0);
  assert.equal(users.nameOf(0), 'root');
  assert.equal(users.nameOf(1000), 'alice', 'the login name, not the full name');
  assert.equal(users.nameOf(1001), '1001');
  fs.writeFileSync(passwd, 'root:x:0:0::/root:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/sh\n');
  fs.utimesSync(passwd, new Date(), new Date(Date.now() + 5000));
  assert.equal(users.nameOf(1001), 'bob');
  assert.equal(users.nameOf(1000), '1000');
});

test("Go's RFC 3339 format", () => {
  const s = rfc3339(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  assert.match(s, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
  if (new Date().getTimezoneOffset() === 0) assert.equal(s, '2026-01-02T03:04:05Z');
});

test('bash point: fields and message as DataKit writes them', () => {
  const wall = BigInt(Date.UTC(2026, 0, 2, 3, 4, 5)) * 1_000_000n + 123n;
  const p = bashPoint({ monotonicNs: 0n, pid: 42, uid: 0, line: 'ls -l "a b"', truncated: false }, 'root', wall);
  assert.equal(p.measurement, 'bash');
  assert.deepEqual(p.tags, { source: 'bash' });
  assert.equal(p.time, wall);
  assert.deepEqual({ ...p.fields, message: undefined }, { cmd: 'ls -l "a b"', pid: '42', user: 'root', message: undefined });
  assert.equal(p.fields.message, `${rfc3339(Date.UTC(2026, 0, 2, 3, 4, 5))} pid:\`42\` user:\`root\` cmd:\`ls -l "a b"\``);
  const t = bashPoint({ monotonicNs: 0n, pid: 1, uid: 0, line: 'x', truncated: true }, 'root', wall);
  assert.equal(t.fields.truncated, true);
});

test('ELF symbol lookup and bash discovery', () => {
  const bins = findBashBinaries();
  assert.ok(bins.length >= 1, 'this machine has bash');
  assert.equal(new Set(bins.map((b) => fs.realpathSync(b))).size, bins.length, 'one entry per distinct file');
  assert.equal(elfDefines(bins[0], 'readline'), true);
  assert.equal(elfDefines(bins[0], 'no_such_symbol_here'), false);
  const notElf = path.join(dir, 'not-elf');
  fs.writeFileSync(notElf, 'hello readline\0');
  assert.equal(elfDefines(notElf, 'readline'), false);
  assert.equal(elfDefines(path.join(dir, 'missing'), 'readline'), false);
});
