// A strict reader of InfluxDB line protocol, for asserting on collector output.
export interface ParsedPoint {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, number | string | boolean>;
  time: bigint;
}

/** Splits `s` at unescaped `sep` characters (outside double quotes when `quotes`). */
function split(s: string, sep: string, quotes: boolean): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (quotes && c === '"') {
      inQuote = !inQuote;
      cur += c;
    } else if (c === sep && !inQuote) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}

const unescape = (s: string) => s.replace(/\\([,= \\])/g, '$1');

export function parseLine(line: string): ParsedPoint {
  const parts = split(line, ' ', true);
  if (parts.length !== 3) throw new Error(`expected 3 sections: ${line}`);
  const [head, fieldsText, ts] = parts;
  const [measurement, ...tagParts] = split(head, ',', false);
  const tags: Record<string, string> = {};
  for (const t of tagParts) {
    const [k, v, ...extra] = split(t, '=', false);
    if (v === undefined || extra.length) throw new Error(`bad tag ${t} in ${line}`);
    tags[unescape(k)] = unescape(v);
  }
  const fields: Record<string, number | string | boolean> = {};
  for (const f of split(fieldsText, ',', true)) {
    const eq = f.search(/(?<!\\)=/);
    const k = unescape(f.slice(0, eq));
    const v = f.slice(eq + 1);
    if (v.startsWith('"')) fields[k] = v.slice(1, -1).replace(/\\(["\\])/g, '$1');
    else if (/^-?\d+i$/.test(v)) fields[k] = Number(v.slice(0, -1));
    else if (v === 'true' || v === 'false') fields[k] = v === 'true';
    else fields[k] = Number(v);
  }
  if (!/^\d+$/.test(ts)) throw new Error(`bad timestamp in ${line}`);
  return { measurement: unescape(measurement), tags, fields, time: BigInt(ts) };
}
