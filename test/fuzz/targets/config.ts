// The configuration: DataKit's ebpf.conf (TOML, read through --config), the
// command line and the environment. Any input gives a Config (or help or
// version), or a UsageError of one line; never another exception.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';
import { Config, MAX_INTERVAL_MS, MIN_INTERVAL_MS, parseConfig, PLUGINS, UsageError } from '../../../src/config';
import { HOOKS_MODES } from '../../../src/plugins/netflow/hooks';
import type { FuzzTarget } from '../harness';
import { mutateText, NASTY_CHARS } from '../mutate';
import { Random } from '../random';

export interface ConfigInput {
  /** The file --config names; undefined: no file. */
  toml?: string;
  argv: string[];
  env: Record<string, string>;
}

const FILES = [
  `
[[inputs.ebpf]]
  daemon = true
  name = 'ebpf'
  cmd = "/usr/local/datakit/externals/datakit-ebpf"
  args = [
    "--datakit-apiserver", "0.0.0.0:9529",
  ]
  envs = []
  # kubernetes_url = "https://kubernetes.default:443"
  enabled_plugins = [
    "ebpf-net",
  ]

  [inputs.ebpf.tags]
    # some_tag = "some_value"
`,
  `[[inputs.ebpf]]
enabled_plugins = ["ebpf-bash", "ebpf-net", "ebpf-bash"]
kubernetes_url = "https://kubernetes.default:443"
bearer_token = "/run/secrets/kubernetes.io/serviceaccount/token"
bearer_token_string = "tok"
kubernetes_ca = "/etc/ca.crt"
kubernetes_insecure_skip_tls_verify = false
interval = "10s"
include_loopback = true
l7_per_request = true
l7_max_series = 4096
args = ["--service", "from-args", "--tags", "a=1;b=2", "--hooks", "auto", "--interval=1m30s"]
[inputs.ebpf.tags]
  some_tag = "some_value"
  "quoted key" = "v"
`,
  '[inputs.ebpf]\nenabled_plugins = ["ebpf-bash"]\n',
  '[[inputs.cpu]]\n  percpu = false\n[[inputs.ebpf]]\n  interval = "2s"\n[[inputs.ebpf]]\n  interval = "3s"\n',
  'global = 1\n[[inputs.ebpf]]\ncolour = "blue"\nlog_level = "debug"\nargs = ["--log-level", "warning", "--metrics-listen", "[::1]:9100"]\n',
  "[inputs]\nebpf = [{ interval = '5s', tags = { k = 'v' } }]\n",
];

const TOML_TOKENS = [
  '[[inputs.ebpf]]', '[inputs.ebpf.tags]', '[inputs]', '[[inputs.ebpf.tags]]', '\n', ' = ', '=', '"', "'", '"""', "'''", '[', ']', '{', '}', ',', '.',
  'enabled_plugins', 'args', 'interval', 'tags', 'l7_max_series', 'include_loopback', 'kubernetes_url', 'bearer_token', '"a\\nb"', '"\\u0000"',
  'true', 'false', '1', '-1', '0', '1.5', 'inf', 'nan', '-inf', '0x7fffffffffffffff', '9223372036854775807', '9223372036854775808', '1_000', '1e400',
  '1979-05-27T07:32:00Z', '07:32:00', '"10s"', '"0s"', '"999999h"', '"-1s"', '"ebpf-net"', '"--help"', '"--config"', '"--tags"', '"k=v;host=x"',
  '"\\uD800"', '"\\U0010FFFF"', '"\\U00110000"', '"\\x41"', '#', '\r\n', '\t', '\ufeff', '[['.repeat(50), '['.repeat(3000), '{a='.repeat(500),
  'a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p', '"__proto__"', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
];

const FLAG_WORDS = [
  '--datakit-apiserver', '--hostname', '--log', '--log-level', '--service', '--enabled', '--interval', '--tags', '--include-loopback',
  '--metrics-listen', '--l7-per-request', '--l7-max-series', '--hooks', '--help', '-h', '--version', '--config', '--', '-', '---', '-x', '--nope',
  '-hostname', '--include-loopback=false', '--l7-per-request=maybe', '--interval=', '--tags=',
];

const VALUES = [
  '0.0.0.0:9529', '127.0.0.1:1', '[::1]:9529', '[::1', 'http://x:1', 'host:0', 'host:65536', ':80', 'a:b:c', 'ebpf-net', 'ebpf-net,ebpf-bash', ',',
  'ebpf-bash,,', '10s', '1m30s', '0s', '999h', '1ms', '-1s', '1e3s', '1.5s', 'debug', 'WARNING', 'trace', 'k=v', 'host=x', 'k', '=v', ';;', 'a=b=c',
  '8192', '0', '1048577', '99999999999999999999', 'auto', 'tracepoint', 'kprobe', 'FENTRY', '', ' ', 'true', 'False',
];

