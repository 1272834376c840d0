// Command line, environment and ebpf.conf (SPEC §2): values, precedence and exact messages.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { Config, helpText, parseConfig, parseTags, UsageError } from '../../src/config';

type Env = Record<string, string | undefined>;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-config-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes a temporary config file and returns its path. */
function file(text: string): string {
  const p = path.join(dir, `ebpf-${++fileCount}.conf`);
  fs.writeFileSync(p, text);
  return p;
}

/** A config file holding one [[inputs.ebpf]] table with `body`. */
function ebpfConf(body: string): string {
  return file(`[[inputs.ebpf]]\n${body}\n`);
}

function cfg(argv: string[], env: Env = {}): Config {
  const c = parseConfig(argv, env, 'os-host');
  assert.ok(typeof c === 'object', `expected a Config, got ${String(c)}`);
  return c;
}

function usage(argv: string[], message: string, env: Env = {}): void {
  assert.throws(
    () => parseConfig(argv, env, 'os-host'),
    (e: unknown) => {
      assert.ok(e instanceof UsageError, `not a UsageError: ${String(e)}`);
      assert.equal(e.message, message);
      return true;
    },
  );
}

const DEFAULTS: Config = {
  apiServer: undefined,
  hostname: 'os-host',
  logPath: undefined,
  logLevel: 'info',
  service: 'ebpf',
  enabled: ['ebpf-net'],
  intervalMs: 60_000,
  tags: {},
  includeLoopback: false,
  k8s: { url: undefined, bearerTokenPath: undefined, bearerTokenString: undefined, caPath: undefined, insecureSkipTlsVerify: undefined },
  metricsListen: undefined,
  hooks: 'auto',
  l7PerRequest: false,
  l7MaxSeries: 8192,
  maxConnections: 262_144,
  bufferDir: '/var/lib/datakit-ebpf/buffer',
  bufferMaxBytes: 2 ** 30,
  warnings: [],
};

test('defaults', () => {
  assert.deepEqual(cfg([]), DEFAULTS);
});

describe('flags', () => {
  const every = {
    '--datakit-apiserver': ['0.0.0.0:9529', { apiServer: '0.0.0.0:9529' }],
    '--hostname': ['h1', { hostname: 'h1' }],
    '--log': ['/var/log/x.log', { logPath: '/var/log/x.log' }],
    '--log-level': ['debug', { logLevel: 'debug' }],
    '--service': ['svc', { service: 'svc' }],
    '--enabled': ['ebpf-bash', { enabled: ['ebpf-bash'] }],
    '--interval': ['1m30s', { intervalMs: 90_000 }],
    '--tags': ['a=1;b=2', { tags: { a: '1', b: '2' } }],
    '--metrics-listen': ['127.0.0.1:9100', { metricsListen: '127.0.0.1:9100' }],
    '--buffer-dir': ['/data/buffer', { bufferDir: '/data/buffer' }],
    '--buffer-max-size': ['512MiB', { bufferMaxBytes: 512 * 2 ** 20 }],
  } as const;

  for (const [flag, [value, expected]] of Object.entries(every)) {
    test(`${flag} VALUE and ${flag}=VALUE`, () => {
      assert.deepEqual(cfg([flag, value]), { ...DEFAULTS, ...expected });
      assert.deepEqual(cfg([`${flag}=${value}`]), { ...DEFAULTS, ...expected });
    });
  }

  test('--include-loopback, =true and =false', () => {
    assert.equal(cfg(['--include-loopback']).includeLoopback, true);
    assert.equal(cfg(['--include-loopback=true']).includeLoopback, true);
    assert.equal(cfg(['--include-loopback=FALSE']).includeLoopback, false);
    assert.equal(cfg(['--include-loopback', '--include-loopback=false']).includeLoopback, false);
    usage(['--include-loopback=yes'], '--include-loopback: expected true or false, got "yes"');
    usage(['--include-loopback='], '--include-loopback: expected true or false, got ""');
  });

  test('all together', () => {
    const c = cfg([
      '--datakit-apiserver', '[::1]:9529', '--hostname=h1', '--log', '/tmp/x.log', '--log-level=warn',
      '--service', 'svc', '--enabled', 'ebpf-net,ebpf-bash', '--interval=5s', '--tags', 'a=1',
      '--include-loopback', '--metrics-listen', 'localhost:9100',
    ]);
    assert.deepEqual(c, {
      ...DEFAULTS,
      apiServer: '[::1]:9529',
      hostname: 'h1',
      logPath: '/tmp/x.log',
      logLevel: 'warn',
      service: 'svc',
      enabled: ['ebpf-net', 'ebpf-bash'],
      intervalMs: 5_000,
      tags: { a: '1' },
      includeLoopback: true,
      metricsListen: 'localhost:9100',
    });
  });

  test('a repeated flag: the last one counts', () => {
    assert.equal(cfg(['--service', 'a', '--service', 'b']).service, 'b');
    assert.equal(cfg(['--interval', '5s', '--interval=10s']).intervalMs, 10_000);
  });

  test('--help, -h and --version', () => {
    assert.equal(parseConfig(['--help'], {}, 'h'), 'help');
    assert.equal(parseConfig(['-h'], {}, 'h'), 'help');
    assert.equal(parseConfig(['--version'], {}, 'h'), 'version');
    assert.equal(parseConfig(['--version', '--help'], {}, 'h'), 'help');
    // asked for help: other mistakes do not get in the way
    assert.equal(parseConfig(['--interval', '5x', '--bogus', '--help'], {}, 'h'), 'help');
    assert.equal(parseConfig(['--config', '/nonexistent', '--version'], {}, 'h'), 'version');
    usage(['--help=yes'], '--help: does not take a value');
    usage(['--version=1'], '--version: does not take a value');
    usage(['--', '--help'], 'unexpected argument "--help"');
  });
});

