// A strict reader of one line of InfluxDB 1.x line protocol, following the
// server's own scanning rules: in the measurement and the tags a character is
// escaped when a backslash precedes it; in the fields a backslash takes the
// character after it, and double quotes enclose string values. Anything the
// server would refuse is an error here.

export type FieldText = { kind: 'string' | 'integer' | 'float' | 'boolean'; value: string };

export interface InfluxPoint {
  measurement: string;
  tags: [string, string][];
  fields: [string, FieldText][];
  time: bigint;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Unescapes the measurement (`\,` and `\ `), a tag key or value (also `\=`) or a field key (also `\"`). */
function unescape(s: string, specials: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length && specials.includes(s[i + 1])) {
      out += s[i + 1];
      i++;
    } else out += s[i];
  }
  return out;
}

/** Index of the first of `stops` at or after `from` not preceded by a backslash, or the end. */
function scanPlain(line: string, from: number, stops: string): number {
  for (let i = from; i < line.length; i++) if (stops.includes(line[i]) && (i === 0 || line[i - 1] !== '\\')) return i;
  return line.length;
}

export function parseInfluxLine(line: string): InfluxPoint {
  const fail = (why: string): never => {
    throw new Error(`invalid line protocol (${why}): ${JSON.stringify(line.length > 300 ? `${line.slice(0, 300)}...` : line)}`);
  };
  if (/[\n]/.test(line)) fail('more than one line');
  if (line.startsWith('#')) fail('a comment');
  if (line.startsWith(' ')) fail('leading space');
  // measurement
  let i = scanPlain(line, 0, ', ');
  const measurement = unescape(line.slice(0, i), ', ');
  if (!measurement) fail('no measurement');
  // tags
  const tags: [string, string][] = [];
  while (line[i] === ',') {
    const keyEnd = scanPlain(line, i + 1, '=, ');
    if (line[keyEnd] !== '=') fail('tag without a value');
    const valueEnd = scanPlain(line, keyEnd + 1, ', ');
    const key = line.slice(i + 1, keyEnd);
    const value = line.slice(keyEnd + 1, valueEnd);
    if (!key) fail('empty tag key');
    if (!value) fail('empty tag value');
    tags.push([unescape(key, ',= '), unescape(value, ',= ')]);
    i = valueEnd;
  }
  if (line[i] !== ' ') fail('no fields');
  while (line[i] === ' ') i++;
  // fields: backslash pairs, quoted strings
  const fields: [string, FieldText][] = [];
  let start = i;
  let quoted = false;
  // past the current field's '=': only there does a quote open a string
  let inValue = false;
  let end = -1;
  const parts: string[] = [];
  for (; i <= line.length; i++) {
    const c = line[i];
    if (i === line.length || (!quoted && (c === ' ' || c === ','))) {
      parts.push(line.slice(start, i));
      start = i + 1;
      inValue = false;
      if (i === line.length || c === ' ') {
        end = i;
        break;
      }
      continue;
    }
    if (c === '\\' && i + 1 < line.length) {
      i++;
      continue;
    }
    if (c === '=' && !quoted) inValue = true;
    else if (c === '"' && inValue) quoted = !quoted;
  }
  if (quoted) fail('unterminated string');
  for (const f of parts) {
    let eq = -1;
    for (let k = 0; k < f.length; k++) {
      if (f[k] === '\\') k++;
      else if (f[k] === '=') {
        eq = k;
        break;
      }
    }
    if (eq <= 0) fail(`field without a key or value: ${f}`);
    const key = unescape(f.slice(0, eq), ',= "');
    const v = f.slice(eq + 1);
    fields.push([key, fieldValue(v, fail)]);
  }
  // timestamp
  i = end;
  while (line[i] === ' ') i++;
  const ts = line.slice(i);
  if (!/^-?\d+$/.test(ts)) fail('bad timestamp');
  const time = BigInt(ts);
  if (time < INT64_MIN || time > INT64_MAX) fail('timestamp out of range');
  return { measurement, tags, fields, time };
}

function fieldValue(v: string, fail: (why: string) => never): FieldText {
  if (v.startsWith('"')) {
    if (v.length < 2 || !v.endsWith('"')) fail(`bad string ${v}`);
    let out = '';
    const inner = v.slice(1, -1);
    for (let k = 0; k < inner.length; k++) {
      if (inner[k] === '\\' && k + 1 < inner.length && (inner[k + 1] === '"' || inner[k + 1] === '\\')) {
        out += inner[k + 1];
        k++;
      } else if (inner[k] === '"') fail(`unescaped quote in ${v}`);
      else out += inner[k];
    }
    return { kind: 'string', value: out };
  }
  if (/^[-]?\d+i$/.test(v)) {
    const n = BigInt(v.slice(0, -1));
    if (n < INT64_MIN || n > INT64_MAX) fail(`integer out of range ${v}`);
    return { kind: 'integer', value: n.toString() };
  }
  if (/^(t|T|true|True|TRUE|f|F|false|False|FALSE)$/.test(v)) return { kind: 'boolean', value: v[0].toLowerCase() === 't' ? 'true' : 'false' };
  // floats as Go's ParseFloat reads them, but neither NaN nor infinities
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v) && Number.isFinite(Number(v))) return { kind: 'float', value: v };
  return fail(`bad field value ${v}`);
}

/** One line as the collector writes it: valid, no raw CR or LF, as it leaves in UTF-8. */
export function checkLine(line: string): InfluxPoint {
  if (/[\r\n]/.test(line)) throw new Error(`raw CR or LF in ${JSON.stringify(line)}`);
  return parseInfluxLine(Buffer.from(line, 'utf8').toString('utf8'));
}
