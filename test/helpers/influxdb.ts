// A real InfluxDB 1.x (Debian's influxdb package) on loopback, in a temp dir:
// the reference parser for the line protocol we emit.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface InfluxDB {
  url: string;
  write(db: string, body: string): Promise<{ status: number; text: string }>;
  query(db: string, q: string): Promise<unknown>;
  stop(): void;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export async function startInfluxDB(): Promise<InfluxDB> {
  const bin = '/usr/bin/influxd';
  if (!fs.existsSync(bin)) throw new Error(`${bin} not found: run "npm test", whose set-up installs Debian's influxdb`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-influx-'));
  const [httpPort, rpcPort] = [await freePort(), await freePort()];
  fs.writeFileSync(
    path.join(dir, 'influxdb.conf'),
    `reporting-disabled = true
bind-address = "127.0.0.1:${rpcPort}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:${httpPort}"
  log-enabled = false
  pprof-enabled = false
[continuous_queries]
  enabled = false
`,
  );
  const proc: ChildProcess = spawn(bin, ['-config', path.join(dir, 'influxdb.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-4000)));
  const url = `http://127.0.0.1:${httpPort}`;
  const stop = () => {
    proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);

  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      if ((await fetch(`${url}/ping`)).status === 204) break;
    } catch {
      /* not listening yet */
    }
    if (proc.exitCode !== null || Date.now() > deadline) {
      stop();
      throw new Error(`influxd did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const query = async (db: string, q: string) => {
    const res = await fetch(`${url}/query?db=${encodeURIComponent(db)}&epoch=ns&q=${encodeURIComponent(q)}`, { method: 'POST' });
    return res.json();
  };
  return {
    url,
    async write(db, body) {
      const res = await fetch(`${url}/write?db=${encodeURIComponent(db)}&precision=ns`, { method: 'POST', body });
      return { status: res.status, text: await res.text() };
    },
    query,
    stop,
  };
}