describe('host name: --hostname, else ENV_HOSTNAME, else the OS', () => {
  test('order', () => {
    assert.equal(cfg([]).hostname, 'os-host');
    assert.equal(cfg([], { ENV_HOSTNAME: 'env-host' }).hostname, 'env-host');
    assert.equal(cfg(['--hostname', 'flag-host'], { ENV_HOSTNAME: 'env-host' }).hostname, 'flag-host');
  });

  test('blank ENV_HOSTNAME is unset', () => {
    assert.equal(cfg([], { ENV_HOSTNAME: '' }).hostname, 'os-host');
    assert.equal(cfg([], { ENV_HOSTNAME: '  ' }).hostname, 'os-host');
  });

  test("a --hostname in the config file's args beats ENV_HOSTNAME, the command line beats both", () => {
    const p = ebpfConf('args = ["--hostname", "args-host"]');
    assert.equal(cfg(['--config', p], { ENV_HOSTNAME: 'env-host' }).hostname, 'args-host');
    assert.equal(cfg(['--config', p, '--hostname', 'flag-host'], { ENV_HOSTNAME: 'env-host' }).hostname, 'flag-host');
  });

  test('errors', () => {
    usage(['--hostname', ' '], '--hostname: empty host name');
    usage(['--hostname=a\nb'], '--hostname: host name "a\\nb" contains a control character');
    usage([], 'ENV_HOSTNAME: host name "a\\tb" contains a control character', { ENV_HOSTNAME: 'a\tb' });
  });
});

describe('--log and --service', () => {
  test('errors', () => {
    usage(['--log='], '--log: empty path');
    usage(['--service='], '--service: empty service name');
    usage(['--service', 'a\u0000'], '--service: service name "a\\u0000" contains a control character');
  });
});

describe('--log-level', () => {
  test('levels, any case, and "warning"', () => {
    for (const level of ['debug', 'info', 'warn', 'error'] as const) assert.equal(cfg(['--log-level', level]).logLevel, level);
    assert.equal(cfg(['--log-level', 'DEBUG']).logLevel, 'debug');
    assert.equal(cfg(['--log-level', 'Warning']).logLevel, 'warn');
  });

  test('errors', () => {
    usage(['--log-level', 'loud'], '--log-level: unknown log level "loud" (valid: debug, info, warn, error)');
    usage(['--log-level='], '--log-level: unknown log level "" (valid: debug, info, warn, error)');
  });
});

describe('--enabled', () => {
  test('trimmed, deduplicated, order kept, empty segments skipped', () => {
    assert.deepEqual(cfg(['--enabled', 'ebpf-bash, ebpf-net,ebpf-bash,']).enabled, ['ebpf-bash', 'ebpf-net']);
    assert.deepEqual(cfg(['--enabled', ' ebpf-net ']).enabled, ['ebpf-net']);
  });

  test('errors', () => {
    usage(['--enabled', 'ebpf-net,ebpf-foo'], '--enabled: unknown plugin "ebpf-foo" (valid: ebpf-net, ebpf-bash)');
    usage(['--enabled', 'EBPF-NET'], '--enabled: unknown plugin "EBPF-NET" (valid: ebpf-net, ebpf-bash)');
    usage(['--enabled', ','], '--enabled: no plugin given (valid: ebpf-net, ebpf-bash)');
    usage(['--enabled='], '--enabled: no plugin given (valid: ebpf-net, ebpf-bash)');
  });
});

describe('--hooks', () => {
  test('auto by default; every path by name, any case; from a config file\'s args too', () => {
    assert.equal(cfg([]).hooks, 'auto');
    for (const h of ['auto', 'tracepoint', 'fentry', 'kprobe'] as const) assert.equal(cfg(['--hooks', h]).hooks, h);
    assert.equal(cfg(['--hooks=KPROBE']).hooks, 'kprobe');
    assert.equal(cfg(['--config', ebpfConf('args = ["--hooks", "fentry"]')]).hooks, 'fentry');
  });

  test('errors', () => {
    usage(['--hooks', 'ebpf'], '--hooks: unknown hooks "ebpf" (valid: auto, tracepoint, fentry, kprobe)');
    usage(['--hooks'], '--hooks: missing value');
  });
});

describe('--l7-per-request and --l7-max-series', () => {
  test('flags, config keys, and the command line over the file', () => {
    assert.equal(cfg(['--l7-per-request']).l7PerRequest, true);
    assert.equal(cfg(['--l7-per-request=false']).l7PerRequest, false);
    assert.equal(cfg(['--l7-max-series', '100']).l7MaxSeries, 100);
    const p = ebpfConf('l7_per_request = true\nl7_max_series = 50');
    assert.deepEqual([cfg(['--config', p]).l7PerRequest, cfg(['--config', p]).l7MaxSeries], [true, 50]);
    assert.equal(cfg(['--config', p, '--l7-per-request=false']).l7PerRequest, false);
  });

  test('errors', () => {
    usage(['--l7-max-series', '0'], '--l7-max-series: expected a number of series from 1 to 1048576, got "0"');
    usage(['--l7-max-series', 'many'], '--l7-max-series: expected a number of series from 1 to 1048576, got "many"');
    usage(['--l7-per-request=maybe'], '--l7-per-request: expected true or false, got "maybe"');
  });
});

