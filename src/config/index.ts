import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from '../paths';
import { Config, helpText, parseConfig, UsageError } from './config';

export * from './config';
export { parseDuration } from './duration';

export function version(): string {
  return (JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Parses argv and env; prints help/version or a one-line usage error and exits. */
export function loadConfigOrExit(argv: string[], env: Record<string, string | undefined>): Config {
  let result: ReturnType<typeof parseConfig>;
  try {
    result = parseConfig(argv, env, os.hostname());
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`datakit-ebpf: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (result === 'help') {
    process.stdout.write(helpText());
    process.exit(0);
  }
  if (result === 'version') {
    process.stdout.write(`datakit-ebpf ${version()}\n`);
    process.exit(0);
  }
  return result;
}
