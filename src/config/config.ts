// Command line and DataKit's ebpf.conf (SPEC §2).
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import type { LogLevel } from '../log';
import { parseDuration } from './duration';

export type PluginName = 'ebpf-net' | 'ebpf-bash';
export const PLUGINS: readonly PluginName[] = ['ebpf-net', 'ebpf-bash'];

export interface Config {
  apiServer?: string;
  hostname: string;
  logPath?: string;
  logLevel: LogLevel;
  service: string;
  enabled: PluginName[];
  intervalMs: number;
  tags: Record<string, string>;
  includeLoopback: boolean;
  k8s: { url?: string; bearerTokenPath?: string; bearerTokenString?: string };
  metricsListen?: string;
  /** Problems that do not stop start-up (unknown config keys): the caller logs them. */
  warnings: string[];
}

/** Bad input from the user: one line naming the flag or key; exit status 2. */
export class UsageError extends Error {}

const FLAGS = {
  'datakit-apiserver': { type: 'string' },
  hostname: { type: 'string' },
  log: { type: 'string' },
  'log-level': { type: 'string' },
  service: { type: 'string' },
  enabled: { type: 'string' },
  interval: { type: 'string' },
  tags: { type: 'string' },
  config: { type: 'string' },
  'include-loopback': { type: 'boolean' },
  'metrics-listen': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

type FlagValues = { [K in keyof typeof FLAGS]?: (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

/** Tags the product sets itself; user tags may not replace them. */
const RESERVED_TAGS = new Set(['host', 'service', 'source']);
/** Keys of DataKit's [[inputs.ebpf]] that are DataKit's business, not ours. */
const DATAKIT_KEYS = new Set(['daemon', 'name', 'cmd', 'envs']);
const MIN_INTERVAL_MS = 1000;

export function helpText(): string {
  return `Usage: datakit-ebpf [flags]

eBPF host agent: netflow, dnsflow and httpflow (ebpf-net), bash command lines (ebpf-bash).

Flags:
  --datakit-apiserver HOST:PORT  send points to DataKit's HTTP API (default: line protocol on stdout)
  --hostname NAME                value of the host tag (default: $ENV_HOSTNAME, else the OS host name)
  --log PATH                     log file (default: stderr)
  --log-level LEVEL              debug, info, warn or error (default: info)
  --service NAME                 value of the service tag (default: ebpf)
  --enabled LIST                 comma list of plugins: ebpf-net, ebpf-bash (default: ebpf-net)
  --interval DURATION            netflow report interval, e.g. 5s, 1m (default: 60s, at least 1s)
  --tags "k=v;k2=v2"             extra tags on every point
  --config PATH                  DataKit ebpf.conf ([[inputs.ebpf]] table); flags override it
  --include-loopback             also report flows and queries on loopback addresses
  --metrics-listen HOST:PORT     serve the collector's own metrics (Prometheus format)
  -h, --help                     show this help
  --version                      show the version

Environment:
  ENV_HOSTNAME             host tag, below --hostname
  K8S_URL                  Kubernetes API server (config: kubernetes_url)
  K8S_BEARER_TOKEN_PATH    file holding the API token (config: bearer_token)
  K8S_BEARER_TOKEN_STRING  the API token itself (config: bearer_token_string)

Exit status: 0 on SIGINT/SIGTERM, 1 when the system cannot run the collector, 2 on bad flags or config.
`;
}

function parseFlags(argv: string[], where: string): FlagValues {
  try {
    return parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values as FlagValues;
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0].replace(/\. To specify a positional.*$/, '');
    throw new UsageError(`${where}${msg}`);
  }
}

/** "host:port" or "[v6]:port". */
function validateHostPort(value: string, name: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw new UsageError(`${name}: expected HOST:PORT, got "${value}"`);
  return value;
}

function parseLogLevel(value: string, name: string): LogLevel {
  const v = value.toLowerCase();
  if (v === 'debug' || v === 'info' || v === 'warn' || v === 'error') return v;
  if (v === 'warning') return 'warn';
  throw new UsageError(`${name}: unknown log level "${value}" (debug, info, warn, error)`);
}

function parsePlugins(list: string[], name: string): PluginName[] {
  const out: PluginName[] = [];
  for (const raw of list) {
    const p = raw.trim();
    if (!p) continue;
    if (!(PLUGINS as readonly string[]).includes(p)) {
      throw new UsageError(`${name}: unknown plugin "${p}" (valid: ${PLUGINS.join(', ')})`);
    }
    if (!out.includes(p as PluginName)) out.push(p as PluginName);
  }
  if (!out.length) throw new UsageError(`${name}: no plugin enabled (valid: ${PLUGINS.join(', ')})`);
  return out;
}

function parseInterval(value: string, name: string): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message}`);
  }
  if (ms < MIN_INTERVAL_MS) throw new UsageError(`${name}: "${value}" is shorter than the minimum of 1s`);
  return ms;
}

function checkTag(key: string, value: string, name: string): void {
  if (!key) throw new UsageError(`${name}: empty tag key`);
  if (RESERVED_TAGS.has(key)) throw new UsageError(`${name}: tag "${key}" is set by the collector itself`);
  if (typeof value !== 'string') throw new UsageError(`${name}: tag "${key}" must be a string`);
}

/** "k=v;k2=v2" */
export function parseTags(text: string, name = '--tags'): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const segment of text.split(';')) {
    const s = segment.trim();
    if (!s) continue;
    const eq = s.indexOf('=');
    if (eq < 0) throw new UsageError(`${name}: "${s}" is not key=value`);
    const key = s.slice(0, eq).trim();
    const value = s.slice(eq + 1).trim();
    checkTag(key, value, name);
    tags[key] = value;
  }
  return tags;
}

interface Settings {
  apiServer?: string;
  hostname?: string;
  logPath?: string;
  logLevel?: LogLevel;
  service?: string;
  enabled?: PluginName[];
  intervalMs?: number;
  tags: Record<string, string>;
  includeLoopback?: boolean;
  metricsListen?: string;
  k8s: Config['k8s'];
}

/** Applies parsed flags over `s`; `where` prefixes messages for flags that came from a config file. */
function applyFlags(v: FlagValues, s: Settings, where: string): void {
  const name = (flag: string) => `${where}--${flag}`;
  if (v['datakit-apiserver'] !== undefined) s.apiServer = validateHostPort(v['datakit-apiserver'], name('datakit-apiserver'));
  if (v.hostname !== undefined) {
    if (!v.hostname.trim()) throw new UsageError(`${name('hostname')}: empty host name`);
    s.hostname = v.hostname;
  }
  if (v.log !== undefined) s.logPath = v.log;
  if (v['log-level'] !== undefined) s.logLevel = parseLogLevel(v['log-level'], name('log-level'));
  if (v.service !== undefined) {
    if (!v.service.trim()) throw new UsageError(`${name('service')}: empty service name`);
    s.service = v.service;
  }
  if (v.enabled !== undefined) s.enabled = parsePlugins(v.enabled.split(','), name('enabled'));
  if (v.interval !== undefined) s.intervalMs = parseInterval(v.interval, name('interval'));
  if (v.tags !== undefined) Object.assign(s.tags, parseTags(v.tags, name('tags')));
  if (v['include-loopback'] !== undefined) s.includeLoopback = v['include-loopback'];
  if (v['metrics-listen'] !== undefined) s.metricsListen = validateHostPort(v['metrics-listen'], name('metrics-listen'));
}

function typeName(v: unknown): string {
  return Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v;
}

/** Reads the [[inputs.ebpf]] table of a DataKit ebpf.conf into `s`. */
function applyConfigFile(path: string, s: Settings, warnings: string[]): void {
  const where = `config ${path}`;
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`${where}: cannot read: ${e.code ?? e.message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${where}: invalid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  const inputs = doc.inputs as Record<string, unknown> | undefined;
  const table = inputs?.ebpf;
  const ebpf = (Array.isArray(table) ? table[0] : table) as Record<string, unknown> | undefined;
  if (!ebpf || typeof ebpf !== 'object') throw new UsageError(`${where}: no [[inputs.ebpf]] table`);

  const key = (k: string) => `${where}: inputs.ebpf.${k}`;
  const str = (k: string, v: unknown): string => {
    if (typeof v !== 'string') throw new UsageError(`${key(k)}: expected a string, got ${typeName(v)}`);
    return v;
  };
  const strArray = (k: string, v: unknown): string[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw new UsageError(`${key(k)}: expected an array of strings`);
    }
    return v as string[];
  };

  let args: string[] = [];
  for (const [k, v] of Object.entries(ebpf)) {
    switch (k) {
      case 'enabled_plugins':
        s.enabled = parsePlugins(strArray(k, v), key(k));
        break;
      case 'tags': {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${key(k)}: expected a table`);
        for (const [tk, tv] of Object.entries(v)) {
          checkTag(tk, tv as string, key(k));
          s.tags[tk] = tv as string;
        }
        break;
      }
      case 'kubernetes_url':
        s.k8s.url = str(k, v);
        break;
      case 'bearer_token':
        s.k8s.bearerTokenPath = str(k, v);
        break;
      case 'bearer_token_string':
        s.k8s.bearerTokenString = str(k, v);
        break;
      case 'interval':
        s.intervalMs = parseInterval(str(k, v), key(k));
        break;
      case 'include_loopback':
        if (typeof v !== 'boolean') throw new UsageError(`${key(k)}: expected true or false, got ${typeName(v)}`);
        s.includeLoopback = v;
        break;
      case 'args':
        args = strArray(k, v);
        break;
      default:
        if (!DATAKIT_KEYS.has(k)) warnings.push(`${where}: unknown key inputs.ebpf.${k} ignored`);
    }
  }
  // args sit above the file's own keys, below the real command line
  const fromArgs = parseFlags(args, `${key('args')}: `);
  if (fromArgs.config !== undefined) throw new UsageError(`${key('args')}: --config is not allowed inside a config file`);
  if (fromArgs.help || fromArgs.version) throw new UsageError(`${key('args')}: --help/--version are not allowed here`);
  applyFlags(fromArgs, s, `${key('args')}: `);
}

/**
 * Precedence, lowest first: defaults, environment (K8S_*), config file keys,
 * config `args`, command-line flags. The host name follows the seed:
 * --hostname, else ENV_HOSTNAME, else the OS host name.
 */
export function parseConfig(
  argv: string[],
  env: Record<string, string | undefined>,
  osHostname: string,
): Config | 'help' | 'version' {
  const flags = parseFlags(argv, '');
  if (flags.help) return 'help';
  if (flags.version) return 'version';

  const s: Settings = {
    tags: {},
    k8s: {
      url: env.K8S_URL || undefined,
      bearerTokenPath: env.K8S_BEARER_TOKEN_PATH || undefined,
      bearerTokenString: env.K8S_BEARER_TOKEN_STRING || undefined,
    },
  };
  const warnings: string[] = [];
  if (flags.config !== undefined) applyConfigFile(flags.config, s, warnings);
  applyFlags(flags, s, '');

  return {
    apiServer: s.apiServer,
    hostname: s.hostname ?? (env.ENV_HOSTNAME || osHostname),
    logPath: s.logPath,
    logLevel: s.logLevel ?? 'info',
    service: s.service ?? 'ebpf',
    enabled: s.enabled ?? ['ebpf-net'],
    intervalMs: s.intervalMs ?? 60_000,
    tags: s.tags,
    includeLoopback: s.includeLoopback ?? false,
    k8s: s.k8s,
    metricsListen: s.metricsListen,
    warnings,
  };
}
