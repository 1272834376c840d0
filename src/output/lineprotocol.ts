// InfluxDB line protocol encoder (SPEC §3).
import type { FieldValue, Point, WallTime } from './point';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Names in messages: quoted, so that a newline in one cannot make a message of two lines. */
const quote = (s: string) => JSON.stringify(s);

// Raw CR/LF would end the line: they are written as the two characters \n / \r.
function noNewlines(s: string): string {
  return s.includes('\n') || s.includes('\r') ? s.replace(/\n/g, '\\n').replace(/\r/g, '\\r') : s;
}

const MEASUREMENT_SPECIAL = /[, ]/g;
const KEY_SPECIAL = /[,= ]/g;

/**
 * In the measurement and the tags InfluxDB takes a character preceded by a
 * backslash as escaped, so a trailing backslash would escape the separator
 * after it; "\\" is read as two characters, so the only safe encoding is to
 * add an escaped space. This changes the text by one trailing space, rather
 * than making the whole line unparseable.
 */
function guardTrailingBackslash(out: string): string {
  return out.endsWith('\\') ? `${out}\\ ` : out;
}

export function escapeMeasurement(s: string): string {
  return guardTrailingBackslash(noNewlines(s).replace(MEASUREMENT_SPECIAL, '\\$&'));
}

const NEEDS_ESCAPE = /[,= \\\r\n]/;

/** Tag keys and tag values. */
export function escapeKey(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s; // the common case: nothing to do
  return guardTrailingBackslash(noNewlines(s).replace(KEY_SPECIAL, '\\$&'));
}

/**
 * In the fields InfluxDB reads a backslash as taking the character after it,
 * and unescapes only `\,`, `\=`, `\ ` and `\"`: a backslash before one of those
 * or at the end of a field key has no encoding. Field keys are the collector's
 * own names: such a key is refused.
 */