describe('--max-connections', () => {
  test('flag, config key, and the command line over the file', () => {
    assert.equal(cfg(['--max-connections', '16384']).maxConnections, 16384);
    const p = ebpfConf('max_connections = 1024');
    assert.equal(cfg(['--config', p]).maxConnections, 1024);
    assert.equal(cfg(['--config', p, '--max-connections=4194304']).maxConnections, 4194304);
  });

  test('errors', () => {
    const range = 'expected a number of connections from 1024 to 4194304';
    usage(['--max-connections', '1023'], `--max-connections: ${range}, got "1023"`);
    usage(['--max-connections', '4194305'], `--max-connections: ${range}, got "4194305"`);
    usage(['--max-connections', '1e5'], `--max-connections: ${range}, got "1e5"`);
    const p = ebpfConf('max_connections = "lots"');
    assert.throws(() => cfg(['--config', p]), /max_connections.*an integer/);
  });
});

describe('--buffer-dir and --buffer-max-size', () => {
  test('sizes: bytes, binary and SI units, any case, a fraction', () => {
    const size = (v: string) => cfg(['--buffer-max-size', v]).bufferMaxBytes;
    assert.equal(size('2GiB'), 2 * 2 ** 30);
    assert.equal(size('512mib'), 512 * 2 ** 20);
    assert.equal(size('1536KiB'), 1536 * 1024);
    assert.equal(size('1TiB'), 2 ** 40);
    assert.equal(size('5MB'), 5_000_000);
    assert.equal(size('2gb'), 2e9);
    assert.equal(size('1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(size('1048576'), 1048576);
    assert.equal(size('3000000B'), 3_000_000);
    assert.equal(size(' 64 MiB '), 64 * 2 ** 20);
  });

  test('config keys, args, and the command line over the file', () => {
    const p = ebpfConf('buffer_dir = "/srv/buf"\nbuffer_max_size = "2GiB"');
    assert.deepEqual([cfg(['--config', p]).bufferDir, cfg(['--config', p]).bufferMaxBytes], ['/srv/buf', 2 * 2 ** 30]);
    const bytes = ebpfConf('buffer_max_size = 10485760');
    assert.equal(cfg(['--config', bytes]).bufferMaxBytes, 10 * 2 ** 20);
    const args = ebpfConf('buffer_dir = "/srv/buf"\nargs = ["--buffer-dir", "/srv/args", "--buffer-max-size=8MiB"]');
    assert.deepEqual([cfg(['--config', args]).bufferDir, cfg(['--config', args]).bufferMaxBytes], ['/srv/args', 8 * 2 ** 20]);
    assert.equal(cfg(['--config', p, '--buffer-max-size', '1GB']).bufferMaxBytes, 1e9);
    assert.equal(cfg(['--config', p, '--buffer-dir', 'rel/dir']).bufferDir, 'rel/dir');
  });

  test('errors', () => {
    const expected = '(bytes, KiB, MiB, GiB, TiB, KB, MB, GB, TB)';
    usage(['--buffer-max-size', '5x'], `--buffer-max-size: expected a size such as 512MiB or 2GiB ${expected}, got "5x"`);
    usage(['--buffer-max-size', '1G'], `--buffer-max-size: expected a size such as 512MiB or 2GiB ${expected}, got "1G"`);
    usage(['--buffer-max-size=-1MiB'], `--buffer-max-size: expected a size such as 512MiB or 2GiB ${expected}, got "-1MiB"`);
    usage(['--buffer-max-size='], `--buffer-max-size: expected a size such as 512MiB or 2GiB ${expected}, got ""`);
    usage(['--buffer-max-size', '100KiB'], '--buffer-max-size: "100KiB" is below the minimum of 1MiB');
    usage(['--buffer-max-size', '0'], '--buffer-max-size: "0" is below the minimum of 1MiB');
    usage(['--buffer-dir='], '--buffer-dir: empty path');
    usage(['--buffer-dir'], '--buffer-dir: missing value');
    const p = ebpfConf('buffer_max_size = "lots"');
    usage(['--config', p], `config ${p}: inputs.ebpf.buffer_max_size: expected a size such as 512MiB or 2GiB ${expected}, got "lots"`);
    const f = ebpfConf('buffer_max_size = 1.5');
    usage(['--config', f], `config ${f}: inputs.ebpf.buffer_max_size: expected a size such as "512MiB", or an integer of bytes, got float`);
    const d = ebpfConf('buffer_dir = 3');
    usage(['--config', d], `config ${d}: inputs.ebpf.buffer_dir: expected a string, got integer`);
    const e = ebpfConf('buffer_dir = ""');
    usage(['--config', e], `config ${e}: inputs.ebpf.buffer_dir: empty path`);
  });
});

describe('--interval', () => {
  test('bounds: 1s to 24h', () => {
    assert.equal(cfg(['--interval', '1s']).intervalMs, 1_000);
    assert.equal(cfg(['--interval', '1000ms']).intervalMs, 1_000);
    assert.equal(cfg(['--interval', '24h']).intervalMs, 86_400_000);
    assert.equal(cfg(['--interval', '1.5s']).intervalMs, 1_500);
  });

  test('errors', () => {
    usage(['--interval', '5x'], '--interval: invalid duration "5x": unknown unit "x"; use ns, us, ms, s, m or h');
    usage(['--interval', '10'], '--interval: invalid duration "10": missing unit after "10"; use ns, us, ms, s, m or h');
    usage(['--interval='], '--interval: invalid duration "": empty');
    usage(['--interval=-5s'], '--interval: invalid duration "-5s": must not be negative');
    usage(['--interval', '0s'], '--interval: invalid duration "0s": must be greater than zero');
    usage(['--interval', '999ms'], '--interval: "999ms" is shorter than the minimum of 1s');
    usage(['--interval', '24h1ns'], '--interval: "24h1ns" is longer than the maximum of 24h');
  });
});

describe('--tags', () => {
  test('parsing', () => {
    assert.deepEqual(cfg(['--tags', ' a = 1 ;; b=two words ;']).tags, { a: '1', b: 'two words' });
    assert.deepEqual(cfg(['--tags', 'url=http://x/?q=1']).tags, { url: 'http://x/?q=1' }); // "=" in a value
    assert.deepEqual(cfg(['--tags', 'empty=']).tags, { empty: '' }); // the output leaves it out
    assert.deepEqual(cfg(['--tags', '']).tags, {});
    assert.deepEqual(cfg(['--tags', 'a=1;a=2']).tags, { a: '2' });
    assert.deepEqual(parseTags('x=1; y = 2'), { x: '1', y: '2' });
  });

  test('repeated --tags merge, the later wins per key', () => {
    assert.deepEqual(cfg(['--tags', 'a=1;b=1', '--tags', 'b=2;c=2']).tags, { a: '1', b: '2', c: '2' });
  });

  test('errors', () => {
    usage(['--tags', 'a=1;nokey'], '--tags: "nokey" is not key=value');
    usage(['--tags', '=v'], '--tags: empty tag key');
    usage(['--tags', ' = v'], '--tags: empty tag key');
    usage(['--tags', 'a=1\nb'], '--tags: tag "a" contains a control character');
  });

  test('tags the collector sets itself are refused', () => {
    usage(['--tags', 'host=x'], '--tags: tag "host" is set by the collector itself; use --hostname');
    usage(['--tags', 'a=1;service=x'], '--tags: tag "service" is set by the collector itself; use --service');
    usage(['--tags', 'source=x'], '--tags: tag "source" is set by the collector itself; it names the kind of data');
    // only exact names: these are ordinary tags
    assert.deepEqual(cfg(['--tags', 'Host=x;hostname=y']).tags, { Host: 'x', hostname: 'y' });
  });
});

describe('HOST:PORT (--datakit-apiserver, --metrics-listen)', () => {
  test('accepted as given', () => {
    for (const v of ['localhost:9529', '127.0.0.1:1', '0.0.0.0:65535', '[::1]:9529', '[fe80::1]:80', 'dk_1.svc.local:9529']) {
      assert.equal(cfg(['--datakit-apiserver', v]).apiServer, v);
      assert.equal(cfg(['--metrics-listen', v]).metricsListen, v);
    }
  });

  test('errors', () => {
    const f = '--datakit-apiserver';
    usage([f, 'localhost'], `${f}: expected HOST:PORT, got "localhost"`);
    usage([f, 'h:'], `${f}: expected HOST:PORT, got "h:"`);
    usage([f, 'h:http'], `${f}: expected HOST:PORT, got "h:http"`);
    usage([f, 'h:-1'], `${f}: expected HOST:PORT, got "h:-1"`);
    usage([f, 'h:0'], `${f}: port 0 out of range 1-65535 in "h:0"`);
    usage([f, 'h:65536'], `${f}: port 65536 out of range 1-65535 in "h:65536"`);
    usage([f, ':9529'], `${f}: missing host in ":9529"`);
    usage([f, '::1:9529'], `${f}: IPv6 addresses need brackets, e.g. [::1]:9529, got "::1:9529"`);
    usage([f, '[zz]:9529'], `${f}: invalid IPv6 address "zz" in "[zz]:9529"`);
    usage([f, '[127.0.0.1]:9529'], `${f}: invalid IPv6 address "127.0.0.1" in "[127.0.0.1]:9529"`);
    usage([f, 'http://h:9529'], `${f}: expected HOST:PORT without a scheme, got "http://h:9529"`);
    usage([f, 'a b:1'], `${f}: invalid host "a b" in "a b:1"`);
    usage([f, 'h/x:1'], `${f}: invalid host "h/x" in "h/x:1"`);
    usage([f, '-h:1'], `${f}: missing value`); // a separate value starting with "-" reads as a flag
    usage([`${f}=-h:1`], `${f}: invalid host "-h" in "-h:1"`);
    usage(['--metrics-listen', '9100'], '--metrics-listen: expected HOST:PORT, got "9100"');
  });
});

describe('command line syntax', () => {
  test('unknown flags', () => {
    usage(['--bogus'], 'unknown flag --bogus');
    usage(['--bogus=1'], 'unknown flag --bogus');
    usage(['--Hostname', 'x'], 'unknown flag --Hostname');
    usage(['-x'], 'unknown flag -x');
    usage(['-hostname', 'x'], 'unknown flag -hostname (did you mean --hostname?)');
    usage(['-interval=5s'], 'unknown flag -interval (did you mean --interval?)');
    usage(['-hv'], 'unknown flag -hv');
  });

  test('missing values', () => {
    usage(['--interval'], '--interval: missing value');
    usage(['--hostname', '--service', 's'], '--hostname: missing value');
    usage(['--tags', '-x'], '--tags: missing value');
    usage(['--config'], '--config: missing value');
  });

  test('positional arguments', () => {
    usage(['stray'], 'unexpected argument "stray"');
    usage(['--service', 's', 'stray'], 'unexpected argument "stray"');
    usage(['--include-loopback', 'true'], 'unexpected argument "true"');
    usage(['-'], 'unexpected argument "-"');
    usage(['--', 'x'], 'unexpected argument "x"');
    // a lone "--" with nothing after it is harmless
    assert.deepEqual(cfg(['--']), DEFAULTS);
  });

  test('UsageError messages are one line', () => {
    assert.equal(new UsageError('a\nb\r\n  c').message, 'a b c');
  });
});

// The `ebpf.conf.sample` of the seed document, verbatim (with its comments and trailing spaces).
const SEED_SAMPLE = `
[[inputs.ebpf]]
  daemon = true
  name = 'ebpf'
  cmd = "/usr/local/datakit/externals/datakit-ebpf"
  args = [
    "--datakit-apiserver", "0.0.0.0:9529",
  ]
  envs = []

  ## automatically takes effect when running DataKit in 
  ## Kubernetes daemonset mode
  ##
  # kubernetes_url = "https://kubernetes.default:443"
  # bearer_token = "/run/secrets/kubernetes.io/serviceaccount/token"
  # or # bearer_token_string = "<your-token-string>"
  
  ## all supported plugins:
  ## - "ebpf-net"  :
  ##     contains L4-network, dns collection
  ## - "ebpf-bash" :
  ##     log bash
  ##
  enabled_plugins = [
    "ebpf-net",
  ]

  [inputs.ebpf.tags]
    # some_tag = "some_value"
    # more_tag = "some_other_value"

#############################
# 参数说明(若标 * 为必选项)
#############################
#  --hostname               : 主机名，此参数可改变该采集器上传数据时 host tag 的值, 优先级为: 指定该参数 > datakit.conf 中的 ENV_HOSTNAME 值(若非空，启动时自动添加该参数) > 采集器自行获取(默认值)
#  --datakit-apiserver      : DataKit API Server 地址, 默认值 0.0.0.0:9529
#  --log                    : 日志输出路径, 默认值 DataKitInstallDir/externals/datakit-ebpf.log
#  --log-level              : 日志级别，默认 info
#  --service                : 默认值 ebpf

`;

describe('--config', () => {
  test("the seed's ebpf.conf.sample", () => {
    const p = file(SEED_SAMPLE);
    const c = cfg(['--config', p]);
    assert.deepEqual(c, { ...DEFAULTS, apiServer: '0.0.0.0:9529', enabled: ['ebpf-net'] });
  });

  test("the seed's sample with ebpf-bash added, as the seed suggests", () => {
    const p = file(SEED_SAMPLE.replace('"ebpf-net",\n', '"ebpf-net",\n    "ebpf-bash",\n'));
    assert.deepEqual(cfg(['--config', p]).enabled, ['ebpf-net', 'ebpf-bash']);
  });

  test('every key', () => {
    const p = ebpfConf(`
enabled_plugins = ["ebpf-bash", "ebpf-net", "ebpf-bash"]
kubernetes_url = "https://kubernetes.default:443"
bearer_token = "/run/secrets/kubernetes.io/serviceaccount/token"
interval = "10s"
include_loopback = true
args = ["--service", "from-args"]
[inputs.ebpf.tags]
  some_tag = "some_value"
  "quoted key" = "v"
`);
    assert.deepEqual(cfg(['--config', p]), {
      ...DEFAULTS,
      service: 'from-args',
      enabled: ['ebpf-bash', 'ebpf-net'],
      intervalMs: 10_000,
      tags: { some_tag: 'some_value', 'quoted key': 'v' },
      includeLoopback: true,
      k8s: {
        url: 'https://kubernetes.default:443',
        bearerTokenPath: '/run/secrets/kubernetes.io/serviceaccount/token',
        bearerTokenString: undefined,
        caPath: undefined,
        insecureSkipTlsVerify: undefined,
      },
    });
    assert.deepEqual(cfg([`--config=${ebpfConf('bearer_token_string = "tok"')}`]).k8s.bearerTokenString, 'tok');
  });

  test('a plain [inputs.ebpf] table', () => {
    const p = file('[inputs.ebpf]\nenabled_plugins = ["ebpf-bash"]\n');
    assert.deepEqual(cfg(['--config', p]).enabled, ['ebpf-bash']);
  });

  test('several [[inputs.ebpf]] tables: the first is used, with a warning', () => {
    const p = file('[[inputs.ebpf]]\ninterval = "2s"\n[[inputs.ebpf]]\ninterval = "3s"\n');
    const c = cfg(['--config', p]);
    assert.equal(c.intervalMs, 2_000);
    assert.deepEqual(c.warnings, [`config ${p}: 2 [[inputs.ebpf]] tables, only the first is used`]);
  });

  test("other inputs and DataKit's own keys are ignored silently", () => {
    const p = file(`
[[inputs.cpu]]
  percpu = false
[[inputs.ebpf]]
  daemon = true
  name = "ebpf"
  cmd = "/usr/local/datakit/externals/datakit-ebpf"
  envs = ["A=1"]
`);
    assert.deepEqual(cfg(['--config', p]), DEFAULTS);
  });

  test('unknown keys are warnings', () => {
    const p = file('global = 1\n[[inputs.ebpf]]\ncolour = "blue"\nlog_level = "debug"\n');
    assert.deepEqual(cfg(['--config', p]).warnings, [
      `config ${p}: unknown key global ignored`,
      `config ${p}: unknown key inputs.ebpf.colour ignored`,
      `config ${p}: unknown key inputs.ebpf.log_level ignored`,
    ]);
  });

  test('empty kubernetes_url and tokens mean "not set"', () => {
    const p = ebpfConf('kubernetes_url = ""\nbearer_token = ""\nbearer_token_string = ""');
    assert.deepEqual(cfg(['--config', p], { K8S_URL: 'https://env:6443', K8S_BEARER_TOKEN_PATH: '/env/token' }).k8s, {
      url: 'https://env:6443',
      bearerTokenPath: '/env/token',
      bearerTokenString: undefined,
      caPath: undefined,
      insecureSkipTlsVerify: undefined,
    });
  });
});

describe('precedence: defaults < environment < config keys < config args < command line', () => {
  const conf = () =>
    ebpfConf(`
enabled_plugins = ["ebpf-bash"]
interval = "10s"
include_loopback = true
args = ["--interval", "20s", "--service", "from-args", "--tags", "b=args;c=args", "--enabled", "ebpf-net,ebpf-bash"]
[inputs.ebpf.tags]
a = "file"
b = "file"
c = "file"
`);

  test('config args over config keys', () => {
    const c = cfg(['--config', conf()]);
    assert.equal(c.intervalMs, 20_000);
    assert.equal(c.service, 'from-args');
    assert.deepEqual(c.enabled, ['ebpf-net', 'ebpf-bash']);
    assert.equal(c.includeLoopback, true);
    assert.deepEqual(c.tags, { a: 'file', b: 'args', c: 'args' });
  });

  test('command line over both, tags merged per key', () => {
    const c = cfg([
      '--interval', '30s', '--config', conf(), '--tags', 'c=flag;d=flag', '--enabled', 'ebpf-bash', '--include-loopback=false',
    ]);
    assert.equal(c.intervalMs, 30_000);
    assert.equal(c.service, 'from-args');
    assert.deepEqual(c.enabled, ['ebpf-bash']);
    assert.equal(c.includeLoopback, false);
    assert.deepEqual(c.tags, { a: 'file', b: 'args', c: 'flag', d: 'flag' });
  });

  test('the command line wins over config args for every flag', () => {
    const p = ebpfConf(`args = [
  "--datakit-apiserver", "a:1", "--hostname", "a", "--log", "/a", "--log-level", "debug", "--service", "a",
  "--enabled", "ebpf-bash", "--interval", "2s", "--tags", "t=a", "--include-loopback", "--metrics-listen", "a:2",
]`);
    assert.deepEqual(
      cfg([
        '--config', p, '--datakit-apiserver', 'b:1', '--hostname', 'b', '--log', '/b', '--log-level', 'error',
        '--service', 'b', '--enabled', 'ebpf-net', '--interval', '3s', '--tags', 't=b', '--include-loopback=false',
        '--metrics-listen', 'b:2',
      ]),
      {
        ...DEFAULTS,
        apiServer: 'b:1',
        hostname: 'b',
        logPath: '/b',
        logLevel: 'error',
        service: 'b',
        enabled: ['ebpf-net'],
        intervalMs: 3_000,
        tags: { t: 'b' },
        includeLoopback: false,
        metricsListen: 'b:2',
      },
    );
  });

  test('Kubernetes: the environment alone', () => {
    const env = { K8S_URL: 'https://env:6443', K8S_BEARER_TOKEN_PATH: '/env/token', K8S_BEARER_TOKEN_STRING: 'env-tok' };
    assert.deepEqual(cfg([], env).k8s, { url: 'https://env:6443', bearerTokenPath: '/env/token', bearerTokenString: 'env-tok', caPath: undefined, insecureSkipTlsVerify: undefined });
    assert.deepEqual(cfg([], { K8S_URL: '', K8S_BEARER_TOKEN_STRING: ' ' }).k8s, DEFAULTS.k8s);
  });

  test('Kubernetes: the config file over the environment; the token is one setting', () => {
    const env = { K8S_URL: 'https://env:6443', K8S_BEARER_TOKEN_STRING: 'env-tok' };
    const p = ebpfConf('kubernetes_url = "https://file:443"\nbearer_token = "/file/token"');
    // the file's bearer_token replaces the environment's token string: no stale token survives
    assert.deepEqual(cfg(['--config', p], env).k8s, { url: 'https://file:443', bearerTokenPath: '/file/token', bearerTokenString: undefined, caPath: undefined, insecureSkipTlsVerify: undefined });
    // a file without k8s keys leaves the environment alone
    assert.deepEqual(cfg(['--config', ebpfConf('')], env).k8s, { url: 'https://env:6443', bearerTokenPath: undefined, bearerTokenString: 'env-tok', caPath: undefined, insecureSkipTlsVerify: undefined });
    // both forms in one source: both kept
    const both = ebpfConf('bearer_token = "/p"\nbearer_token_string = "s"');
    assert.deepEqual(cfg(['--config', both]).k8s, { url: undefined, bearerTokenPath: '/p', bearerTokenString: 's', caPath: undefined, insecureSkipTlsVerify: undefined });
  });

  test('Kubernetes TLS: CA bundle and skipping verification, from the environment or the file', () => {
    const env = { K8S_CA_PATH: '/env/ca.crt', K8S_INSECURE_SKIP_TLS_VERIFY: 'true' };
    assert.deepEqual(cfg([], env).k8s, { url: undefined, bearerTokenPath: undefined, bearerTokenString: undefined, caPath: '/env/ca.crt', insecureSkipTlsVerify: true });
    const p = ebpfConf('kubernetes_ca = "/file/ca.crt"\nkubernetes_insecure_skip_tls_verify = false');
    assert.deepEqual(cfg(['--config', p], env).k8s, { url: undefined, bearerTokenPath: undefined, bearerTokenString: undefined, caPath: '/file/ca.crt', insecureSkipTlsVerify: false });
    usage([], 'K8S_INSECURE_SKIP_TLS_VERIFY: expected true or false, got "yes"', { K8S_INSECURE_SKIP_TLS_VERIFY: 'yes' });
    const bad = ebpfConf('kubernetes_insecure_skip_tls_verify = "true"');
    usage(['--config', bad], `config ${bad}: inputs.ebpf.kubernetes_insecure_skip_tls_verify: expected true or false, got string`);
  });

  test('Kubernetes URL errors name their source; only the URL in effect is checked', () => {
    usage([], 'K8S_URL: expected an http(s) URL, got "kubernetes.default"', { K8S_URL: 'kubernetes.default' });
    const p = ebpfConf('kubernetes_url = "ftp://k8s"');
    usage(['--config', p], `config ${p}: inputs.ebpf.kubernetes_url: expected an http(s) URL, got "ftp://k8s"`);
    const good = ebpfConf('kubernetes_url = "http://k8s:8080"');
    assert.equal(cfg(['--config', good], { K8S_URL: 'garbage' }).k8s.url, 'http://k8s:8080');
  });
});

describe('config file errors: one line naming the file and the key', () => {
  const where = (p: string) => `config ${p}`;

  test('unreadable file', () => {
    const missing = path.join(dir, 'missing.conf');
    usage(['--config', missing], `config ${missing}: cannot read: no such file or directory`);
    usage(['--config', dir], `config ${dir}: cannot read: illegal operation on a directory`);
    usage(['--config='], '--config: empty path');
  });

  test('malformed TOML', () => {
    const p = file('[[inputs.ebpf]\n');
    usage(['--config', p], `${where(p)}: invalid TOML at line 1, column 15: expected end of table array declaration`);
    const q = file('[[inputs.ebpf]]\ninterval = 5s\n');
    assert.throws(
      () => parseConfig(['--config', q], {}, 'h'),
      (e: unknown) => e instanceof UsageError && e.message.startsWith(`${where(q)}: invalid TOML at line 2, column `) && !e.message.includes('\n'),
    );
  });

  test('no ebpf table', () => {
    const p = file('[[inputs.cpu]]\n');
    usage(['--config', p], `${where(p)}: no [[inputs.ebpf]] table`);
    const empty = file('');
    usage(['--config', empty], `${where(empty)}: no [[inputs.ebpf]] table`);
    const scalar = file('inputs = 1\n');
    usage(['--config', scalar], `${where(scalar)}: no [[inputs.ebpf]] table`);
    const notTable = file('[inputs]\nebpf = "x"\n');
    usage(['--config', notTable], `${where(notTable)}: inputs.ebpf: expected a table, got string`);
  });

  const cases: [body: string, problem: string][] = [
    ['enabled_plugins = "ebpf-net"', 'inputs.ebpf.enabled_plugins: expected an array of strings, got string'],
    ['enabled_plugins = ["ebpf-net", 1]', 'inputs.ebpf.enabled_plugins[1]: expected a string, got integer'],
    ['enabled_plugins = ["ebpf-foo"]', 'inputs.ebpf.enabled_plugins: unknown plugin "ebpf-foo" (valid: ebpf-net, ebpf-bash)'],
    ['enabled_plugins = []', 'inputs.ebpf.enabled_plugins: no plugin given (valid: ebpf-net, ebpf-bash)'],
    ['tags = "a=1"', 'inputs.ebpf.tags: expected a table, got string'],
    ['tags = { a = 1 }', 'inputs.ebpf.tags.a: expected a string, got integer'],
    ['tags = { a = { b = "c" } }', 'inputs.ebpf.tags.a: expected a string, got table'],
    ['tags = { host = "x" }', 'inputs.ebpf.tags: tag "host" is set by the collector itself; use --hostname'],
    ['tags = { "" = "x" }', 'inputs.ebpf.tags: empty tag key'],
    ['tags = { a = "1\\n2" }', 'inputs.ebpf.tags: tag "a" contains a control character'],
    ['kubernetes_url = 443', 'inputs.ebpf.kubernetes_url: expected a string, got integer'],
    ['bearer_token = true', 'inputs.ebpf.bearer_token: expected a string, got boolean'],
    ['bearer_token_string = ["x"]', 'inputs.ebpf.bearer_token_string: expected a string, got array'],
    ['interval = "5x"', 'inputs.ebpf.interval: invalid duration "5x": unknown unit "x"; use ns, us, ms, s, m or h'],
    ['interval = 10', 'inputs.ebpf.interval: expected a duration string such as "10s", got integer'],
    ['interval = 1.5', 'inputs.ebpf.interval: expected a duration string such as "10s", got float'],
    ['interval = 1979-05-27T07:32:00Z', 'inputs.ebpf.interval: expected a duration string such as "10s", got date-time'],
    ['interval = "100ms"', 'inputs.ebpf.interval: "100ms" is shorter than the minimum of 1s'],
    ['include_loopback = "yes"', 'inputs.ebpf.include_loopback: expected true or false, got string'],
    ['args = "--interval 5s"', 'inputs.ebpf.args: expected an array of strings, got string'],
    ['args = [1]', 'inputs.ebpf.args[0]: expected a string, got integer'],
    ['args = ["--interval", "zz"]', 'inputs.ebpf.args: --interval: invalid duration "zz": expected a number followed by a unit, e.g. 5s or 1m30s'],
    ['args = ["--interval"]', 'inputs.ebpf.args: --interval: missing value'],
    ['args = ["--bogus"]', 'inputs.ebpf.args: unknown flag --bogus'],
    ['args = ["--datakit-apiserver", "0.0.0.0:9529", "extra"]', 'inputs.ebpf.args: unexpected argument "extra"'],
    ['args = ["--config", "/x"]', 'inputs.ebpf.args: --config is not allowed inside a config file'],
    ['args = ["--help"]', 'inputs.ebpf.args: --help is not allowed inside a config file'],
    ['args = ["--version"]', 'inputs.ebpf.args: --version is not allowed inside a config file'],
    ['args = ["--tags", "service=x"]', 'inputs.ebpf.args: --tags: tag "service" is set by the collector itself; use --service'],
    ['args = ["--datakit-apiserver", "0.0.0.0"]', 'inputs.ebpf.args: --datakit-apiserver: expected HOST:PORT, got "0.0.0.0"'],
  ];
  for (const [body, problem] of cases) {
    test(body, () => {
      const p = ebpfConf(body);
      usage(['--config', p], `${where(p)}: ${problem}`);
    });
  }

  test('the file is checked even when the command line overrides the bad key', () => {
    const p = ebpfConf('interval = "5x"');
    usage(['--config', p, '--interval', '5s'], `${where(p)}: inputs.ebpf.interval: invalid duration "5x": unknown unit "x"; use ns, us, ms, s, m or h`);
  });
});

test('helpText lists every flag with its default, and the environment', () => {
  const text = helpText();
  const flags = [
    '--datakit-apiserver', '--hostname', '--log', '--log-level', '--service', '--enabled', '--interval', '--tags',
    '--config', '--include-loopback', '--metrics-listen', '--hooks', '--l7-per-request', '--l7-max-series',
    '--max-connections', '--buffer-dir', '--buffer-max-size',
  ];
  const lines = text.split('\n');
  for (const flag of flags) {
    const line = lines.find((l) => l.trimStart().startsWith(`${flag} `) || l.trimStart() === flag);
    assert.ok(line, `help has a line for ${flag}`);
    assert.match(line, /\(default: [^)]+\)/, `help gives the default of ${flag}`);
  }
  assert.match(text, /-h, --help/);
  assert.match(text, /--version/);
  for (const name of ['ENV_HOSTNAME', 'K8S_URL', 'K8S_BEARER_TOKEN_PATH', 'K8S_BEARER_TOKEN_STRING']) assert.ok(text.includes(name), name);
  assert.ok(lines.every((l) => l.length <= 120), 'help lines fit a terminal');
});

describe('loadConfigOrExit (as the executable uses it)', () => {
  const indexJs = path.join(__dirname, '..', '..', 'src', 'config', 'index.js');
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };

  function run(argv: string[], env: Env = {}) {
    const script = `const c = require(${JSON.stringify(indexJs)}).loadConfigOrExit(${JSON.stringify(argv)}, ${JSON.stringify(env)});
process.stdout.write(JSON.stringify(c));`;
    return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
  }

  test('--help: the help text on stdout, exit 0', () => {
    const r = run(['--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, helpText());
    assert.equal(r.stderr, '');
  });

  test('--version: the package version, the commit built, Node.js and libbpf on stdout, exit 0', () => {
    const r = run(['--version']);
    assert.equal(r.status, 0, r.stderr);
    const repo = path.join(__dirname, '..', '..', '..');
    const git = (...args: string[]) => spawnSync('git', ['-C', repo, ...args], { encoding: 'utf8' }).stdout.trim();
    const commit = git('rev-parse', 'HEAD') + (git('status', '--porcelain', '--untracked-files=no') ? '-dirty' : '');
    assert.match(commit, /^[0-9a-f]{40}(-dirty)?$/);
    const { libbpfVersion } = require('../../src/bpf/native') as typeof import('../../src/bpf/native');
    assert.match(libbpfVersion(), /^v1\.\d+$/);
    assert.equal(r.stdout, `datakit-ebpf ${pkg.version}\ncommit: ${commit}\nnode: ${process.version}\nlibbpf: ${libbpfVersion()}\n`);
    assert.equal(r.stderr, '');
  });

  test('a usage error: exactly one line on stderr, nothing on stdout, exit 2', () => {
    const r = run(['--interval', '5x']);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'datakit-ebpf: --interval: invalid duration "5x": unknown unit "x"; use ns, us, ms, s, m or h\n');
    const p = ebpfConf('interval = "5x"');
    const f = run(['--config', p]);
    assert.equal(f.status, 2);
    assert.equal(f.stderr, `datakit-ebpf: config ${p}: inputs.ebpf.interval: invalid duration "5x": unknown unit "x"; use ns, us, ms, s, m or h\n`);
  });

  test('valid input: the configuration, with the OS host name', () => {
    const r = run(['--service', 'svc'], { ENV_HOSTNAME: 'env-host' });
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout) as Config;
    assert.equal(c.service, 'svc');
    assert.equal(c.hostname, 'env-host');
    assert.equal((JSON.parse(run([]).stdout) as Config).hostname, os.hostname());
  });
});