function word(rng: Random, list: readonly string[]): string {
  const w = rng.pick(list);
  return rng.chance(0.2) ? w + rng.pick(NASTY_CHARS) + (rng.chance(0.5) ? rng.pick(VALUES) : '') : w;
}

export function generateConfig(rng: Random): ConfigInput {
  const argv: string[] = [];
  for (let n = rng.size(8); n > 0; n--) {
    const flag = word(rng, FLAG_WORDS);
    if (rng.chance(0.3)) argv.push(`${flag}=${word(rng, VALUES)}`);
    else argv.push(flag, ...(rng.chance(0.85) ? [word(rng, VALUES)] : []));
  }
  const env: Record<string, string> = {};
  for (const name of ['ENV_HOSTNAME', 'K8S_URL', 'K8S_BEARER_TOKEN_PATH', 'K8S_BEARER_TOKEN_STRING', 'K8S_CA_PATH', 'K8S_INSECURE_SKIP_TLS_VERIFY']) {
    if (rng.chance(0.1)) env[name] = rng.chance(0.5) ? rng.pick(['https://k:6443', 'true', '0', 'node-1', 'x\ny', '']) : word(rng, VALUES);
  }
  let toml: string | undefined;
  if (rng.chance(0.8)) {
    toml = rng.pick(FILES);
    if (rng.chance(0.9)) toml = mutateText(rng, toml, TOML_TOKENS, FILES, 8, 16384);
  }
  // the file's flags (--help and --version stop everything: rarely)
  return { toml, argv: argv.filter((a) => rng.chance(0.9) || (a !== '--help' && a !== '-h' && a !== '--version')), env };
}

const CONTROL = /[\u0000-\u001f\u007f]/;

function checkConfig(c: Config): void {
  assert.ok(Number.isInteger(c.intervalMs) && c.intervalMs >= MIN_INTERVAL_MS && c.intervalMs <= MAX_INTERVAL_MS, String(c.intervalMs));
  assert.ok(c.enabled.length > 0 && c.enabled.every((p) => PLUGINS.includes(p)) && new Set(c.enabled).size === c.enabled.length);
  assert.ok(c.hostname.trim() !== '' && !CONTROL.test(c.hostname), JSON.stringify(c.hostname));
  assert.ok(c.service.trim() !== '' && !CONTROL.test(c.service));
  for (const [k, v] of Object.entries(c.tags)) {
    assert.ok(k !== '' && !['host', 'service', 'source'].includes(k) && !CONTROL.test(k) && typeof v === 'string' && !CONTROL.test(v), JSON.stringify([k, v]));
  }
  assert.ok(Number.isInteger(c.l7MaxSeries) && c.l7MaxSeries >= 1 && c.l7MaxSeries <= 1 << 20);
  assert.ok(HOOKS_MODES.includes(c.hooks));
  assert.ok(['debug', 'info', 'warn', 'error'].includes(c.logLevel));
  for (const hp of [c.apiServer, c.metricsListen]) if (hp !== undefined) assert.match(hp, /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/);
  if (c.k8s.url !== undefined) {
    const u = new URL(c.k8s.url);
    assert.ok((u.protocol === 'https:' || u.protocol === 'http:') && u.hostname !== '', c.k8s.url);
  }
  for (const w of c.warnings) assert.ok(!/[\r\n]/.test(w), `warning of more than one line: ${JSON.stringify(w)}`);
}

/** Where a thread writes its cases: one file, written again for every case. */
export function configDir(pid = process.pid, thread = threadId): string {
  return path.join(os.tmpdir(), `datakit-ebpf-fuzz-${pid}-${thread}`);
}

let file: string | undefined;
function configFile(): string {
  if (!file) {
    fs.mkdirSync(configDir(), { recursive: true });
    file = path.join(configDir(), 'ebpf.conf');
  }
  return file;
}

/** Removes the file the cases were written to. */
export function removeConfigFile(): void {
  fs.rmSync(configDir(), { recursive: true, force: true });
  file = undefined;
}

export const configTarget: FuzzTarget<ConfigInput> = {
  name: 'config',
  describe: 'ebpf.conf TOML through --config, command lines and the environment: a Config or one UsageError line',
  generate: generateConfig,
  run(input) {
    const argv = [...input.argv];
    if (input.toml !== undefined) {
      const f = configFile();
      fs.writeFileSync(f, input.toml);
      argv.splice(Math.min(argv.length, 2), 0, '--config', f);
    }
    let result: ReturnType<typeof parseConfig>;
    try {
      result = parseConfig(argv, input.env, 'fuzz-host');
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      assert.ok(err.message.length > 0 && !/[\r\n]/.test(err.message), `UsageError of more than one line: ${JSON.stringify(err.message)}`);
      return;
    }
    if (result !== 'help' && result !== 'version') checkConfig(result);
  },
  save: (input) => JSON.stringify(input, null, 1),
  load: (text) => JSON.parse(text) as ConfigInput,
};
