// Network peers with exactly known traffic, run inside a test namespace:
//   server HOST PORT RESPONSE_BYTES        TCP: reads each request to EOF, answers, closes
//   client HOST PORT CONNS REQUEST_BYTES [PARALLEL]
//                                          TCP: per connection sends, half-closes, reads to EOF
//   client-loop HOST PORT CONNS REQUEST_BYTES
//                                          as client, then again for each line on stdin, until it ends
//   stream HOST PORT CHUNK_BYTES CHUNKS GAP_MS
//                                          TCP: one connection, a chunk every GAP_MS, then as client;
//                                          CHUNKS 0: until SIGUSR2 (however slow the machine)
//   udp-server HOST PORT RESPONSE_BYTES [DELAY_MS]
//                                          UDP, unconnected socket: answers every datagram (after DELAY_MS)
//   udp-client HOST PORT DATAGRAMS REQUEST_BYTES
//                                          UDP, connected socket: one request and answer at a time
//   udp-churn HOST PORT SOCKETS REQUEST_BYTES PARALLEL [LOCAL_ADDR...]
//                                          UDP: a new connected socket for each request and its answer, each
//                                          from a local address and port of its own (ports from 32768 up;
//                                          no address: any port the kernel gives)
//   dns-servfail HOST PORT [DELAY_MS]      a DNS server that answers every query with SERVFAIL (after DELAY_MS)
//   http-app HOST PORT                     an HTTP app server: /app/fail answers 500, /app/slow after 300 ms,
//                                          /app/delay?ms=N after N ms, /status/NNN/... with status NNN
//   http-raw HOST PORT LINE...              each LINE as a request line of its own request, on a connection of its own;
//                                          prints {"pid","statuses"} (0: no status line came back)
//   http-timed HOST PORT CONNS PATH...     each PATH in turn over CONNS kept-alive connections at once; prints
//                                          {"pid","latencies"}: ms from each request's end to its response's headers
//   http-keepalive HOST PORT REQUESTS PATH HTTP requests in turn over one kept-alive connection
//   http-many HOST PORT CONNS REPEAT PATH...
//                                          each PATH REPEAT times over CONNS kept-alive connections at once; prints
//                                          {"pid","counts"}: requests by "PATH STATUS"
//   http-pipeline HOST PORT PATH...         HTTP requests sent 30 ms apart on one connection, before any answer
//   http-unanswered HOST PORT N             N requests sent 30 ms apart on one connection, then a half-close;
//                                          waits for the server to close
//   http-numbered HOST PORT CONNS REQUESTS PREFIX
//                                          CONNS kept-alive connections at once, each REQUESTS GETs in turn, of
//                                          PREFIX/<conn>/<request>; prints {"pid","statuses"} (how many of each)
//   noise HOST PORT BYTES                  TCP: random bytes, then close
//   hold-server HOST PORT                  TCP: accepts and keeps every connection, silent
//   hold HOST PORT COUNT                   TCP: opens COUNT connections, prints "held", keeps them
// Clients print {"pid","sent","received"} when done.
import * as crypto from 'node:crypto';
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';
import * as readline from 'node:readline';

const [mode, host, portArg, ...rest] = process.argv.slice(2);
const port = Number(portArg);
const nums = rest.map(Number);

