// httpflow over TLS: nginx serving HTTPS and plain HTTP on one test host,
// curl (OpenSSL's SSL_read/SSL_write) and a Python ssl server (the _ex
// forms) on the other side. Exact counts per path and status on both sides
// with tls=true, plain HTTP on the same nginx with tls=false, and a point per
// exchange with --l7-per-request. The certificate is made by the test.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killGroup, run, sleep, startCollector, startDaemon, startNginx } from '../helpers/collector';
import { ParsedPoint } from '../helpers/lineprotocol-parse';
import { buildGoFixture } from '../helpers/go-build';
import { createHostPair, HostPair } from '../helpers/netns';
import { makeCertificate, startPythonHttps } from '../helpers/tls';
import { skip } from '../helpers/privileged';

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

describe('httpflow over TLS', { skip }, () => {
  let hosts: HostPair;
  let dir: string;
  let nginx: ChildProcess;
  let worker: number;
  let python: ChildProcess;
  let goServer: ChildProcess;
  let goClient: string;

  before(async () => {
    hosts = createHostPair(14); // 198.51.100.141-142: a subnet no other test uses
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-tls-'));
    fs.chmodSync(dir, 0o755); // nginx's worker does not run as root
    fs.writeFileSync(path.join(dir, 'index.html'), '<p>hello</p>\n');
    makeCertificate(dir);
    fs.writeFileSync(
      path.join(dir, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events {}
http {
  access_log off;
  server {
    listen ${hosts.serverV4}:443 ssl; listen [${hosts.serverV6}]:443 ssl; listen ${hosts.serverV4}:80;
    ssl_certificate ${dir}/cert.pem; ssl_certificate_key ${dir}/key.pem;
    root ${dir};
    location = /created { return 201; }
    location = /old { return 301 /new; }
  }
}
`,
    );
    ({ nginx, worker } = await startNginx(hosts.server, path.join(dir, 'nginx.conf')));
    python = await startPythonHttps(dir, hosts.server, hosts.serverV4, 8443);
    // Go: built with the machine's Go (static, no .symtab needed); the server runs before the collector starts
    const goServerBin = buildGoFixture('server');
    goClient = buildGoFixture('client');
    goServer = await startDaemon(
      'ip',
      ['netns', 'exec', hosts.server, goServerBin, '-addr', `${hosts.serverV4}:9443`, '-cert', path.join(dir, 'cert.pem'), '-key', path.join(dir, 'key.pem')],
      'listening',
      60000,
    );
  });
  after(() => {
    killGroup(nginx);
    killGroup(python);
    killGroup(goServer);
    hosts?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** One curl (one kept-alive connection) for all `urls`; prints each status. */
  const curl = (options: string[], ...urls: string[]) =>
    run('ip', ['netns', 'exec', hosts.client, 'curl', '-sk', '--http1.1', '-w', '%{http_code}\\n', ...options, ...urls.flatMap((u) => ['-o', '/dev/null', u])]);

  /** Series of one side, as "method path status count tls". */
  const series = (points: ParsedPoint[], pid: number | undefined) =>
    points
      .filter((p) => p.tags.pid === String(pid))
      .map((p) => `${p.fields.method} ${p.fields.path} ${p.fields.status_code} ${p.fields.count} tls=${p.tags.tls}`)
      .sort();

  test('series: exact counts per path and status on both sides with tls=true; plain HTTP on the same nginx tls=false', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const https = `https://${hosts.serverV4}`;
      const kept = await curl([], `${https}/index.html`, `${https}/missing`, `${https}/index.html?q=1`, `${https}/old`, `${https}/missing`);
      const posted = await curl(['-X', 'POST', '-d', 'x=1'], `${https}/created`, `${https}/created`);
      const v6 = await curl([], `https://[${hosts.serverV6}]/index.html`);
      const plain = await curl([], `http://${hosts.serverV4}/index.html`, `http://${hosts.serverV4}/missing`);
      const py = await curl([], `https://${hosts.serverV4}:8443/status/200`, `https://${hosts.serverV4}:8443/status/404`, `https://${hosts.serverV4}:8443/status/200`);
      assert.deepEqual(
        [kept.stdout, posted.stdout, v6.stdout, plain.stdout, py.stdout],
        ['200\n404\n200\n301\n404\n', '201\n201\n', '200\n', '200\n404\n', '200\n404\n200\n'],
      );
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      assert.deepEqual(series(points, kept.pid), ['GET /index.html 200 2 tls=true', 'GET /missing 404 2 tls=true', 'GET /old 301 1 tls=true']);
      assert.deepEqual(series(points, posted.pid), ['POST /created 201 2 tls=true']);
      assert.deepEqual(series(points, v6.pid), ['GET /index.html 200 1 tls=true']);
      assert.deepEqual(series(points, plain.pid), ['GET /index.html 200 1 tls=false', 'GET /missing 404 1 tls=false']);
      assert.deepEqual(series(points, py.pid), ['GET /status/200 200 2 tls=true', 'GET /status/404 404 1 tls=true']);
      // nginx's side: IPv4 and IPv6 are series apart
      const served = points.filter((p) => p.tags.pid === String(worker));
      const byFamily = (family: string) => series(served.filter((p) => p.tags.family === family), worker);
      assert.deepEqual(byFamily('IPv4'), [
        'GET /index.html 200 1 tls=false',
        'GET /index.html 200 2 tls=true',
        'GET /missing 404 1 tls=false',
        'GET /missing 404 2 tls=true',
        'GET /old 301 1 tls=true',
        'POST /created 201 2 tls=true',
      ]);
      assert.deepEqual(byFamily('IPv6'), ['GET /index.html 200 1 tls=true']);
      assert.deepEqual(series(points, python.pid), ['GET /status/200 200 2 tls=true', 'GET /status/404 404 1 tls=true']);

      for (const p of points.filter((x) => [kept.pid, worker, python.pid].map(String).includes(x.tags.pid!) && x.tags.family === 'IPv4')) {
        const server = p.tags.direction === 'incoming';
        const port = p.tags.tls === 'false' ? '80' : p.tags.pid === String(python.pid) || p.fields.path?.toString().startsWith('/status') ? '8443' : '443';
        const ends = [p.tags.src_ip, p.tags.src_port, p.tags.dst_ip, p.tags.dst_port, p.tags.transport];
        assert.deepEqual(ends, server ? [hosts.serverV4, port, hosts.clientV4, '*', 'tcp'] : [hosts.clientV4, '*', hosts.serverV4, port, 'tcp'], show(p));
        assert.equal(p.tags.process_name, p.tags.pid === String(worker) ? 'nginx' : p.tags.pid === String(python.pid) ? 'python3' : 'curl', show(p));
        assert.equal(p.fields.http_version, '1.1');
        const f = p.fields as Record<string, number>;
        assert.ok(f.latency > 0 && f.latency <= f.latency_max && f.latency_p50 <= f.latency_p99 && f.latency_p99 <= f.latency_max, show(p));
      }
      assert.match(collector.stderr(), /httpflow: \d+ points; .*tls_no_socket=0 /);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('per request: every exchange over TLS its own point, both sides, tls=true', async () => {
    const collector = await startCollector(['--interval', '60s', '--l7-per-request']);
    try {
      const https = `https://${hosts.serverV4}`;
      const c = await curl([], `${https}/index.html`, `${https}/missing`, `${https}/index.html`);
      const p = await curl([], `https://${hosts.serverV4}:8443/status/503`);
      assert.deepEqual([c.stdout, p.stdout], ['200\n404\n200\n', '503\n']);
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      const each = (pid: number | undefined) =>
        points.filter((x) => x.tags.pid === String(pid)).map((x) => `${x.tags.direction} ${x.fields.method} ${x.fields.path} ${x.fields.status_code} tls=${x.tags.tls}`);
      assert.deepEqual(each(c.pid), ['outgoing GET /index.html 200 tls=true', 'outgoing GET /missing 404 tls=true', 'outgoing GET /index.html 200 tls=true']);
      assert.deepEqual(each(worker), ['incoming GET /index.html 200 tls=true', 'incoming GET /missing 404 tls=true', 'incoming GET /index.html 200 tls=true']);
      assert.deepEqual(each(p.pid), ['outgoing GET /status/503 503 tls=true']);
      assert.deepEqual(each(python.pid), ['incoming GET /status/503 503 tls=true']);
      for (const x of points.filter((y) => [c.pid, worker].map(String).includes(y.tags.pid!))) {
        assert.ok((x.fields.latency as number) > 0 && (x.fields.latency as number) < 1e9, show(x));
      }
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('Go crypto/tls: a server found running and a client found at its exec, both sides counted exactly, tls=true', async () => {
    const collector = await startCollector(['--interval', '60s']);
    try {
      const base = `https://${hosts.serverV4}:9443`;
      // 400 ms: less than the /proc scan's second, so the client is found through its exec
      const client = await run('ip', ['netns', 'exec', hosts.client, goClient, '-insecure', '-delay', '400ms', '-n', '5', `${base}/ok`, `${base}/missing`, `POST ${base}/created`]);
      assert.equal(client.stdout, '200 5\n201 5\n404 5\n');
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      const want = ['GET /missing 404 5 tls=true', 'GET /ok 200 5 tls=true', 'POST /created 201 5 tls=true'];
      const stats = collector.stderr().split('\n').filter((l) => l.includes('httpflow: ')).pop();
      assert.deepEqual(series(points, client.pid), want, stats);
      assert.deepEqual(series(points, goServer.pid), want, stats);
      for (const p of points.filter((x) => x.tags.pid === String(client.pid) || x.tags.pid === String(goServer.pid))) {
        const server = p.tags.direction === 'incoming';
        const ends = [p.tags.src_ip, p.tags.src_port, p.tags.dst_ip, p.tags.dst_port];
        assert.deepEqual(ends, server ? [hosts.serverV4, '9443', hosts.clientV4, '*'] : [hosts.clientV4, '*', hosts.serverV4, '9443'], show(p));
        assert.ok((p.fields.latency as number) > 0, show(p));
      }
      assert.match(collector.stderr(), /reading TLS plaintext in .*client.* \(Go go1\.\d+/);
    } finally {
      await collector.stop('SIGKILL');
    }
  });

  test('a request line written in pieces (its first byte alone): still one exchange on both sides', async () => {
    // each sendall is an SSL_write_ex of its own, and a TLS record of its own for the reader
    const client = `
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((sys.argv[1], 8443)))
for path in ('/status/202', '/status/203'):
    s.sendall(b'G')
    s.sendall(b'E')
    s.sendall(('T ' + path + ' HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n').encode())
    head = b''
    while b'python' not in head:
        head += s.recv(4096)
    print(head.split(b' ')[1].decode())
`;
    const collector = await startCollector(['--interval', '60s']);
    try {
      const c = await run('ip', ['netns', 'exec', hosts.client, '/usr/bin/python3', '-c', client, hosts.serverV4]);
      assert.equal(c.stdout, '202\n203\n');
      await sleep(500);
      assert.equal((await collector.stop('SIGTERM')).code, 0, collector.stderr());
      const points = collector.points('httpflow');
      assert.deepEqual(series(points, c.pid), ['GET /status/202 202 1 tls=true', 'GET /status/203 203 1 tls=true']);
      const served = points.filter((p) => p.tags.pid === String(python.pid) && p.tags.dst_ip === hosts.clientV4);
      assert.deepEqual(series(served, python.pid), ['GET /status/202 202 1 tls=true', 'GET /status/203 203 1 tls=true']);
    } finally {
      await collector.stop('SIGKILL');
    }
  });
});
