// Command line and DataKit's ebpf.conf (SPEC §2).
//
// Sources, lowest precedence first:
//   1. defaults
//   2. environment: K8S_URL, K8S_BEARER_TOKEN_PATH, K8S_BEARER_TOKEN_STRING
//   3. --config FILE: the keys of its [[inputs.ebpf]] table
//   4. --config FILE: the flags in that table's `args`
//   5. the command line
// The host name follows the seed instead: --hostname (command line or `args`), else
// ENV_HOSTNAME, else the OS host name. DataKit itself turns ENV_HOSTNAME into a --hostname
// in `args`, so an explicit flag must win over the variable.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { parseArgs } from 'node:util';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { LogLevel } from '../log';
import { HOOKS_MODES, type HooksMode } from '../plugins/netflow/hooks';
import { DurationError, parseDuration } from './duration';

export type PluginName = 'ebpf-net' | 'ebpf-bash';
export const PLUGINS: readonly PluginName[] = ['ebpf-net', 'ebpf-bash'];

export interface Config {
  /** "host:port" or "[v6]:port"; absent: line protocol goes to stdout. */
  apiServer?: string;
  /** Value of the `host` tag. */
  hostname: string;
  /** Log file; absent: stderr. */
  logPath?: string;
  logLevel: LogLevel;
  /** Value of the `service` tag. */
  service: string;
  /** Deduplicated, in the order the user gave them. */
  enabled: PluginName[];
  intervalMs: number;
  /** Extra tags on every point; never `host`, `service` or `source`. */
  tags: Record<string, string>;
  includeLoopback: boolean;
  /** Both token forms may be set when one source gave both; the k8s client picks. */
  k8s: { url?: string; bearerTokenPath?: string; bearerTokenString?: string; caPath?: string; insecureSkipTlsVerify?: boolean };
  /** Where to serve the collector's own metrics (Prometheus format). */
  metricsListen?: string;
  /** Which kernel hooks count netflow's bytes. */
  hooks: HooksMode;
  /** httpflow and dnsflow: one point per request / query instead of per series and interval. */
  l7PerRequest: boolean;
  /** Series per interval the kernel keeps for httpflow, and for dnsflow, before counting in overflow series. */
  l7MaxSeries: number;
  /** TCP connections netflow tracks at once in the kernel (UDP flows: the same, up to 131,072). */
  maxConnections: number;
  /** Where points wait while DataKit cannot take them (with apiServer only). */
  bufferDir: string;
  /** Bound of bufferDir in bytes; past it the oldest points are dropped. */
  bufferMaxBytes: number;
  /** Problems that do not stop start-up (unknown config keys): the caller logs them. */
  warnings: string[];
}

/** Bad input from the user: exit status 2. The message is one line naming the flag or key. */
export class UsageError extends Error {
  constructor(message: string) {
    // file names and parser messages could carry newlines: the contract is one line
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
    this.name = 'UsageError';
  }
}

export const DEFAULT_SERVICE = 'ebpf';
export const DEFAULT_L7_MAX_SERIES = 8192;
const MAX_L7_MAX_SERIES = 1 << 20;
/** A busy server holds 100,000 connections and more. */
export const DEFAULT_MAX_CONNECTIONS = 262_144;
const MIN_MAX_CONNECTIONS = 1024;
const MAX_MAX_CONNECTIONS = 1 << 22;
export const DEFAULT_INTERVAL_MS = 60_000;
/** Shorter reports would flood DataKit with tiny batches. */
export const MIN_INTERVAL_MS = 1_000;
/** Longer ones overflow Node's timers (2^31-1 ms) long before they would be useful. */
export const MAX_INTERVAL_MS = 24 * 3_600_000;
export const DEFAULT_BUFFER_DIR = '/var/lib/datakit-ebpf/buffer';
export const DEFAULT_BUFFER_MAX_BYTES = 2 ** 30;
/** A smaller buffer would not hold even one full batch of points. */
export const MIN_BUFFER_MAX_BYTES = 2 ** 20;

interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder for the value in the help text. */
  arg?: string;
  help: string;
}

// The single list of flags: parsing and the help text are both built from it.
const FLAGS = {
  'datakit-apiserver': {
    type: 'string',
    arg: 'HOST:PORT',
    help: "send points to DataKit's HTTP API (default: none, line protocol on stdout)",
  },
  hostname: {
    type: 'string',
    arg: 'NAME',
    help: 'value of the host tag (default: $ENV_HOSTNAME, else the OS host name)',
  },
  log: { type: 'string', arg: 'PATH', help: 'log file (default: stderr)' },
  'log-level': { type: 'string', arg: 'LEVEL', help: 'debug, info, warn (or warning) or error (default: info)' },
  service: { type: 'string', arg: 'NAME', help: `value of the service tag (default: ${DEFAULT_SERVICE})` },
  enabled: { type: 'string', arg: 'LIST', help: `comma list of plugins: ${PLUGINS.join(', ')} (default: ebpf-net)` },
  interval: {
    type: 'string',
    arg: 'DURATION',
    help: 'netflow aggregation and report interval, e.g. 5s, 1m30s; 1s to 24h (default: 60s)',
  },
  tags: { type: 'string', arg: '"k=v;k2=v2"', help: 'extra tags on every point; may be repeated (default: none)' },
  config: {
    type: 'string',
    arg: 'PATH',
    help: 'DataKit ebpf.conf, its [[inputs.ebpf]] table; flags override it (default: none)',
  },
  'include-loopback': {
    type: 'boolean',
    help: 'also report flows and queries on loopback addresses; =false turns it off (default: off)',
  },
  'metrics-listen': {
    type: 'string',
    arg: 'HOST:PORT',
    help: "serve the collector's own metrics at /metrics, Prometheus format (default: none)",
  },
  'l7-per-request': {
    type: 'boolean',
    help: 'httpflow, dnsflow: a point per request, as DataKit 1.4.0 (default: per interval)',
  },
  'l7-max-series': {
    type: 'string',
    arg: 'N',
    help: `httpflow's and dnsflow's series per interval before overflow (default: ${DEFAULT_L7_MAX_SERIES})`,
  },
  'max-connections': {
    type: 'string',
    arg: 'N',
    help: `connections netflow tracks at once, bounding its kernel memory (default: ${DEFAULT_MAX_CONNECTIONS})`,
  },
  'buffer-dir': {
    type: 'string',
    arg: 'PATH',
    help: `where points wait while DataKit is away (default: ${DEFAULT_BUFFER_DIR})`,
  },
  'buffer-max-size': {
    type: 'string',
    arg: 'SIZE',
    help: 'bound of --buffer-dir, e.g. 512MiB, 2GiB; past it the oldest go (default: 1GiB)',
  },
  hooks: {
    type: 'string',
    arg: 'MODE',
    help: `byte-counting hooks: ${HOOKS_MODES.join(', ')} (default: auto, the cheapest)`,
  },
  help: { type: 'boolean', short: 'h', help: 'show this help and exit' },
  version: { type: 'boolean', help: 'show the version and exit' },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;

const ENVIRONMENT: readonly [string, string][] = [
  ['ENV_HOSTNAME', 'host tag when no --hostname is given (command line or config args)'],
  ['K8S_URL', 'Kubernetes API server URL (below config kubernetes_url)'],
  ['K8S_BEARER_TOKEN_PATH', 'file holding the API token (below config bearer_token)'],
  ['K8S_BEARER_TOKEN_STRING', 'the API token itself (below config bearer_token_string)'],
  ['K8S_CA_PATH', "the API server's CA (below config kubernetes_ca)"],
  ['K8S_INSECURE_SKIP_TLS_VERIFY', 'true: trust any API server certificate'],
  ['HOST_ROOT', "the host's / when running in a container"],
];

/** Tags the collector sets itself, and what to do instead of passing them in --tags. */
const RESERVED_TAGS: ReadonlyMap<string, string> = new Map([
  ['host', 'use --hostname'],
  ['service', 'use --service'],
  ['source', 'it names the kind of data'],
]);

/** Keys of DataKit's [[inputs.ebpf]] that concern DataKit's launcher, not the collector. */
const DATAKIT_KEYS: ReadonlySet<string> = new Set(['daemon', 'name', 'cmd', 'envs']);

export function helpText(): string {
  const rows = Object.entries(FLAGS).map(([name, f]: [string, FlagSpec]): [string, string] => {
    const short = f.short ? `-${f.short}, ` : '';
    return [`${short}--${name}${f.arg ? ` ${f.arg}` : ''}`, f.help];
  });
  const width = Math.max(...rows.map(([left]) => left.length), ...ENVIRONMENT.map(([n]) => n.length)) + 2;
  const table = (entries: readonly (readonly [string, string])[]) =>
    entries.map(([left, right]) => `  ${left.padEnd(width)}${right}`).join('\n');
  return `Usage: datakit-ebpf [flags]

eBPF host agent for DataKit: netflow, dnsflow, httpflow (plugin ebpf-net)
and bash command lines (plugin ebpf-bash).

Flags (--flag VALUE and --flag=VALUE are both accepted):
${table(rows)}

Environment:
${table(ENVIRONMENT)}

Precedence, lowest first: defaults, environment, config file keys, the
config file's args, the command line.

Exit status: 0 after SIGINT/SIGTERM, 1 when the system cannot run the
collector, 2 on bad flags or configuration.
`;
}

/** What one command line (or a config file's `args`) asked for; absent: not given. */
interface FlagValues {
  'datakit-apiserver'?: string;
  hostname?: string;
  log?: string;
  'log-level'?: string;
  service?: string;
  enabled?: string;
  interval?: string;
  /** --tags may be repeated: every occurrence, in order. */
  tags?: string[];
  config?: string;
  'include-loopback'?: boolean;
  'metrics-listen'?: string;
  'l7-per-request'?: boolean;
  'l7-max-series'?: string;
  'max-connections'?: string;
  'buffer-dir'?: string;
  'buffer-max-size'?: string;
  hooks?: string;
  help?: boolean;
  version?: boolean;
}

const PARSE_OPTIONS = Object.fromEntries(
  Object.entries(FLAGS).map(([name, f]: [string, FlagSpec]) => [
    name,
    f.short ? { type: f.type, short: f.short } : { type: f.type },
  ]),
);

const isFlagName = (name: string): name is FlagName => Object.hasOwn(FLAGS, name);

/**
 * Reads flags with parseArgs in non-strict mode and checks every token itself, so that messages
 * are ours (stable across Node versions) and name the flag as the user typed it.
 * `where` prefixes messages for flags that come from a config file.
 */
function readFlags(argv: readonly string[], where: string): FlagValues {
  const { tokens } = parseArgs({
    args: [...argv],
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const out: FlagValues = {};
  const fail = (msg: string) => new UsageError(`${where}${msg}`);

  for (const t of tokens) {
    if (t.kind === 'option-terminator') continue; // "--": what follows is positional, refused below
    if (t.kind === 'positional') throw fail(`unexpected argument ${quote(t.value)}`);

    const typed = argv[t.index];
    // parseArgs splits "-hostname" into -h -o -s ...; only a lone "-h" is the short help flag
    const isShort = !t.rawName.startsWith('--');
    if (!isFlagName(t.name) || (isShort && typed !== t.rawName)) {
      const word = isShort ? typed.split('=')[0] : t.rawName;
      const long = word.replace(/^-+/, '');
      const hint = isShort && long.length > 1 && isFlagName(long) ? ` (did you mean --${long}?)` : '';
      throw fail(`unknown flag ${word}${hint}`);
    }

    const name = t.name;
    const flag = `--${name}`;
    if (name === 'include-loopback' || name === 'l7-per-request') {
      // Go's flag package allows --bool=false; it is the only way to undo a config file's args
      out[name] = t.value === undefined ? true : parseBool(t.value, `${where}${flag}`);
      continue;
    }
    if (name === 'help' || name === 'version') {
      if (t.value !== undefined) throw fail(`${flag}: does not take a value`);
      out[name] = true;
      continue;
    }

    // "--interval --hostname h": parseArgs would take "--hostname" as the interval
    if (t.value === undefined || (!t.inlineValue && t.value.startsWith('-'))) throw fail(`${flag}: missing value`);
    if (name === 'tags') (out.tags ??= []).push(t.value);
    else out[name] = t.value; // repeated flags: the last one counts, as with Go's flag package
  }
  return out;
}

/** Everything gathered so far; undefined fields fall back to defaults at the end. */
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
  hooks?: HooksMode;
  l7PerRequest?: boolean;
  l7MaxSeries?: number;
  maxConnections?: number;
  bufferDir?: string;
  bufferMaxBytes?: number;
  k8s: Config['k8s'];
  /** Where k8s.url came from, to name it if it turns out invalid. */
  k8sUrlSource?: string;
}

/** Applies one source's flags over `s`; `where` prefixes messages ("" on the command line). */
function applyFlags(v: FlagValues, s: Settings, where: string): void {
  const name = (flag: FlagName) => `${where}--${flag}`;
  if (v['datakit-apiserver'] !== undefined) {
    s.apiServer = checkHostPort(v['datakit-apiserver'], name('datakit-apiserver'));
  }
  if (v.hostname !== undefined) s.hostname = checkLabel(v.hostname, name('hostname'), 'host name');
  if (v.log !== undefined) {
    if (v.log === '') throw new UsageError(`${name('log')}: empty path`);
    s.logPath = v.log;
  }
  if (v['log-level'] !== undefined) s.logLevel = parseLogLevel(v['log-level'], name('log-level'));
  if (v.service !== undefined) s.service = checkLabel(v.service, name('service'), 'service name');
  if (v.enabled !== undefined) s.enabled = parsePlugins(v.enabled.split(','), name('enabled'));
  if (v.interval !== undefined) s.intervalMs = parseInterval(v.interval, name('interval'));
  for (const text of v.tags ?? []) Object.assign(s.tags, parseTags(text, name('tags')));
  if (v['include-loopback'] !== undefined) s.includeLoopback = v['include-loopback'];
  if (v['metrics-listen'] !== undefined) s.metricsListen = checkHostPort(v['metrics-listen'], name('metrics-listen'));
  if (v.hooks !== undefined) s.hooks = parseHooks(v.hooks, name('hooks'));
  if (v['l7-per-request'] !== undefined) s.l7PerRequest = v['l7-per-request'];
  if (v['l7-max-series'] !== undefined) s.l7MaxSeries = parseSeriesCount(v['l7-max-series'], name('l7-max-series'));
  if (v['max-connections'] !== undefined) s.maxConnections = parseConnectionCount(v['max-connections'], name('max-connections'));
  if (v['buffer-dir'] !== undefined) s.bufferDir = checkPath(v['buffer-dir'], name('buffer-dir'));
  if (v['buffer-max-size'] !== undefined) s.bufferMaxBytes = parseBufferSize(v['buffer-max-size'], name('buffer-max-size'));
}

function checkPath(value: string, name: string): string {
  if (value === '') throw new UsageError(`${name}: empty path`);
  if (CONTROL.test(value)) throw new UsageError(`${name}: path ${quote(value)} contains a control character`);
  return value;
}

/** Bytes per unit: SI (KB = 1000) and binary (KiB = 1024), any case. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** "512MiB", "2GiB", "1.5GB", "1048576" (bytes): at least 1MiB. */
export function parseBufferSize(value: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = SIZE_UNITS[(m?.[2] || 'b').toLowerCase()];
  const bytes = m && unit ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`${name}: expected a size such as 512MiB or 2GiB (bytes, KiB, MiB, GiB, TiB, KB, MB, GB, TB), got ${quote(value)}`);
  }
  if (bytes < MIN_BUFFER_MAX_BYTES) throw new UsageError(`${name}: ${quote(value)} is below the minimum of 1MiB`);
  return bytes;
}

