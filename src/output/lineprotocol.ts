// InfluxDB line protocol encoder (SPEC §3).
import type { FieldValue, Point } from './point';

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

function encodeField(key: string, v: FieldValue): string {
  if (key === '') throw new TypeError('a field has an empty key');
  let text: string;
  switch (typeof v) {
    case 'number':
      if (!Number.isSafeInteger(v)) throw new TypeError(`field ${quote(key)}: integer field is not a safe integer: ${v}`);
      text = `${v}i`;
      break;
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw new TypeError(`field ${quote(key)}: integer field is out of the int64 range: ${v}`);
      text = `${v}i`;
      break;
    case 'string':
      text = escapeStringField(v);
      break;
    case 'boolean':
      text = v ? 'true' : 'false';
      break;
    default:
      if (!Number.isFinite(v.float)) throw new TypeError(`field ${quote(key)}: float field is not finite: ${v.float}`);
      text = String(v.float); // no suffix: a float
  }
  return `${escapeFieldKey(key)}=${text}`;
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

export function encodeFields(measurement: string, fields: Point['fields']): string {
  const fieldKeys = Object.keys(fields);
  if (!fieldKeys.length) throw new TypeError(`point ${quote(measurement)} has no fields`);
  let out = '';
  for (let i = 0; i < fieldKeys.length; i++) {
    if (i) out += ',';
    out += encodeField(fieldKeys[i], fields[fieldKeys[i]]);
  }
  return out;
}

export function encodePoint(p: Point): string {
  return `${encodeSeries(p.measurement, p.tags)} ${encodeFields(p.measurement, p.fields)} ${p.time}`;
}

export function encodePoints(points: Point[]): string {
  return points.map(encodePoint).join('\n');
}

/**
 * The one encoder every line goes through: points as plugins make them, plus
 * the tags every point carries (host, service, the user's; they win on a
 * clash). A plugin that hands over the same tags object for every point of a
 * series has the series encoded once: tags objects are not changed once handed
 * over.
 */
export class LineEncoder {
  private readonly series = new WeakMap<object, string>();

  /** Points refused (a name or value line protocol cannot carry), each skipped alone. */
  refused = 0;
  lastRefusal = '';

  constructor(private readonly common: Readonly<Record<string, string>>) {}

  /** The point's line, or undefined (counted) when line protocol cannot carry it. */
  tryEncode(p: Point): string | undefined {
    try {
      return this.encode(p);
    } catch (err) {
      this.refused++;
      this.lastRefusal = (err as Error).message;
      return undefined;
    }
  }

  encode(p: Point): string {
    let series = this.series.get(p.tags);
    if (series === undefined) {
      series = encodeSeries(p.measurement, { ...p.tags, ...this.common });
      this.series.set(p.tags, series);
    }
    return `${series} ${encodeFields(p.measurement, p.fields)} ${p.time}`;
  }
}
