// Request and status lines of HTTP/1.x, from the first bytes of a message.
import { FNV_OFFSET, fnvByte, RecentStrings } from '../recent-strings';

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
const METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];
/** Methods by length and first letter, which tell them apart. */
const METHOD_BY_SHAPE = new Map(METHODS.map((m) => [m.length * 256 + m.charCodeAt(0), m]));

/** Whether buf[off...] spells `text` (ASCII); byte by byte, cheaper than a native call for a few bytes. */
function spells(buf: Buffer, off: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (buf[off + i] !== text.charCodeAt(i)) return false;
  return true;
}

/** The method spelled by buf[off, end), as a shared string (no allocation per request). */
function methodAt(buf: Buffer, off: number, end: number): string | undefined {
  const m = METHOD_BY_SHAPE.get((end - off) * 256 + buf[off]);
  return m && spells(buf, off, m) ? m : undefined;
}

/**
 * `METHOD SP request-target SP HTTP/1.x`, read in place from buf[off, off+len)
 * (this runs for every request). A line longer than the capture (a very long
 * path) is still a request: its path is cut, its version unknown and taken as 1.1.
 */
export function parseRequestLine(buf: Buffer, off = 0, len = buf.length - off): RequestLine | undefined {
  const end = off + len;
  // within the record only: a native search would go on into the records after it
  let lineEnd = off;
  while (lineEnd + 1 < end && !(buf[lineEnd] === 0x0d && buf[lineEnd + 1] === 0x0a)) lineEnd++;
  let cut = false;
  if (lineEnd + 1 >= end) {
    if (len < MAX_PATH) return undefined; // the line should have ended within a short capture
    lineEnd = end;
    cut = true;
  }
  let sp1 = off;
  while (sp1 < lineEnd && sp1 - off < 8 && buf[sp1] !== 0x20) sp1++;
  if (sp1 >= lineEnd || buf[sp1] !== 0x20) return undefined;
  const method = methodAt(buf, off, sp1);
  if (!method) return undefined;
  let targetEnd: number;
  let version: '1.0' | '1.1';
  const minor = buf[lineEnd - 1];
  if (lineEnd - 9 > sp1 && spells(buf, lineEnd - 9, ' HTTP/1.') && (minor === 0x30 || minor === 0x31)) {
    targetEnd = lineEnd - 9;
    version = minor === 0x30 ? '1.0' : '1.1';
  } else if (cut) {
    targetEnd = lineEnd;
    version = '1.1';
  } else {
    return undefined; // HTTP/2 preface, HTTP/0.9 or not HTTP
  }
  const start = sp1 + 1;
  if (targetEnd <= start) return undefined;
  let pathEnd = -1;
  let hash = FNV_OFFSET; // of the path's bytes, for the table of recent paths
  for (let i = start; i < targetEnd; i++) {
    const c = buf[i];
    if (c <= 0x20 || c === 0x7f) return undefined; // spaces and controls: not a request target
    if (pathEnd < 0) {
      if (c === 0x3f || c === 0x23) pathEnd = i; // '?' or '#'
      else hash = fnvByte(hash, c);
    }
  }
  if (pathEnd < 0) pathEnd = targetEnd;
  if (pathEnd - start <= recentPaths.maxBytes) return { method, path: recentPaths.get(buf, start, pathEnd, hash), version };
  if (pathEnd - start > MAX_PATH) {
    // do not split a multi-byte character
    pathEnd = start + MAX_PATH;
    while (pathEnd > start && (buf[pathEnd] & 0xc0) === 0x80) pathEnd--;
  }
  let path = buf.toString('utf8', start, pathEnd);
  // invalid UTF-8 decodes to 3-byte replacement characters: the result may have grown
  if (path.length * 3 > MAX_PATH && Buffer.byteLength(path) > MAX_PATH) path = truncateUtf8(path, MAX_PATH);
  return { method, path, version };
}

/** Recent paths (512 KiB in all). */
const recentPaths = new RecentStrings('utf8');

const digit = (c: number) => c >= 0x30 && c <= 0x39;

/** `HTTP/1.x SP 3DIGIT [SP reason]`, read in place (this runs for every response). */
export function parseStatusLine(buf: Buffer, off = 0, len = buf.length - off): StatusLine | undefined {
  const status = parseStatus(buf, off, len);
  return status ? { version: buf[off + 7] === 0x30 ? '1.0' : '1.1', status } : undefined;
}

/** The status code of a status line, or 0 when it is not one. */
export function parseStatus(buf: Buffer, off: number, len: number): number {
  if (len < 12 || !spells(buf, off, 'HTTP/1.')) return 0;
  const minor = buf[off + 7];
  if ((minor !== 0x30 && minor !== 0x31) || buf[off + 8] !== 0x20) return 0;
  const a = buf[off + 9];
  const b = buf[off + 10];
  const c = buf[off + 11];
  if (!digit(a) || !digit(b) || !digit(c) || a < 0x31 || a > 0x35) return 0;
  if (len > 12 && buf[off + 12] !== 0x20 && buf[off + 12] !== 0x0d) return 0;
  return (a - 0x30) * 100 + (b - 0x30) * 10 + (c - 0x30);
}

function truncateUtf8(s: string, maxBytes: number): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= maxBytes) return s;
  // do not split a multi-byte character
  let end = maxBytes;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--;
  return b.toString('utf8', 0, end);
}
