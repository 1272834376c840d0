// Which files httpflow's TLS probes go on (src/plugins/httpflow/tls/discovery.ts),
// against real processes: a Python that loads a copy of libssl (a file of its own,
// as in a container image) and a Go HTTPS server, each found by a /proc scan or
// by its exec, and let go of when it exits. No probe is placed: the sink records.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { findHostTlsLibraries, TlsDiscovery, TlsTarget } from '../../src/plugins/httpflow/tls/discovery';
import { inspectGoBinary } from '../../src/plugins/httpflow/tls/go';
import { buildGoFixture } from '../helpers/go-build';
import { makeCertificate } from '../helpers/tls';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hostLibssl = findHostTlsLibraries()[0];

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-tls-disc-'));
  fs.copyFileSync(hostLibssl.path, path.join(dir, path.basename(hostLibssl.path)));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function recorder() {
  const placed = new Map<string, TlsTarget>();
  const log: string[] = [];
  return {
    placed,
    log,
    sink: {
      attach: (t: TlsTarget) => {
        placed.set(t.key, t);
        log.push(`+${t.library}`);
        return true;
      },
      detach: (t: TlsTarget) => {
        placed.delete(t.key);
        log.push(`-${t.library}`);
      },
    },
  };
}

/** A process that has loaded libssl (the copy in `dir`, through LD_LIBRARY_PATH). */
async function pythonWithCopy(): Promise<ChildProcess> {
  const p = spawn('/usr/bin/python3', ['-c', 'import ssl, sys; print("ready", flush=True); sys.stdin.read()'], {
    env: { ...process.env, LD_LIBRARY_PATH: dir },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve) => p.stdout!.once('data', () => resolve()));
  return p;
}

const exited = (p: ChildProcess) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)));

test('the host libssl is probed from the start; a copy a process maps is probed while it runs, then let go', async () => {
  const r = recorder();
  const d = new TlsDiscovery(r.sink);
  d.scan(0);
  assert.ok(r.placed.has(hostLibssl.key), 'the host libssl');
  const py = await pythonWithCopy();
  try {
    d.scan(1000); // a process first seen
    const copy = [...r.placed.values()].find((t) => t.label.startsWith(path.join(dir, 'libssl')));
    assert.ok(copy, `the copy, mapped by the process: ${JSON.stringify([...r.placed.values()])}`);
    assert.match(copy.label, new RegExp(`\\(mapped by process ${py.pid}\\)$`));
    assert.match(copy.path, new RegExp(`^/proc/${py.pid}/map_files/`));
    assert.notEqual(copy.key, hostLibssl.key);
    d.scan(2000);
    assert.equal(r.log.filter((l) => l === '+openssl').length, 2, 'each file probed once');
  } finally {
    py.stdin!.end();
    await exited(py);
  }
  d.scan(3000);
  assert.deepEqual([...r.placed.keys()], [hostLibssl.key], 'the copy let go with its last process; the host file stays');
  d.clear();
  assert.equal(r.placed.size, 0);
});

test('a Go HTTPS program found at its exec: its Write and Read; a non-Go program is read once', async () => {
  const server = buildGoFixture('server');
  const r = recorder();
  const unsupported: string[] = [];
  const d = new TlsDiscovery(r.sink, { inspectGo: inspectGoBinary, onUnsupported: (f, why) => unsupported.push(`${f}: ${why}`) });
  d.scan(0);
  const readsBefore = d.counts.executables_read;
  d.scan(40_000); // a full re-check: every executable already known
  assert.equal(d.counts.executables_read, readsBefore, 'executables are read once per file');
  makeCertificate(dir);
  const go = spawn(server, ['-addr', '127.0.0.1:0', '-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem')], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise<void>((resolve) => go.stdout!.once('data', () => resolve()));
    d.noteExec(go.pid!, 41_000); // as the kernel reports an exec
    const t = [...r.placed.values()].find((x) => x.library === 'go');
    assert.ok(t?.go, 'the Go program');
    assert.match(t.go.goVersion, /^go1\.\d+/);
    assert.ok(t.go.read.returns.length > 0 && t.go.write.entry > 0);
    assert.equal(t.path, `/proc/${go.pid}/exe`);
  } finally {
    go.kill('SIGKILL');
    await exited(go);
  }
  await sleep(50);
  d.scan(42_000);
  assert.equal([...r.placed.values()].filter((x) => x.library === 'go').length, 0, 'let go when it exits');
  assert.deepEqual(unsupported, []);
});
