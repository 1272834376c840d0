// Configuration entry point: parsing lives in ./config and ./duration; this adds the
// process-level behaviour of the executable (help, version, usage errors and exit codes).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { libbpfVersion } from '../bpf/native';
import { Config, helpText, parseConfig, UsageError } from './config';

export * from './config';
export * from './duration';

/** The compiled file is dist/src/config/index.js: package.json is three levels up. */
const PACKAGE_JSON = path.resolve(__dirname, '..', '..', '..', 'package.json');

/** The package version, or "unknown" when package.json cannot be read (a broken install). */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(PACKAGE_JSON, 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Written by scripts/build.sh next to the compiled code: dist/build-info.json. */
const BUILD_INFO = path.resolve(__dirname, '..', '..', 'build-info.json');

/** The git commit the build was made from ("-dirty": with uncommitted changes), or "unknown". */
export function buildCommit(): string {
  try {
    const info = JSON.parse(fs.readFileSync(BUILD_INFO, 'utf8')) as { commit?: unknown };
    return typeof info.commit === 'string' && info.commit ? info.commit : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * What --version prints: the package version on the first line, then the commit
 * it was built from, the Node.js running it and the libbpf linked into the addon.
 */
export function versionText(): string {
  let libbpf: string;
  try {
    libbpf = libbpfVersion();
  } catch (err) {
    libbpf = `unknown (${String((err as Error)?.message ?? err).split('\n')[0]})`;
  }
  return `datakit-ebpf ${packageVersion()}\ncommit: ${buildCommit()}\nnode: ${process.version}\nlibbpf: ${libbpf}\n`;
}

/**
 * Parses argv and env for the executable. --help and --version print to stdout and exit 0;
 * a usage error prints exactly one line to stderr and exits 2 (SPEC §2).
 */
export function loadConfigOrExit(argv: string[], env: Record<string, string | undefined>): Config {
  let result: ReturnType<typeof parseConfig>;
  try {
    result = parseConfig(argv, env, os.hostname());
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    // stdout and stderr writes are synchronous for files and pipes on Linux: nothing is lost on exit
    process.stderr.write(`datakit-ebpf: ${err.message}\n`);
    process.exit(2);
  }
  if (result === 'help') {
    process.stdout.write(helpText());
    process.exit(0);
  }
  if (result === 'version') {
    process.stdout.write(versionText());
    process.exit(0);
  }
  return result;
}
