// Request and status lines of HTTP/1.x, from the first bytes of a message.

export interface RequestLine {
  method: string;
  path: string; // without query string or fragment, at most MAX_PATH bytes
  version: '1.0' | '1.1';
}

export interface StatusLine {
  version: '1.0' | '1.1';
  status: number;
}

export const MAX_PATH = 1024;
const METHODS = new Set(['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE']);

/** The first line, if the captured bytes hold all of it (or `allowCut` and it fills them). */
function firstLine(buf: Buffer, allowCut: boolean): string | undefined {
  const end = buf.indexOf('\r\n');
  if (end < 0 && !allowCut) return undefined;
  return buf.toString('latin1', 0, end < 0 ? buf.length : end);
}

/**
 * `METHOD SP request-target SP HTTP/1.x`. A line longer than the capture
 * (a very long path) is still a request: its path is cut, its version unknown
 * and taken as 1.1.
 */
export function parseRequestLine(buf: Buffer): RequestLine | undefined {
  const line = firstLine(buf, buf.length >= MAX_PATH);
  if (!line) return undefined;
  const sp1 = line.indexOf(' ');
  if (sp1 < 1) return undefined;
  const method = line.slice(0, sp1);
  if (!METHODS.has(method)) return undefined;
  const sp2 = line.lastIndexOf(' ');
  let target: string;
  let version: '1.0' | '1.1';
  if (sp2 > sp1 && /^HTTP\/1\.[01]$/.test(line.slice(sp2 + 1))) {
    target = line.slice(sp1 + 1, sp2);
    version = line.endsWith('0') ? '1.0' : '1.1';
  } else if (line.length === buf.length) {
    target = line.slice(sp1 + 1); // cut by the capture
    version = '1.1';
  } else {
    return undefined; // HTTP/2 preface, HTTP/0.9 or not HTTP
  }
  if (!target || /[\s\x00-\x1f\x7f]/.test(target)) return undefined;
  let cut = target.length;
  for (const c of ['?', '#']) {
    const i = target.indexOf(c);
    if (i >= 0 && i < cut) cut = i;
  }
  const path = Buffer.from(target.slice(0, cut), 'latin1').toString('utf8');
  return { method, path: truncateUtf8(path, MAX_PATH), version };
}

const digit = (c: number) => c >= 0x30 && c <= 0x39;

/** `HTTP/1.x SP 3DIGIT [SP reason]`, read in place (this runs for every response). */
export function parseStatusLine(buf: Buffer, off = 0, len = buf.length - off): StatusLine | undefined {
  if (len < 12 || buf.toString('latin1', off, off + 7) !== 'HTTP/1.') return undefined;
  const minor = buf[off + 7];
  if ((minor !== 0x30 && minor !== 0x31) || buf[off + 8] !== 0x20) return undefined;
  const [a, b, c] = [buf[off + 9], buf[off + 10], buf[off + 11]];
  if (!digit(a) || !digit(b) || !digit(c) || a < 0x31 || a > 0x35) return undefined;
  if (len > 12 && buf[off + 12] !== 0x20 && buf[off + 12] !== 0x0d) return undefined;
  return { version: minor === 0x30 ? '1.0' : '1.1', status: (a - 0x30) * 100 + (b - 0x30) * 10 + (c - 0x30) };
}

function truncateUtf8(s: string, maxBytes: number): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= maxBytes) return s;
  // do not split a multi-byte character
  let end = maxBytes;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.toString('utf8', 0, end);
}
