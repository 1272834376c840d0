// A local stand-in for DataKit's HTTP API that records every request.
import * as http from 'node:http';
import { AddressInfo } from 'node:net';

export interface Received {
  method: string;
  url: string;
  body: string;
}

export interface FakeDataKit {
  address: string; // host:port
  requests: Received[];
  /** Answer this many coming requests with HTTP 500. */
  failNext: number;
  close(): Promise<void>;
}

export function startFakeDataKit(): Promise<FakeDataKit> {
  const requests: Received[] = [];
  const fake = { failNext: 0 };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body });
      const fail = fake.failNext > 0;
      if (fail) fake.failNext--;
      res.writeHead(fail ? 500 : 200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(
        Object.assign(fake, {
          address: `127.0.0.1:${port}`,
          requests,
          close: () => new Promise<void>((r) => server.close(() => r())),
        }),
      );
    }),
  );
}
