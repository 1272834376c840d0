// A TCP peer with exactly known traffic, run inside a test namespace:
//   server HOST PORT RESPONSE_BYTES      reads each request to EOF, answers, closes
//   client HOST PORT CONNS REQUEST_BYTES [HOLD_MS]
//                                        per connection: sends, half-closes, reads to EOF
// The client prints {"pid","sent","received"} when done.
import * as net from 'node:net';

const [mode, host, portArg, ...rest] = process.argv.slice(2);
const port = Number(portArg);

function server(responseBytes: number): void {
  const payload = Buffer.alloc(responseBytes, 0x61);
  const srv = net.createServer((sock) => {
    sock.on('data', () => {});
    sock.on('end', () => sock.end(payload));
    sock.on('error', () => {});
  });
  srv.listen(port, host, () => process.stdout.write('listening\n'));
}

function once(conn: number, requestBytes: number, holdMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = 0;
    const sock = net.connect({ host, port }, () => {
      sock.write(Buffer.alloc(requestBytes, 0x62));
      setTimeout(() => sock.end(), holdMs);
    });
    sock.on('data', (d) => (received += d.length));
    sock.on('error', (e) => reject(new Error(`connection ${conn}: ${e.message}`)));
    sock.on('close', () => resolve(received));
  });
}

async function client(conns: number, requestBytes: number, holdMs: number): Promise<void> {
  let received = 0;
  for (let i = 0; i < conns; i++) received += await once(i, requestBytes, holdMs);
  process.stdout.write(`${JSON.stringify({ pid: process.pid, sent: conns * requestBytes, received })}\n`);
}

if (mode === 'server') server(Number(rest[0]));
else if (mode === 'client') {
  client(Number(rest[0]), Number(rest[1]), Number(rest[2] ?? 0)).catch((e) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write('usage: tcp-peer server|client ...\n');
  process.exit(2);
}
