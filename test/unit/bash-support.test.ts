import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ProcessUsers, UserNames } from '../../src/enrich/users';
import { bashPoint } from '../../src/plugins/bash/plugin';
import { findBashBinaries } from '../../src/plugins/bash/binaries';
import { BashDiscovery } from '../../src/plugins/bash/discovery';
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

test("a process's user from its own root's passwd, its uid mapped back into its user namespace; remembered once it is gone", () => {
  // a stand-in /proc: <pid>/root links to a root, <pid>/uid_map
  const proc = path.join(dir, 'proc');
  const hostRoot = path.join(dir, 'host-root');
  const ctrRoot = path.join(dir, 'ctr-root');
  for (const [root, passwd] of [
    [hostRoot, 'root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n'],
    [ctrRoot, 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n'],
  ]) {
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc/passwd'), passwd);
  }
  const proc1 = (pid: number, root: string, uidMap: string) => {
    fs.mkdirSync(path.join(proc, String(pid)), { recursive: true });
    fs.symlinkSync(root, path.join(proc, String(pid), 'root'));
    fs.writeFileSync(path.join(proc, String(pid), 'uid_map'), uidMap);
  };
  const identity = '         0          0 4294967295\n';
  proc1(10, hostRoot, identity);
  proc1(20, ctrRoot, identity); // a container without a user namespace
  proc1(30, ctrRoot, '         0     100000      65536\n'); // rootless: 0-65535 inside are 100000-165535 outside
  const users = new ProcessUsers(proc, path.join(hostRoot, 'etc/passwd'));
  assert.equal(users.nameOf(10, 1000), 'alice');
  assert.equal(users.nameOf(20, 1000), 'app', "the container's passwd, not the host's");
  assert.equal(users.nameOf(20, 0), 'root');
  assert.equal(users.nameOf(30, 101000), 'app', 'uid 101000 outside is 1000 inside');
  assert.equal(users.nameOf(30, 100000), 'root');
  assert.equal(users.nameOf(30, 1000), '1000', 'not mapped into its namespace: the number');
  users.remember(20);
  fs.rmSync(path.join(proc, '20'), { recursive: true }); // exited after its last line was typed
  assert.equal(users.nameOf(20, 1000), 'app');
  assert.equal(users.nameOf(99, 1000), 'alice', "never seen and gone: the host's passwd");
});

test('bash discovery: each file probed once while processes use it; a non-bash, a bash not yet loaded, an exec into bash', () => {
  const proc = path.join(dir, 'disc-proc');
  const bashA = path.join(dir, 'imgA', 'bash'); // two images' bash: files of their own
  const bashB = path.join(dir, 'imgB', 'bash');
  const other = path.join(dir, 'python3');
  for (const f of [bashA, bashB]) {
    fs.mkdirSync(path.dirname(f));
    fs.copyFileSync(fs.realpathSync('/bin/bash'), f);
  }
  fs.writeFileSync(other, 'not elf');
  const setProcess = (pid: number, exe: string | undefined, mapped = true) => {
    const d = path.join(proc, String(pid));
    fs.rmSync(d, { recursive: true, force: true });
    fs.mkdirSync(path.join(d, 'map_files'), { recursive: true });
    if (!exe) return; // a kernel thread
    fs.symlinkSync(exe, path.join(d, 'exe'));
    fs.writeFileSync(path.join(d, 'maps'), mapped ? `5600-5700 r-xp 00000000 fe:00 42 ${exe}\n7f00-7f10 rw-p 00000000 00:00 0 \n` : '');
    if (mapped) fs.symlinkSync(exe, path.join(d, 'map_files', '5600-5700'));
  };
  const gone = (pid: number) => fs.rmSync(path.join(proc, String(pid)), { recursive: true, force: true });
  const events: string[] = [];
  const mine = (p: string) => p.startsWith(dir);
  const d = new BashDiscovery(
    {
      attach: (t) => (mine(t.label) && events.push(`+${path.basename(path.dirname(t.label.split(' ')[0]))}`), true),
      detach: (t) => void (mine(t.label) && events.push(`-${path.basename(path.dirname(t.label.split(' ')[0]))}`)),
    },
    { procRoot: proc, youngMs: 3000, fullScanMs: 30_000 },
  );
  setProcess(1, undefined);
  setProcess(2, other);
  setProcess(3, bashA);
  setProcess(4, bashA);
  setProcess(5, bashB, false); // just exec'd: nothing mapped yet
  d.scan(0);
  assert.deepEqual(events, ['+imgA'], 'one probe for two processes of one file');
  setProcess(5, bashB); // its loader has run
  d.scan(1000);
  assert.deepEqual(events, ['+imgA', '+imgB']);
  gone(3);
  d.scan(2000);
  assert.equal(events.length, 2, 'process 4 still uses it');
  gone(4);
  gone(5);
  d.scan(4000);
  assert.deepEqual(events.slice(2).sort(), ['-imgA', '-imgB'], 'unprobed with their last user');
  // process 2, old by now, execs into bash: found at the next full look
  setProcess(2, bashB);
  d.scan(10_000);
  assert.equal(events.length, 4, 'not looked at between full looks');
  d.scan(31_000);
  assert.deepEqual(events.slice(4), ['+imgB']);
  assert.ok(d.isBash(2) && !d.isBash(1) && !d.isBash(77));
  assert.deepEqual(d.counts.new_processes, 5);
  d.clear();
  assert.deepEqual(events.slice(5), ['-imgB']);
});
