// Builds the Go test programs of test/fixtures/go-tls with the machine's Go
// toolchain (Debian's golang-go, installed by scripts/setup.sh), once: each
// binary is kept in build/go/bin under a name keyed by the source's hash, the
// Go version and the build flags, and built again only when one changes.
// Standard library only, offline: no proxy, no toolchain download, no
// user-level Go settings.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const goFixtureDir = path.join(repoRoot, 'test', 'fixtures', 'go-tls');
const goDir = path.join(repoRoot, 'build', 'go');

export type GoFixture = 'server' | 'client' | 'offsets';

export interface GoBuildOptions {
  /** -ldflags=-s -w: no .symtab, no DWARF (functions only in .gopclntab) */
  stripped?: boolean;
  /** -buildmode=pie, as distributions build Go programs */
  pie?: boolean;
}

/** The environment the go command runs in: caches under build/go, never the network. */
export function goEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOCACHE: path.join(goDir, 'cache'),
    GOPATH: path.join(goDir, 'path'),
    GOENV: 'off',
    GOFLAGS: '-mod=mod',
    GOPROXY: 'off',
    GOSUMDB: 'off',
    GOTOOLCHAIN: 'local',
    // static programs, built without a C compiler
    CGO_ENABLED: '0',
  };
}

let version: string | undefined;

/** `go version`'s version, e.g. "go1.19.8". */
export function goVersion(): string {
  if (version === undefined) {
    const out = execFileSync('go', ['version'], { env: goEnv(), encoding: 'utf8' });
    const m = /^go version (\S+) /.exec(out);
    if (!m) throw new Error(`unexpected go version output: ${out}`);
    version = m[1];
  }
  return version;
}

/** Path of the fixture's binary, built now if it is not in the cache yet. */
export function buildGoFixture(name: GoFixture, opts: GoBuildOptions = {}): string {
  const src = path.join(goFixtureDir, `${name}.go`);
  const args = ['build', '-trimpath', '-buildvcs=false'];
  if (opts.pie) args.push('-buildmode=pie');
  if (opts.stripped) args.push('-ldflags=-s -w');
  const key = createHash('sha256')
    .update(fs.readFileSync(src))
    .update(`\0${goVersion()}\0${args.join(' ')}`)
    .digest('hex')
    .slice(0, 16);
  const bin = path.join(goDir, 'bin', `${name}${opts.pie ? '-pie' : ''}${opts.stripped ? '-stripped' : ''}-${key}`);
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  // built beside, then renamed: a concurrent build never sees half a binary
  const tmp = `${bin}.tmp${process.pid}`;
  try {
    execFileSync('go', [...args, '-o', tmp, src], { env: goEnv(), cwd: goFixtureDir, stdio: ['ignore', 'ignore', 'pipe'] });
    fs.renameSync(tmp, bin);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return bin;
}