function done(sent: number, received: number): void {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, sent, received })}\n`);
}

function server(responseBytes: number): void {
  const payload = Buffer.alloc(responseBytes, 0x61);
  const srv = net.createServer((sock) => {
    sock.on('data', () => {});
    sock.on('end', () => sock.end(payload));
    sock.on('error', () => {});
  });
  srv.listen(port, host, () => process.stdout.write('listening\n'));
}

/**
 * One TCP connection: `chunks` writes of `chunkBytes` (0: until SIGUSR2), `gapMs`
 * apart, then half-close and read to EOF. Resolves to the bytes sent and received.
 */
function connection(chunkBytes: number, chunks: number, gapMs: number): Promise<{ sent: number; received: number }> {
  let stop = false;
  process.on('SIGUSR2', () => (stop = true));
  return new Promise((resolve, reject) => {
    let received = 0;
    let sent = 0;
    const sock = net.connect({ host, port }, () => {
      const tick = () => {
        sock.write(Buffer.alloc(chunkBytes, 0x62));
        if (++sent === chunks || stop) sock.end();
        else setTimeout(tick, gapMs);
      };
      tick();
    });
    sock.on('data', (d) => (received += d.length));
    sock.on('error', reject);
    sock.on('close', () => resolve({ sent: sent * chunkBytes, received }));
  });
}

async function client(conns: number, requestBytes: number, parallel = 1): Promise<void> {
  let received = 0;
  let next = 0;
  const worker = async () => {
    while (next < conns) {
      next++;
      const got = await connection(requestBytes, 1, 0);
      received += got.received; // not `received += await`: that would read received before the await
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  done(conns * requestBytes, received);
}

async function clientLoop(conns: number, requestBytes: number): Promise<void> {
  const lines = readline.createInterface({ input: process.stdin });
  await client(conns, requestBytes);
  for await (const _line of lines) await client(conns, requestBytes);
}

function udpServer(responseBytes: number, delayMs = 0): void {
  const payload = Buffer.alloc(responseBytes, 0x61);
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const answer = (rinfo: dgram.RemoteInfo) => sock.send(payload, rinfo.port, rinfo.address);
  sock.on('message', (_msg, rinfo) => (delayMs ? setTimeout(() => answer(rinfo), delayMs) : answer(rinfo)));
  sock.bind(port, host, () => process.stdout.write('listening\n'));
}

async function udpChurn(sockets: number, requestBytes: number, parallel: number, locals: string[]): Promise<void> {
  let started = 0;
  let received = 0;
  const payload = Buffer.alloc(requestBytes, 0x63);
  const one = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      sock.on('error', reject);
      sock.on('message', (msg) => {
        received += msg.length;
        sock.close(() => resolve());
      });
      if (!locals.length) return void sock.connect(port, host, () => sock.send(payload)); // the kernel picks the port
      // the same port again only after every other one: a socket's memory is soon another's
      const perAddress = Math.ceil(sockets / locals.length);
      const address = locals[Math.floor(n / perAddress)];
      const localPort = 32768 + (n % perAddress);
      sock.bind({ address, port: localPort }, () => sock.connect(port, host, () => sock.send(payload)));
    });
  const worker = async () => {
    while (started < sockets) await one(started++);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  done(sockets * requestBytes, received);
}

function udpClient(datagrams: number, requestBytes: number): void {
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  let received = 0;
  let sent = 0;
  const send = () => {
    sent++;
    sock.send(Buffer.alloc(requestBytes, 0x62));
  };
  sock.on('message', (msg) => {
    received += msg.length;
    if (sent < datagrams) send();
    else sock.close(() => done(sent * requestBytes, received));
  });
  sock.connect(port, host, send);
}

function dnsServfail(delayMs = 0): void {
  const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    const reply = Buffer.from(msg);
    reply.writeUInt16BE(0x8182, 2); // QR, RD, RA, rcode 2 (SERVFAIL); question kept, no answers
    reply.writeUInt16BE(0, 6);
    reply.writeUInt16BE(0, 8);
    reply.writeUInt16BE(0, 10);
    setTimeout(() => sock.send(reply, rinfo.port, rinfo.address), delayMs);
  });
  sock.bind(port, host, () => process.stdout.write('listening\n'));
}

function httpApp(): void {
  const srv = http.createServer((req, res) => {
    if (req.url?.startsWith('/app/fail')) return void res.writeHead(500).end('failed\n');
    if (req.url?.startsWith('/app/slow')) return void setTimeout(() => res.writeHead(200).end('slow\n'), 300);
    const status = /^\/status\/(\d{3})/.exec(req.url ?? '');
    if (status) return void res.writeHead(Number(status[1])).end('status\n');
    const delay = /^\/app\/delay\?ms=(\d+)/.exec(req.url ?? '');
    if (delay) return void setTimeout(() => res.writeHead(200).end('delayed\n'), Number(delay[1]));
    res.writeHead(200).end('app\n');
  });
  srv.listen(port, host, () => process.stdout.write('listening\n'));
}

async function httpKeepAlive(requests: number, urlPath: string): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const statuses: number[] = [];
  for (let i = 0; i < requests; i++) {
    statuses.push(
      await new Promise<number>((resolve, reject) => {
        http.get({ host, port, path: urlPath, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      }),
    );
  }
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ pid: process.pid, statuses })}\n`);
}

/** Pipelining: every request goes out (each in its own segment) before the first answer is read. */
async function httpRaw(lines: string[]): Promise<void> {
  const statuses: number[] = [];
  for (const line of lines) {
    statuses.push(
      await new Promise<number>((resolve, reject) => {
        let answer = '';
        const sock = net.connect({ host, port }, () => sock.write(`${line}\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`));
        sock.setEncoding('latin1').on('data', (d: string) => (answer += d));
        sock.on('error', reject);
        sock.on('close', () => resolve(Number(/^HTTP\/1\.\d (\d{3})/.exec(answer)?.[1] ?? 0)));
      }),
    );
  }
  process.stdout.write(`${JSON.stringify({ pid: process.pid, statuses })}\n`);
}

async function httpTimed(conns: number, paths: string[]): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  const latencies: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const urlPath = paths[next++];
      latencies.push(
        await new Promise<number>((resolve, reject) => {
          let sent = 0n;
          const req = http.get({ host, port, path: urlPath, agent }, (res) => {
            const ms = Number(process.hrtime.bigint() - sent) / 1e6;
            res.resume();
            res.on('end', () => resolve(ms));
          });
          req.on('finish', () => (sent = process.hrtime.bigint()));
          req.on('error', reject);
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: conns }, worker));
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ pid: process.pid, latencies })}\n`);
}

async function httpMany(conns: number, repeat: number, paths: string[]): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  const counts: Record<string, number> = {};
  let next = 0;
  const total = repeat * paths.length;
  const worker = async () => {
    while (next < total) {
      const urlPath = paths[next++ % paths.length];
      const status = await new Promise<number>((resolve, reject) => {
        http.get({ host, port, path: urlPath, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
      counts[`${urlPath} ${status}`] = (counts[`${urlPath} ${status}`] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: conns }, worker));
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ pid: process.pid, counts })}\n`);
}