const UNWRITABLE_FIELD_KEY = /\\([,= "]|$)/;

export function escapeFieldKey(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  if (UNWRITABLE_FIELD_KEY.test(s)) throw new TypeError(`field key ${quote(s)}: a backslash before a comma, equals sign, space, quote or the end cannot be written`);
  return noNewlines(s).replace(KEY_SPECIAL, '\\$&');
}

const STRING_SPECIAL = /[\\"\n\r]/;

export function escapeStringField(s: string): string {
  // most strings (paths, commands) need nothing: skip the replacements for them
  if (!STRING_SPECIAL.test(s)) return `"${s}"`;
  return `"${s.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\\\n').replace(/\r/g, '\\\\r')}"`;
}

/** Measurement and tags: the part of a line that hot paths cache and reuse. */
export function encodeSeries(measurement: string, tags: Point['tags']): string {
  // InfluxDB reads a line starting with '#' as a comment
  if (measurement === '' || measurement.startsWith('#')) throw new TypeError(`measurement ${quote(measurement)} cannot be written`);
  let line = escapeMeasurement(measurement);
  // InfluxDB's canonical order: tags sorted by key
  const tagKeys = Object.keys(tags).sort();
  for (const k of tagKeys) {
    const v = tags[k];
    if (v === undefined || v === '') continue;
    if (k === '') throw new TypeError(`point ${quote(measurement)}: a tag has an empty key`);
    line += `,${escapeKey(k)}=${escapeKey(v)}`;
  }
  return line;
}

/**
 * Lines as bytes, ready for a write: the encoder writes into it directly, so
 * that a busy output makes no string per line.
 */
export class LineWriter {
  bytes: Buffer;
  length = 0;
  /** Complete lines in `bytes`. */
  lines = 0;

  constructor(private readonly initialSize = 64 * 1024) {
    this.bytes = Buffer.allocUnsafe(initialSize);
  }

  /** Room for n more bytes. */
  ensure(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + n));
    this.bytes.copy(grown, 0, 0, this.length);
    this.bytes = grown;
  }

  byte(c: number): void {
    this.ensure(1);
    this.bytes[this.length++] = c;
  }

  /** Text known to be ASCII (numbers, literals). */
  ascii(s: string): void {
    this.ensure(s.length);
    this.length += this.bytes.write(s, this.length, 'latin1');
  }

  utf8(s: string): void {
    this.ensure(s.length * 3); // the most UTF-8 bytes a UTF-16 code unit takes
    this.length += this.bytes.write(s, this.length, 'utf8');
  }

  copy(b: Uint8Array): void {
    this.ensure(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }

  /** A safe integer in decimal, without making its string. */
  int(v: number): void {
    this.ensure(17);
    if (v < 0) {
      this.bytes[this.length++] = 0x2d; // '-'
      v = -v;
    }
    let n = 1; // a safe integer has at most 16 digits
    for (let p = 10; p <= v && n < 16; p *= 10) n++;
    this.digits(v, n);
  }

  /** A time of seconds and nanoseconds, as the one integer of nanoseconds. */
  wallTime(t: WallTime): void {
    if (!(Number.isSafeInteger(t.sec) && t.sec >= 0 && Number.isInteger(t.nsec) && t.nsec >= 0 && t.nsec < 1e9)) {
      throw new TypeError(`time is not seconds and nanoseconds: ${t.sec} s ${t.nsec} ns`);
    }
    if (t.sec === 0) {
      this.int(t.nsec);
      return;
    }
    this.int(t.sec);
    this.ensure(9);
    this.digits(t.nsec, 9);
  }

  /** The lowest `n` decimal digits of v >= 0 (zeros in front), straight to their places, lowest first. */
  private digits(v: number, n: number): void {
    const b = this.bytes;
    let at = this.length + n;
    this.length = at;
    // in 32-bit integer arithmetic once the value fits
    while (v > 0x7fffffff) {
      const q = Math.floor(v / 10);
      b[--at] = 0x30 + (v - q * 10);
      v = q;
    }
    while (at > this.length - n) {
      const q = (v / 10) | 0;
      b[--at] = 0x30 + (v - q * 10);
      v = q;
    }
  }

  /** What is written so far, and a fresh buffer for what follows. */
  take(): { bytes: Buffer; lines: number } {
    const out = { bytes: this.bytes.subarray(0, this.length), lines: this.lines };
    this.bytes = Buffer.allocUnsafe(this.initialSize);
    this.length = 0;
    this.lines = 0;
    return out;
  }
}

const SPACE = 0x20;
const COMMA = 0x2c;
const QUOTE = 0x22;
const NEWLINE = 0x0a;

/** A field key's bytes, "key=", made once per key: plugins use a handful. */
const fieldKeys = new Map<string, Buffer>();

function fieldKey(key: string): Buffer {
  let b = fieldKeys.get(key);
  if (b === undefined) {
    b = Buffer.from(`${escapeFieldKey(key)}=`);
    // keys are the collector's own names; a bound keeps a misuse from growing it without end
    if (fieldKeys.size < 1024) fieldKeys.set(key, b);
  }
  return b;
}

/** One field, key and value, into `w`; throws (the line then dropped) on what line protocol cannot carry. */
function writeField(w: LineWriter, key: string, v: FieldValue): void {
  if (key === '') throw new TypeError('a field has an empty key');
  // the value is checked before the key is written, so that its error is the one reported
  switch (typeof v) {
    case 'number':
      if (!Number.isSafeInteger(v)) throw new TypeError(`field ${quote(key)}: integer field is not a safe integer: ${v}`);
      w.copy(fieldKey(key));
      w.int(v);
      w.byte(0x69); // 'i'
      return;
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw new TypeError(`field ${quote(key)}: integer field is out of the int64 range: ${v}`);
      w.copy(fieldKey(key));
      w.ascii(v.toString());
      w.byte(0x69);
      return;
    case 'string':
      w.copy(fieldKey(key));
      if (STRING_SPECIAL.test(v)) {
        w.utf8(escapeStringField(v));
      } else {
        // most strings (paths, commands) need no escaping: written as they are
        w.byte(QUOTE);
        w.utf8(v);
        w.byte(QUOTE);
      }
      return;
    case 'boolean':
      w.copy(fieldKey(key));
      w.ascii(v ? 'true' : 'false');
      return;
    default:
      if (!Number.isFinite(v.float)) throw new TypeError(`field ${quote(key)}: float field is not finite: ${v.float}`);
      w.copy(fieldKey(key));
      w.ascii(String(v.float)); // no suffix: a float
  }
}

function writeFields(w: LineWriter, measurement: string, fields: Point['fields']): void {
  let first = true;
  for (const key in fields) {
    if (!first) w.byte(COMMA);
    first = false;
    writeField(w, key, fields[key]);
  }
  if (first) throw new TypeError(`point ${quote(measurement)} has no fields`);
}

/** A series' bytes (measurement and tags), cached for the tags object a plugin reuses. */
interface CachedSeries {
  measurement: string;
  bytes: Buffer;
}

/**
 * The one encoder every line goes through: points as plugins make them, plus
 * the tags every point carries (host, service, the user's; they win on a
 * clash). A plugin that hands over the same tags object for every point of a
 * series has the series encoded once: tags objects are not changed once handed
 * over.
 */
export class LineEncoder {
  private readonly series = new WeakMap<object, CachedSeries>();
  private readonly scratch = new LineWriter(4096);

  /** Points refused (a name or value line protocol cannot carry), each skipped alone. */
  refused = 0;
  lastRefusal = '';

  constructor(
    private readonly common: Readonly<Record<string, string>>,
    /** false: every point's tags encoded afresh (for callers that change a tags object after use) */
    private readonly cacheSeries = true,
  ) {}

  /** The point's line, or undefined (counted) when line protocol cannot carry it. */
  tryEncode(p: Point): string | undefined {
    try {
      return this.encode(p);
    } catch (err) {
      this.refuse(err);
      return undefined;
    }
  }

  /** The point's line, without its newline; throws when line protocol cannot carry it. */
  encode(p: Point): string {
    const w = this.scratch;
    w.length = 0;
    this.write(p, w);
    return w.bytes.toString('utf8', 0, w.length - 1);
  }

  /** The point's line, newline included, appended to `w`; false (counted, nothing written) when line protocol cannot carry it. */
  encodeInto(p: Point, w: LineWriter): boolean {
    const start = w.length;
    try {
      this.write(p, w);
      w.lines++;
      return true;
    } catch (err) {
      w.length = start;
      this.refuse(err);
      return false;
    }
  }

  private refuse(err: unknown): void {
    this.refused++;
    this.lastRefusal = (err as Error).message;
  }

  private write(p: Point, w: LineWriter): void {
    let series = this.cacheSeries ? this.series.get(p.tags) : undefined;
    if (series === undefined || series.measurement !== p.measurement) {
      series = { measurement: p.measurement, bytes: Buffer.from(encodeSeries(p.measurement, { ...p.tags, ...this.common })) };
      if (this.cacheSeries) this.series.set(p.tags, series);
    }
    w.copy(series.bytes);
    w.byte(SPACE);
    writeFields(w, p.measurement, p.fields);
    w.byte(SPACE);
    const t = p.time;
    if (typeof t === 'bigint') w.ascii(t.toString());
    else w.wallTime(t);
    w.byte(NEWLINE);
  }
}

const plain = new LineEncoder({}, false);

/** One point's line (no common tags), as the outputs write it. */
export function encodePoint(p: Point): string {
  return plain.encode(p);
}

export function encodePoints(points: Point[]): string {
  return points.map(encodePoint).join('\n');
}
