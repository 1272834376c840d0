import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { Config, parseConfig, parseDuration, UsageError } from '../../src/config';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-config-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

function cfg(argv: string[], env: Record<string, string> = {}): Config {
  const c = parseConfig(argv, env, 'os-host');
  assert.ok(typeof c === 'object');
  return c;
}

function usage(argv: string[], message: string): void {
  assert.throws(() => parseConfig(argv, {}, 'os-host'), (e: unknown) => e instanceof UsageError && e.message === message);
}

test('defaults', () => {
  assert.deepEqual(cfg([]), {
    apiServer: undefined,
    hostname: 'os-host',
    logPath: undefined,
    logLevel: 'info',
    service: 'ebpf',
    enabled: ['ebpf-net'],
    intervalMs: 60000,
    tags: {},
    includeLoopback: false,
    k8s: { url: undefined, bearerTokenPath: undefined, bearerTokenString: undefined },
    metricsListen: undefined,
    warnings: [],
  });
});

test('every flag, in both forms', () => {
  const c = cfg([
    '--datakit-apiserver', '0.0.0.0:9529', '--hostname=h1', '--log', '/tmp/x.log', '--log-level=debug',
    '--service', 'svc', '--enabled', 'ebpf-net, ebpf-bash,ebpf-net', '--interval=1m30s', '--tags', 'a=1; b = two ;',
    '--include-loopback', '--metrics-listen', '[::1]:9100',
  ]);
  assert.equal(c.apiServer, '0.0.0.0:9529');
  assert.equal(c.hostname, 'h1');
  assert.equal(c.logPath, '/tmp/x.log');
  assert.equal(c.logLevel, 'debug');
  assert.equal(c.service, 'svc');
  assert.deepEqual(c.enabled, ['ebpf-net', 'ebpf-bash']);
  assert.equal(c.intervalMs, 90000);
  assert.deepEqual(c.tags, { a: '1', b: 'two' });
  assert.equal(c.includeLoopback, true);
  assert.equal(c.metricsListen, '[::1]:9100');
  assert.equal(parseConfig(['--help'], {}, 'h'), 'help');
  assert.equal(parseConfig(['-h'], {}, 'h'), 'help');
  assert.equal(parseConfig(['--version'], {}, 'h'), 'version');
});

test('host name: --hostname, else ENV_HOSTNAME, else the OS', () => {
  assert.equal(cfg([], { ENV_HOSTNAME: 'env-host' }).hostname, 'env-host');
  assert.equal(cfg(['--hostname', 'flag-host'], { ENV_HOSTNAME: 'env-host' }).hostname, 'flag-host');
  assert.equal(cfg([], { ENV_HOSTNAME: '' }).hostname, 'os-host');
});

// The sample of the seed document, as DataKit ships it.
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
`;

test("the seed's ebpf.conf.sample", () => {
  const c = cfg(['--config', file('sample.conf', SEED_SAMPLE)]);
  assert.equal(c.apiServer, '0.0.0.0:9529');
  assert.deepEqual(c.enabled, ['ebpf-net']);
  assert.deepEqual(c.tags, {});
  assert.deepEqual(c.warnings, []);
});

test('precedence: env < config keys < config args < flags', () => {
  const p = file(
    'full.conf',
    `[[inputs.ebpf]]