function httpPipeline(paths: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port }, async () => {
      sock.setNoDelay(true);
      for (const p of paths) {
        sock.write(`GET ${p} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 30));
      }
    });
    let seen = '';
    sock.setEncoding('latin1').on('data', (d: string) => {
      seen += d;
      const statuses = [...seen.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
      if (statuses.length === paths.length) {
        sock.end();
        process.stdout.write(`${JSON.stringify({ pid: process.pid, statuses })}\n`);
        resolve();
      }
    });
    sock.on('error', reject);
  });
}

function httpUnanswered(n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port }, async () => {
      sock.setNoDelay(true);
      for (let i = 0; i < n; i++) {
        sock.write(`GET /unanswered/${i} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        await new Promise((r) => setTimeout(r, 30));
      }
      sock.end();
    });
    sock.resume();
    sock.on('error', reject);
    sock.on('close', () => {
      process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`);
      resolve();
    });
  });
}

/**
 * Many requests, each with a path of its own, cheaply: hand-written requests on
 * plain sockets, each sent once the answer to the one before it is in.
 */
async function httpNumbered(conns: number, requests: number, prefix: string): Promise<void> {
  const statuses: Record<string, number> = {};
  const connection = (c: number) =>
    new Promise<void>((resolve, reject) => {
      const sock = net.connect({ host, port });
      sock.setNoDelay(true);
      let i = 0;
      let buf = '';
      const send = () => sock.write(`GET ${prefix}/${c}/${i} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      sock.on('connect', send);
      sock.setEncoding('latin1').on('data', (d: string) => {
        buf += d;
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.slice(0, end);
          // a body of known length, or chunks up to the empty last one
          let next = end + 4 + Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
            const last = buf.indexOf('0\r\n\r\n', end + 4);
            next = last < 0 ? Infinity : last + 5;
          }
          if (buf.length < next) return;
          const status = /^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1] ?? '0';
          statuses[status] = (statuses[status] ?? 0) + 1;
          buf = buf.slice(next);
          if (++i === requests) {
            sock.end();
            return;
          }
          send();
        }
      });
      sock.on('error', reject);
      sock.on('close', () => resolve());
    });
  await Promise.all(Array.from({ length: conns }, (_, c) => connection(c)));
  process.stdout.write(`${JSON.stringify({ pid: process.pid, statuses })}\n`);
}

function noise(bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port }, () => sock.end(crypto.randomBytes(bytes)));
    sock.on('error', reject);
    sock.on('close', () => resolve());
    sock.resume();
  });
}

function holdServer(): void {
  const held: net.Socket[] = [];
  const srv = net.createServer((sock) => {
    held.push(sock);
    sock.on('error', () => {});
  });
  srv.maxConnections = Infinity;
  srv.listen({ port, host, backlog: 4096 }, () => process.stdout.write('listening\n'));
}

async function hold(count: number): Promise<void> {
  const held: net.Socket[] = [];
  const open = () =>
    new Promise<void>((resolve, reject) => {
      const sock = net.connect({ host, port }, () => resolve());
      sock.on('error', reject);
      held.push(sock);
    });
  // a few hundred at a time: the listener's backlog is finite
  for (let i = 0; i < count; i += 200) await Promise.all(Array.from({ length: Math.min(200, count - i) }, open));
  process.stdout.write('held\n');
  await new Promise(() => {}); // until killed
}

const modes: Record<string, () => unknown> = {
  'hold-server': holdServer,
  hold: () => hold(nums[0]),
  'http-app': httpApp,
  'http-keepalive': () => httpKeepAlive(nums[0], rest[1]),
  'udp-churn': () => udpChurn(nums[0], nums[1], nums[2], rest.slice(3)),
  'http-many': () => httpMany(nums[0], nums[1], rest.slice(2)),
  'http-unanswered': () => httpUnanswered(nums[0]),
  noise: () => noise(nums[0]),
  'http-pipeline': () => httpPipeline(rest),
  'http-numbered': () => httpNumbered(nums[0], nums[1], rest[2]),
  'http-timed': () => httpTimed(nums[0], rest.slice(1)),
  'http-raw': () => httpRaw(rest),
  'dns-servfail': () => dnsServfail(nums[0] || 0),
  server: () => server(nums[0]),
  client: () => client(nums[0], nums[1], nums[2] || 1),
  'client-loop': () => clientLoop(nums[0], nums[1]),
  stream: async () => {
    const { sent, received } = await connection(nums[0], nums[1], nums[2]);
    done(sent, received);
  },
  'udp-server': () => udpServer(nums[0], nums[1]),
  'udp-client': () => udpClient(nums[0], nums[1]),
};
if (!modes[mode]) {
  process.stderr.write('usage: peer server|client|stream|udp-server|udp-client HOST PORT ...\n');
  process.exit(2);
}
Promise.resolve(modes[mode]()).catch((e: Error) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(1);
});