/** A whole number of `what` from `min` to `max`. */
function parseCount(value: string, name: string, what: string, min: number, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name}: expected a number of ${what} from ${min} to ${max}, got ${quote(value)}`);
  }
  return n;
}

function parseSeriesCount(value: string, name: string): number {
  return parseCount(value, name, 'series', 1, MAX_L7_MAX_SERIES);
}

function parseConnectionCount(value: string, name: string): number {
  return parseCount(value, name, 'connections', MIN_MAX_CONNECTIONS, MAX_MAX_CONNECTIONS);
}

function parseHooks(value: string, name: string): HooksMode {
  const v = value.trim().toLowerCase();
  if ((HOOKS_MODES as readonly string[]).includes(v)) return v as HooksMode;
  throw new UsageError(`${name}: unknown hooks ${quote(value)} (valid: ${HOOKS_MODES.join(', ')})`);
}

function quote(text: string): string {
  return JSON.stringify(text);
}

function parseBool(value: string, name: string): boolean {
  const v = value.toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new UsageError(`${name}: expected true or false, got ${quote(value)}`);
}

// Characters that cannot travel in a line protocol tag (escaping covers only , = and space).
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A tag value the user names (host, service): not blank, no control characters. */
function checkLabel(value: string, name: string, what: string): string {
  if (value.trim() === '') throw new UsageError(`${name}: empty ${what}`);
  if (CONTROL.test(value)) throw new UsageError(`${name}: ${what} ${quote(value)} contains a control character`);
  return value;
}

// DNS names, IPv4 addresses, and names with "_" that container setups produce.
const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

/** "host:port" or "[v6]:port": returned as given, ready to go after "http://". */
function checkHostPort(value: string, name: string): string {
  const bad = (why: string) => new UsageError(`${name}: ${why}`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) throw bad(`expected HOST:PORT without a scheme, got ${quote(value)}`);
  const m = /^(?:\[([^\]]*)\]|([^[\]]*)):(\d+)$/.exec(value);
  if (!m) {
    throw bad(`expected HOST:PORT, got ${quote(value)}`);
  }
  const [, v6, host, portText] = m;
  if (v6 !== undefined) {
    if (!net.isIPv6(v6)) throw bad(`invalid IPv6 address ${quote(v6)} in ${quote(value)}`);
  } else if (host === '') {
    throw bad(`missing host in ${quote(value)}`);
  } else if (host.includes(':')) {
    throw bad(`IPv6 addresses need brackets, e.g. [::1]:9529, got ${quote(value)}`);
  } else if (!HOST_NAME.test(host)) {
    throw bad(`invalid host ${quote(host)} in ${quote(value)}`);
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad(`port ${portText} out of range 1-65535 in ${quote(value)}`);
  return value;
}

/** Accepts any case, and "warning" as DataKit's own configs sometimes spell it. */
function parseLogLevel(value: string, name: string): LogLevel {
  const v = value.trim().toLowerCase();
  if (v === 'debug' || v === 'info' || v === 'warn' || v === 'error') return v;
  if (v === 'warning') return 'warn';
  throw new UsageError(`${name}: unknown log level ${quote(value)} (valid: debug, info, warn, error)`);
}

/** Trims names and skips empty ones (a trailing comma is harmless); unknown names and an empty result are errors. */
function parsePlugins(list: readonly string[], name: string): PluginName[] {
  const valid = `valid: ${PLUGINS.join(', ')}`;
  const out: PluginName[] = [];
  for (const raw of list) {
    const p = raw.trim();
    if (p === '') continue;
    if (!(PLUGINS as readonly string[]).includes(p)) {
      throw new UsageError(`${name}: unknown plugin ${quote(p)} (${valid})`);
    }
    if (!out.includes(p as PluginName)) out.push(p as PluginName);
  }
  if (out.length === 0) throw new UsageError(`${name}: no plugin given (${valid})`);
  return out;
}

function parseInterval(value: string, name: string): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (err) {
    if (err instanceof DurationError) throw new UsageError(`${name}: ${err.message}`);
    throw err;
  }
  if (ms < MIN_INTERVAL_MS) throw new UsageError(`${name}: ${quote(value)} is shorter than the minimum of 1s`);
  if (ms > MAX_INTERVAL_MS) throw new UsageError(`${name}: ${quote(value)} is longer than the maximum of 24h`);
  return ms;
}

/** Checks one user tag; values may be empty (the output leaves such tags out). */
function checkTag(key: string, value: string, name: string): void {
  if (key === '') throw new UsageError(`${name}: empty tag key`);
  const reserved = RESERVED_TAGS.get(key);
  if (reserved) throw new UsageError(`${name}: tag ${quote(key)} is set by the collector itself; ${reserved}`);
  if (CONTROL.test(key) || CONTROL.test(value)) {
    throw new UsageError(`${name}: tag ${quote(key)} contains a control character`);
  }
}

/** "k=v;k2=v2": spaces around keys and values are trimmed, empty segments skipped. */
export function parseTags(text: string, name = '--tags'): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const segment of text.split(';')) {
    const s = segment.trim();
    if (s === '') continue;
    const eq = s.indexOf('=');
    if (eq < 0) throw new UsageError(`${name}: ${quote(s)} is not key=value`);
    const key = s.slice(0, eq).trim();
    const value = s.slice(eq + 1).trim(); // a value may itself contain "="
    checkTag(key, value, name);
    tags[key] = value;
  }
  return tags;
}

/** TOML type names for messages. */
function tomlType(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'date-time';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'float';
  if (typeof v === 'bigint') return 'integer';
  if (typeof v === 'object' && v !== null) return 'table';
  return typeof v;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return tomlType(v) === 'table';
}

function readConfigText(path: string, where: string): string {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // "ENOENT: no such file or directory, open '/x'" -> "no such file or directory"
    const why = /^[A-Z]+: ([^,]+)/.exec(e.message)?.[1] ?? e.code ?? e.message;
    throw new UsageError(`${where}: cannot read: ${why}`);
  }
}

function parseConfigText(text: string, where: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // smol-toml appends a code excerpt after a blank line: keep the reason only
    const reason = err.message.split('\n')[0].replace(/^Invalid TOML document: /, '');
    throw new UsageError(`${where}: invalid TOML at line ${err.line}, column ${err.column}: ${reason}`);
  }
}

/** Reads the first [[inputs.ebpf]] table of a DataKit ebpf.conf into `s`, then its `args`. */
function applyConfigFile(path: string, s: Settings, warnings: string[]): void {
  const where = `config ${path}`;
  const doc = parseConfigText(readConfigText(path, where), where);

  for (const top of Object.keys(doc)) {
    if (top !== 'inputs') warnings.push(`${where}: unknown key ${top} ignored`);
  }
  // other [[inputs.*]] tables may share the file: they belong to other DataKit inputs
  const inputs = doc.inputs;
  const entry = isTable(inputs) ? inputs.ebpf : undefined;
  const tables = Array.isArray(entry) ? entry : entry === undefined ? [] : [entry];
  const ebpf = tables[0];
  if (ebpf === undefined) throw new UsageError(`${where}: no [[inputs.ebpf]] table`);
  if (!isTable(ebpf)) throw new UsageError(`${where}: inputs.ebpf: expected a table, got ${tomlType(ebpf)}`);
  if (tables.length > 1) warnings.push(`${where}: ${tables.length} [[inputs.ebpf]] tables, only the first is used`);

  const key = (k: string) => `${where}: inputs.ebpf.${k}`;
  const wrongType = (k: string, expected: string, v: unknown) =>
    new UsageError(`${key(k)}: expected ${expected}, got ${tomlType(v)}`);
  const str = (k: string, v: unknown): string => {
    if (typeof v !== 'string') throw wrongType(k, 'a string', v);
    return v;
  };
  const strArray = (k: string, v: unknown): string[] => {
    if (!Array.isArray(v)) throw wrongType(k, 'an array of strings', v);
    const i = v.findIndex((x) => typeof x !== 'string');
    if (i >= 0) throw new UsageError(`${key(k)}[${i}]: expected a string, got ${tomlType(v[i])}`);
    return v as string[];
  };

  let args: string[] = [];
  let tokenPath: string | undefined;
  let tokenString: string | undefined;
  for (const [k, v] of Object.entries(ebpf)) {
    switch (k) {
      case 'enabled_plugins':
        s.enabled = parsePlugins(strArray(k, v), key(k));
        break;
      case 'tags':
        if (!isTable(v)) throw wrongType(k, 'a table', v);
        for (const [tk, tv] of Object.entries(v)) {
          if (typeof tv !== 'string') throw new UsageError(`${key(k)}.${tk}: expected a string, got ${tomlType(tv)}`);
          checkTag(tk, tv, key(k));
          s.tags[tk] = tv;
        }
        break;
      case 'kubernetes_url':
        // empty means "not set", as in the sample's commented-out lines
        if (str(k, v) !== '') {
          s.k8s.url = v as string;
          s.k8sUrlSource = key(k);
        }
        break;
      case 'kubernetes_ca':
        s.k8s.caPath = str(k, v) || undefined;
        break;
      case 'kubernetes_insecure_skip_tls_verify':
        if (typeof v !== 'boolean') throw wrongType(k, 'true or false', v);
        s.k8s.insecureSkipTlsVerify = v;
        break;
      case 'bearer_token':
        tokenPath = str(k, v) || undefined;
        break;
      case 'bearer_token_string':
        tokenString = str(k, v) || undefined;
        break;
      case 'interval':
        if (typeof v !== 'string') throw wrongType(k, 'a duration string such as "10s"', v);
        s.intervalMs = parseInterval(v, key(k));
        break;
      case 'include_loopback':
        if (typeof v !== 'boolean') throw wrongType(k, 'true or false', v);
        s.includeLoopback = v;
        break;
      case 'l7_per_request':
        if (typeof v !== 'boolean') throw wrongType(k, 'true or false', v);
        s.l7PerRequest = v;
        break;
      case 'l7_max_series':
        if (typeof v !== 'number' && typeof v !== 'bigint') throw wrongType(k, 'an integer', v);
        s.l7MaxSeries = parseSeriesCount(String(v), key(k));
        break;
      case 'max_connections':
        if (typeof v !== 'number' && typeof v !== 'bigint') throw wrongType(k, 'an integer', v);
        s.maxConnections = parseConnectionCount(String(v), key(k));
        break;
      case 'buffer_dir':
        s.bufferDir = checkPath(str(k, v), key(k));
        break;
      case 'buffer_max_size':
        // "512MiB", or a number of bytes
        if (typeof v !== 'string' && !(typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v)))) {
          throw wrongType(k, 'a size such as "512MiB", or an integer of bytes', v);
        }
        s.bufferMaxBytes = parseBufferSize(String(v), key(k));
        break;
      case 'args':
        args = strArray(k, v);
        break;
      default:
        if (!DATAKIT_KEYS.has(k)) warnings.push(`${where}: unknown key inputs.ebpf.${k} ignored`);
    }
  }
  // The token is one setting in two forms: the file's replaces the environment's whole, so a
  // stale K8S_BEARER_TOKEN_STRING cannot shadow the file's bearer_token.
  if (tokenPath !== undefined || tokenString !== undefined) {
    s.k8s.bearerTokenPath = tokenPath;
    s.k8s.bearerTokenString = tokenString;
  }

  // args sit above the file's own keys and below the real command line
  const argsWhere = `${key('args')}: `;
  const fromArgs = readFlags(args, argsWhere);
  if (fromArgs.config !== undefined) throw new UsageError(`${argsWhere}--config is not allowed inside a config file`);
  if (fromArgs.help || fromArgs.version) {
    throw new UsageError(`${argsWhere}--${fromArgs.help ? 'help' : 'version'} is not allowed inside a config file`);
  }
  applyFlags(fromArgs, s, argsWhere);
}

function checkK8sUrl(url: string, source: string): void {
  let ok = false;
  try {
    const u = new URL(url);
    ok = (u.protocol === 'https:' || u.protocol === 'http:') && u.hostname !== '';
  } catch {
    // not a URL at all
  }
  if (!ok) throw new UsageError(`${source}: expected an http(s) URL, got ${quote(url)}`);
}

/** Environment values: empty or blank means unset. */
function envValue(env: Record<string, string | undefined>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** A true/false environment value; anything else is a usage error. */
function envBoolean(env: Record<string, string | undefined>, name: string): boolean | undefined {
  const v = envValue(env, name)?.trim().toLowerCase();
  if (v === undefined) return undefined;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new UsageError(`${name}: expected true or false, got ${quote(v)}`);
}

/** Whether `argv` holds one of `flags` (before any "--"), whatever else it contains. */
function asks(argv: readonly string[], ...flags: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => flags.includes(a));
}

/**
 * Builds the configuration from the command line, the environment and an optional ebpf.conf.
 * Returns 'help' or 'version' when asked for, even alongside other flags or mistakes;
 * throws UsageError for anything the user got wrong.
 */
export function parseConfig(
  argv: string[],
  env: Record<string, string | undefined>,
  osHostname: string,
): Config | 'help' | 'version' {
  if (asks(argv, '--help', '-h')) return 'help';
  if (asks(argv, '--version')) return 'version';
  const flags = readFlags(argv, '');

  const s: Settings = {
    tags: {},
    k8s: {
      url: envValue(env, 'K8S_URL'),
      bearerTokenPath: envValue(env, 'K8S_BEARER_TOKEN_PATH'),
      bearerTokenString: envValue(env, 'K8S_BEARER_TOKEN_STRING'),
      caPath: envValue(env, 'K8S_CA_PATH'),
      insecureSkipTlsVerify: envBoolean(env, 'K8S_INSECURE_SKIP_TLS_VERIFY'),
    },
    k8sUrlSource: 'K8S_URL',
  };
  const warnings: string[] = [];
  if (flags.config !== undefined) {
    if (flags.config === '') throw new UsageError('--config: empty path');
    applyConfigFile(flags.config, s, warnings);
  }
  applyFlags(flags, s, '');

  // only the URL in effect is checked: a bad K8S_URL overridden by the file does no harm
  if (s.k8s.url !== undefined) checkK8sUrl(s.k8s.url, s.k8sUrlSource ?? 'K8S_URL');
  const envHostname = envValue(env, 'ENV_HOSTNAME');

  return {
    apiServer: s.apiServer,
    hostname:
      s.hostname ?? (envHostname !== undefined ? checkLabel(envHostname, 'ENV_HOSTNAME', 'host name') : osHostname),
    logPath: s.logPath,
    logLevel: s.logLevel ?? 'info',
    service: s.service ?? DEFAULT_SERVICE,
    enabled: s.enabled ?? ['ebpf-net'],
    intervalMs: s.intervalMs ?? DEFAULT_INTERVAL_MS,
    tags: s.tags,
    includeLoopback: s.includeLoopback ?? false,
    k8s: s.k8s,
    metricsListen: s.metricsListen,
    hooks: s.hooks ?? 'auto',
    l7PerRequest: s.l7PerRequest ?? false,
    l7MaxSeries: s.l7MaxSeries ?? DEFAULT_L7_MAX_SERIES,
    maxConnections: s.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    bufferDir: s.bufferDir ?? DEFAULT_BUFFER_DIR,
    bufferMaxBytes: s.bufferMaxBytes ?? DEFAULT_BUFFER_MAX_BYTES,
    warnings,
  };
}
