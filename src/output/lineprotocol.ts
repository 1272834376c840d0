// InfluxDB line protocol encoder (SPEC §3).
import type { FieldValue, Point } from './point';

// Raw CR/LF would end the line: they are written as the two characters \n / \r.
function noNewlines(s: string): string {
  return s.includes('\n') || s.includes('\r') ? s.replace(/\n/g, '\\n').replace(/\r/g, '\\r') : s;
}

const MEASUREMENT_SPECIAL = /[, ]/g;
const KEY_SPECIAL = /[,= ]/g;

export function escapeMeasurement(s: string): string {
  return noNewlines(s).replace(MEASUREMENT_SPECIAL, '\\$&');
}

const NEEDS_ESCAPE = /[,= \\\r\n]/;

/** Tag keys, tag values and field keys. */
export function escapeKey(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return s; // the common case: nothing to do
  let out = noNewlines(s).replace(KEY_SPECIAL, '\\$&');
  // A trailing backslash would escape the separator that follows it; InfluxDB
  // reads "\\" as two characters, so the only safe encoding is to add a space
  // and escape it. This changes the value by one trailing space, rather than
  // making the whole line unparseable.
  if (out.endsWith('\\') && !out.endsWith('\\ ') && !out.endsWith('\\,') && !out.endsWith('\\=')) out += '\\ ';
  return out;
}

const STRING_SPECIAL = /[\\"\n\r]/;

export function escapeStringField(s: string): string {
  // most strings (paths, commands) need nothing: skip the replacements for them
  if (!STRING_SPECIAL.test(s)) return `"${s}"`;
  return `"${s.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\\\n').replace(/\r/g, '\\\\r')}"`;
}

function encodeField(key: string, v: FieldValue): string {
  let text: string;
  switch (typeof v) {
    case 'number':
      if (!Number.isSafeInteger(v)) throw new TypeError(`field ${key}: integer field is not a safe integer: ${v}`);
      text = `${v}i`;
      break;
    case 'bigint':
      text = `${v}i`;
      break;
    case 'string':
      text = escapeStringField(v);
      break;
    case 'boolean':
      text = v ? 'true' : 'false';
      break;
    default:
      if (!Number.isFinite(v.float)) throw new TypeError(`field ${key}: float field is not finite: ${v.float}`);
      text = String(v.float); // no suffix: a float
  }
  return `${escapeKey(key)}=${text}`;
}

/** Measurement and tags: the part of a line that hot paths cache and reuse. */
export function encodeSeries(measurement: string, tags: Point['tags']): string {
  let line = escapeMeasurement(measurement);
  // InfluxDB's canonical order: tags sorted by key
  const tagKeys = Object.keys(tags).sort();
  for (const k of tagKeys) {
    const v = tags[k];
    if (v === undefined || v === '') continue;
    line += `,${escapeKey(k)}=${escapeKey(v)}`;
  }
  return line;
}

export function encodeFields(measurement: string, fields: Point['fields']): string {
  const fieldKeys = Object.keys(fields);
  if (!fieldKeys.length) throw new TypeError(`point ${measurement} has no fields`);
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

  constructor(private readonly common: Readonly<Record<string, string>>) {}

  encode(p: Point): string {
    let series = this.series.get(p.tags);
    if (series === undefined) {
      series = encodeSeries(p.measurement, { ...p.tags, ...this.common });
      this.series.set(p.tags, series);
    }
    return `${series} ${encodeFields(p.measurement, p.fields)} ${p.time}`;
  }
}
