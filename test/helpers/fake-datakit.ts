// A local stand-in for DataKit's HTTP API that records every request, and can
// be away (refusing connections on its port) or refuse chosen batches.
import * as http from 'node:http';
import { AddressInfo } from 'node:net';

export interface Received {
  method: string;
  url: string;
  body: string;
  /** The status it was answered with. */
  status: number;
}

export interface FakeDataKit {
  address: string; // host:port
  /** Every request, in the order they came, whatever the answer. */
  requests: Received[];
  /** Answer this many coming requests with HTTP 500. */
  failNext: number;
  /** Wait this long before answering (a slow DataKit). */
  delayMs: number;
  /**
   * Decides the answer to a request that would be taken: a status and body to
   * refuse it with (e.g. [400, '...']), or undefined to take it.
   */
  refuse?: (r: Omit<Received, 'status'>) => [number, string] | undefined;
  /** Lines of the write requests to `url` that were taken (2xx), in the order they came. */
  lines(url?: string): string[];
  /** Closes the listening socket and every connection: connections are refused until up(). */
  down(): Promise<void>;
  /** Listens again, on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startFakeDataKit(): Promise<FakeDataKit> {
  const requests: Received[] = [];
  const fake: Pick<FakeDataKit, 'failNext' | 'delayMs' | 'refuse'> = { failNext: 0, delayMs: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', body };
      let [status, answer] = fake.refuse?.(r) ?? [200, '{}'];
      if (fake.failNext > 0) {
        fake.failNext--;
        [status, answer] = [500, '{"error":"internal"}'];
      }
      requests.push({ ...r, status });
      const reply = () => res.writeHead(status, { 'content-type': 'application/json' }).end(answer);
      if (fake.delayMs > 0) setTimeout(reply, fake.delayMs);
      else reply();
    });
  });
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  await listen();
  return Object.assign(fake, {
    address: `127.0.0.1:${port}`,
    requests,
    lines: (url = '/v1/write/network?input=ebpf-net') =>
      requests.filter((r) => r.url === url && r.status < 300).flatMap((r) => r.body.split('\n')),
    down: stop,
    up: listen,
    close: () => (server.listening ? stop() : Promise.resolve()),
  });
}