enabled_plugins = ["ebpf-bash"]
interval = "10s"
include_loopback = true
kubernetes_url = "https://k8s.example:6443"
bearer_token = "/var/run/token"
args = ["--interval", "20s", "--service", "from-args", "--tags", "b=args"]
colour = "blue"
[inputs.ebpf.tags]
a = "file"
b = "file"
`,
  );
  const c = cfg(['--config', p], { K8S_URL: 'https://env:443', K8S_BEARER_TOKEN_STRING: 'tok' });
  assert.deepEqual(c.enabled, ['ebpf-bash']);
  assert.equal(c.intervalMs, 20000);
  assert.equal(c.service, 'from-args');
  assert.equal(c.includeLoopback, true);
  assert.deepEqual(c.tags, { a: 'file', b: 'args' });
  assert.deepEqual(c.k8s, { url: 'https://k8s.example:6443', bearerTokenPath: '/var/run/token', bearerTokenString: 'tok' });
  assert.deepEqual(c.warnings, [`config ${p}: unknown key inputs.ebpf.colour ignored`]);

  const f = cfg(['--config', p, '--interval', '30s', '--tags', 'a=flag', '--enabled', 'ebpf-net']);
  assert.equal(f.intervalMs, 30000);
  assert.deepEqual(f.tags, { a: 'flag', b: 'args' });
  assert.deepEqual(f.enabled, ['ebpf-net']);
});

test('bad flags: one line naming the flag', () => {
  usage(['--interval', '5x'], '--interval: invalid duration "5x"');
  usage(['--interval', '500ms'], '--interval: "500ms" is shorter than the minimum of 1s');
  usage(['--interval', '10'], '--interval: duration "10" needs a unit (ns, us, ms, s, m, h)');
  usage(['--enabled', 'ebpf-net,ebpf-foo'], '--enabled: unknown plugin "ebpf-foo" (valid: ebpf-net, ebpf-bash)');
  usage(['--enabled', ','], '--enabled: no plugin enabled (valid: ebpf-net, ebpf-bash)');
  usage(['--log-level', 'loud'], '--log-level: unknown log level "loud" (debug, info, warn, error)');
  usage(['--datakit-apiserver', 'localhost'], '--datakit-apiserver: expected HOST:PORT, got "localhost"');
  usage(['--datakit-apiserver', 'h:70000'], '--datakit-apiserver: expected HOST:PORT, got "h:70000"');
  usage(['--tags', 'a=1;nokey'], '--tags: "nokey" is not key=value');
  usage(['--tags', '=v'], '--tags: empty tag key');
  usage(['--tags', 'host=x'], '--tags: tag "host" is set by the collector itself');
  usage(['--hostname', ' '], '--hostname: empty host name');
  usage(['--bogus'], "Unknown option '--bogus'");
  usage(['stray'], "Unexpected argument 'stray'. This command does not take positional arguments");
});

test('bad config files: one line naming the file and key', () => {
  const missing = path.join(dir, 'missing.conf');
  usage(['--config', missing], `config ${missing}: cannot read: ENOENT`);
  const broken = file('broken.conf', '[[inputs.ebpf]\n');
  assert.throws(() => parseConfig(['--config', broken], {}, 'h'), (e: unknown) => e instanceof UsageError && e.message.startsWith(`config ${broken}: invalid TOML: `) && !e.message.includes('\n'));
  const noTable = file('notable.conf', '[[inputs.cpu]]\n');
  usage(['--config', noTable], `config ${noTable}: no [[inputs.ebpf]] table`);
  const badInterval = file('badint.conf', '[[inputs.ebpf]]\ninterval = "5x"\n');
  usage(['--config', badInterval], `config ${badInterval}: inputs.ebpf.interval: invalid duration "5x"`);
  const badType = file('badtype.conf', '[[inputs.ebpf]]\nenabled_plugins = "ebpf-net"\n');
  usage(['--config', badType], `config ${badType}: inputs.ebpf.enabled_plugins: expected an array of strings`);
  const badLoop = file('badloop.conf', '[[inputs.ebpf]]\ninclude_loopback = "yes"\n');
  usage(['--config', badLoop], `config ${badLoop}: inputs.ebpf.include_loopback: expected true or false, got string`);
  const badArgs = file('badargs.conf', '[[inputs.ebpf]]\nargs = ["--interval", "zz"]\n');
  usage(['--config', badArgs], `config ${badArgs}: inputs.ebpf.args: --interval: invalid duration "zz"`);
  const nested = file('nested.conf', '[[inputs.ebpf]]\nargs = ["--config", "/x"]\n');
  usage(['--config', nested], `config ${nested}: inputs.ebpf.args: --config is not allowed inside a config file`);
});

test('durations', () => {
  assert.equal(parseDuration('5s'), 5000);
  assert.equal(parseDuration('1m'), 60000);
  assert.equal(parseDuration('1h2m3s'), 3723000);
  assert.equal(parseDuration('2.5s'), 2500);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1500us'), 1.5);
  assert.equal(parseDuration('1500µs'), 1.5);
  assert.equal(parseDuration('2000000ns'), 2);
  assert.throws(() => parseDuration(''), /empty duration/);
  assert.throws(() => parseDuration('-5s'), /negative duration/);
  assert.throws(() => parseDuration('0s'), /greater than zero/);
  assert.throws(() => parseDuration('5'), /needs a unit/);
  assert.throws(() => parseDuration('5 s'), /invalid duration/);
  assert.throws(() => parseDuration('s'), /invalid duration/);
});
