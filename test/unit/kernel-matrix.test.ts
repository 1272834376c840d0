// The kernel matrix's own logic, without booting anything: which package is
// the kernel, what the VM runs, how results are read and judged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failingTests, parseGuestOutput, summaryCounts } from '../kernels/guest';
import { crashExcerpt, judge, MATRIX, PER_HOOKS_FILES, plan, RERUNS, table } from '../kernels/matrix';
import { bootScript, compareVersions, pickKernelPackage } from '../kernels/vm';

test('the newest stock amd64 image of the series, not rt, cloud, signed or another series', () => {
  const search = [
    'linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs',
    'linux-image-6.1.0-10-amd64-unsigned - Linux 6.1 for 64-bit PCs',
    'linux-image-6.1.0-10-amd64 - Linux 6.1 for 64-bit PCs (signed)',
    'linux-image-6.1.0-11-rt-amd64-unsigned - Linux 6.1 for 64-bit PCs, PREEMPT_RT',
    'linux-image-6.1.0-11-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud',
    'linux-image-6.10.0-1-amd64-unsigned - not this series',
    'linux-image-6.12.118+deb13-amd64-unsigned - Linux 6.12',
  ].join('\n');
  assert.equal(pickKernelPackage(search, '6.1'), 'linux-image-6.1.0-10-amd64-unsigned');
  assert.equal(pickKernelPackage(search, '6.12'), 'linux-image-6.12.118+deb13-amd64-unsigned');
  assert.equal(pickKernelPackage(search, '5.10'), undefined);
  assert.ok(compareVersions('5.10.0-9', '5.10.0-10') < 0);
  assert.ok(compareVersions('6.12.9', '6.12.118') < 0);
  assert.equal(compareVersions('a-1', 'a-1'), 0);
});

