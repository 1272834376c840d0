// TLS test servers: a certificate the test makes, and an HTTPS server on
// Python's ssl module (OpenSSL's SSL_read_ex/SSL_write_ex).
import { ChildProcess, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startDaemon } from './collector';

/** A self-signed certificate and its key in `dir`: cert.pem, key.pem (readable by nginx's worker). */
export function makeCertificate(dir: string): void {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=test.example', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')],
    { stdio: 'ignore' },
  );
  fs.chmodSync(path.join(dir, 'key.pem'), 0o644);
}

/** Answers GET /status/N with N, anything else with 200; HTTP/1.1, kept alive. */
const PYTHON_SERVER = `
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        code = int(self.path.split('/')[2]) if self.path.startswith('/status/') else 200
        body = b'python\\n'
        self.send_response(code)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[3], sys.argv[4])
server.socket = context.wrap_socket(server.socket, server_side=True)
print('listening', flush=True)
server.serve_forever()
`;

/** Debian's python3 serving HTTPS in network namespace `ns` (with the certificate of `dir`). */
export function startPythonHttps(dir: string, ns: string, address: string, port: number): Promise<ChildProcess> {
  fs.writeFileSync(path.join(dir, 'server.py'), PYTHON_SERVER);
  return startDaemon(
    'ip',
    ['netns', 'exec', ns, '/usr/bin/python3', path.join(dir, 'server.py'), address, String(port), path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')],
    'listening',
    60000, // python's start is slow on an emulated kernel
  );
}