test('the boot script mounts what a host has and passes the environment quoted', () => {
  const kernel = { suite: 'bullseye' as const, release: '5.10.0-46-amd64', vmlinuz: '/k/vmlinuz', modules: '/k/modules', initrd: '/k/initrd.gz' };
  const script = bootScript(kernel, ['node', "it's.js", 'a b'], '/work dir', { TEST_HOOKS: 'kprobe', ODD: `x'y` });
  for (const fs of ['bpf', 'tracefs', 'debugfs', 'cgroup2', 'devpts']) assert.match(script, new RegExp(`-t ${fs} `));
  assert.match(script, /mount --bind '\/k\/modules' \/lib\/modules\/5\.10\.0-46-amd64/);
  assert.match(script, /^cd '\/work dir'$/m);
  assert.match(script, /^export ODD='x'\\''y'$/m);
  assert.match(script, /^'node' 'it'\\''s\.js' 'a b' <\/dev\/null >\/dev\/ttyS1 2>&1$/m);
  assert.match(script, /echo "status \$\?" > \/dev\/ttyS2/);
});

const fileResult = (file: string, over: object = {}) => ({ file, status: 0, ms: 1, tests: 3, pass: 3, fail: 0, skipped: 0, todo: 0, cancelled: 0, ...over });
const guestOutput = (release: string, results: object[]) =>
  [`@@dkeb-matrix kernel ${release}`, 'noise', ...results.map((r) => `@@dkeb-matrix result ${JSON.stringify(r)}`), ''].join('\n');

test('the guest report and the test runner summary are read back', () => {
  assert.deepEqual(summaryCounts('✔ x\nℹ tests 4\nℹ pass 3\nℹ fail 1\nℹ skipped 0\n'), { tests: 4, pass: 3, fail: 1, skipped: 0, todo: 0, cancelled: 0 });
  const r = parseGuestOutput(guestOutput('6.1.0-57-amd64', [fileResult('a.test.js')]));
  assert.equal(r.release, '6.1.0-57-amd64');
  assert.deepEqual(r.results, [fileResult('a.test.js')]);
  assert.deepEqual(r.failures, []);
});

test("a failing file's names and messages come back, without stack frames", () => {
  const spec = [
    '✔ fine (1ms)',
    '✖ bad one (2ms)',
    'ℹ fail 1',
    '',
    '✖ failing tests:',
    '',
    'test at a.test.js:2:48',
    '✖ bad one (2ms)',
    '  AssertionError [ERR_ASSERTION]: one is not two',
    '      at TestContext.<anonymous> (/tmp/a.test.js:2:75)',
    '      at Test.run (node:internal/test_runner/test:1402:25)',
    '    expected: 2',
  ].join('\n');
  const text = failingTests(spec);
  assert.equal(text, ['✖ failing tests:', '', 'test at a.test.js:2:48', '✖ bad one (2ms)', '  AssertionError [ERR_ASSERTION]: one is not two', '    expected: 2'].join('\n'));
  assert.equal(failingTests(`✖ failing tests:\n${'x'.repeat(100)}`, 20), '✖ failing tests:\nxxx\n…');
  assert.equal(failingTests(`${'y'.repeat(100)}z`, 10), 'yyyyyyyyyz', 'no list: the tail');
  const out = `${guestOutput('6.1.0-57-amd64', [fileResult('a.test.js', { fail: 1, status: 1 })])}@@dkeb-matrix failure ${JSON.stringify({ file: 'a.test.js', text })}\n`;
  assert.deepEqual(parseGuestOutput(out).failures, [{ file: 'a.test.js', text }]);
});

test('the plan: every file with auto, the byte-dependent files again with the reruns\' sets', () => {
  const files = ['bash.test.js', 'hooks.test.js', 'netflow.test.js', 'httpflow.test.js'];
  const runs = plan(['bullseye', 'bookworm', 'trixie'], files);
  assert.deepEqual(
    runs.map((r) => `${r.suite} ${r.hooks} ${r.auto} ${r.files.join(',')}`),
    [
      'bullseye fentry true bash.test.js,hooks.test.js,netflow.test.js,httpflow.test.js',
      'bullseye kprobe false netflow.test.js,httpflow.test.js',
      'bookworm fentry true bash.test.js,hooks.test.js,netflow.test.js,httpflow.test.js',
      'trixie tracepoint true bash.test.js,hooks.test.js,netflow.test.js,httpflow.test.js',
      'trixie kprobe false netflow.test.js,httpflow.test.js',
    ],
  );
  // every set a kernel offers runs whole on at least two kernels
  for (const set of ['fentry', 'kprobe'] as const) {
    const kernels = runs.filter((r) => r.hooks === set).map((r) => r.suite);
    assert.ok(kernels.length >= 2, `${set}: ${kernels}`);
  }
  for (const suite of ['bullseye', 'bookworm', 'trixie'] as const) assert.ok(RERUNS[suite].every((h) => MATRIX[suite].includes(h) && h !== MATRIX[suite][0]));
  assert.ok(PER_HOOKS_FILES.every((f) => f.endsWith('.test.js')));
  assert.deepEqual(MATRIX.trixie, ['tracepoint', 'fentry', 'kprobe']);
});

test('a run fails on a failed, skipped or missing file, or on the wrong kernel', () => {
  const run = { suite: 'bookworm' as const, hooks: 'fentry' as const, auto: true, files: ['a.test.js', 'b.test.js'] };
  const ok = [fileResult('a.test.js'), fileResult('b.test.js')];
  assert.deepEqual(judge(run, 0, guestOutput('6.1.0-57-amd64', ok)).problems, []);
  assert.deepEqual(judge(run, 0, guestOutput('6.12.1-amd64', ok)).problems, ['ran on Linux 6.12.1-amd64, not 6.1']);
  assert.deepEqual(judge(run, 1, guestOutput('6.1.0-57-amd64', [fileResult('a.test.js', { fail: 1, status: 1 }), fileResult('b.test.js')])).problems, [
    'a.test.js: failed (1 failed, 0 cancelled, exit 1)',
  ]);
  assert.deepEqual(judge(run, 0, guestOutput('6.1.0-57-amd64', [fileResult('a.test.js', { skipped: 2 })])).problems, [
    'a.test.js: 3 tests, 2 skipped, 0 todo',
    'b.test.js: no result',
  ]);
  assert.deepEqual(judge(run, undefined, '').problems, ['the VM ended without the command status', 'ran on Linux ?, not 6.1', 'a.test.js: no result', 'b.test.js: no result']);
});

test('the table names, per kernel and plugin, the sets its tests passed with', () => {
  const auto = { suite: 'trixie' as const, hooks: 'tracepoint' as const, auto: true, files: [] };
  const kprobe = { suite: 'trixie' as const, hooks: 'kprobe' as const, auto: false, files: [] };
  const fentry = { suite: 'trixie' as const, hooks: 'fentry' as const, auto: false, files: [] };
  const md = table([
    { run: auto, release: '6.12.118+deb13-amd64', failures: [], problems: [], ms: 1, results: ['hooks.test.js', 'netflow.test.js', 'dnsflow.test.js', 'bash.test.js'].map((f) => fileResult(f)) },
    { run: fentry, failures: [], problems: [], ms: 1, results: [fileResult('netflow.test.js')] },
    { run: kprobe, failures: [], problems: ['x'], ms: 1, results: [fileResult('netflow.test.js', { fail: 1, status: 1 })] },
  ]);
  const row = md.split('\n').find((l) => l.startsWith('| 6.12'))!;
  // https: no file of its own ran here
  assert.equal(row, '| 6.12.118+deb13-amd64 (Debian trixie) | ✖ kprobe | ✔ tracepoint, fentry, kprobe | – | ✔ tracepoint, fentry, kprobe | ✔ tracepoint, fentry, kprobe | – | – |');
});

test("a dead VM's console: from its first oops line, then its end", () => {
  const boot = Array.from({ length: 200 }, (_, i) => `[ ${i}.000] booting line ${i}`).join('\n');
  const oops = '[ 170.1] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n[ 170.1] RIP: 0010:ip_finish_output+0x1b/0xf0';
  const trace = Array.from({ length: 300 }, (_, i) => `[ 170.2] trace line ${i}`).join('\n');
  const text = `${boot}\n${oops}\n${trace}\n[ 170.3] Kernel panic - not syncing: Fatal exception in interrupt\n`;
  const x = crashExcerpt(text, 3000);
  assert.ok(x.startsWith('[ 170.1] Oops: invalid opcode'), x.slice(0, 80));
  assert.ok(x.includes('RIP: 0010:ip_finish_output'));
  assert.ok(x.endsWith('Fatal exception in interrupt\n'), x.slice(-80));
  assert.ok(!x.includes('booting line'));
  // no oops line, or one already within the end: the end alone
  assert.equal(crashExcerpt(boot, 3000), boot.slice(-3000));
  assert.equal(crashExcerpt(`${boot}\n${oops}`, 3000), `${boot}\n${oops}`.slice(-3000));
});
