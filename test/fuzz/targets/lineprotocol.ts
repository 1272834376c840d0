// The line-protocol encoder: points with hostile tag keys and values, field
// keys and values (newlines, quotes, backslashes, commas, equals signs,
// spaces, unicode, lone surrogates, NaN and infinities, unsafe integers,
// bigints past int64) and common tags. Each point becomes exactly one line that
// InfluxDB reads back to the values given (with the documented changes: CR
// and LF written as \r and \n, a trailing backslash gaining a space), or is
// refused with a TypeError of one line (no fields, an empty or '#' measurement,
// an empty key, an unsafe number, a bigint past int64, a float not finite, a
// field key whose backslash InfluxDB would take as an escape).
import assert from 'node:assert/strict';
import { LineEncoder } from '../../../src/output/lineprotocol';
import type { FieldValue, Point } from '../../../src/output/point';
import type { FuzzTarget } from '../harness';
import { checkLine, FieldText } from '../influx-line';
import { NASTY_CHARS } from '../mutate';
import { Random } from '../random';

export interface LineInput {
  point: Point;
  common: Record<string, string>;
}

const WORDS = ['netflow', 'httpflow', 'dnsflow', 'bash', 'host', 'src_ip', 'path', 'status_code', 'a', 'x y', 'k=v', 'a,b', '', '中文', '☃'];

function nasty(rng: Random, maxParts = 6): string {
  let s = '';
  for (let n = rng.range(1, maxParts); n > 0; n--) s += rng.chance(0.5) ? rng.pick(NASTY_CHARS) : rng.pick(WORDS);
  if (rng.chance(0.1)) s += String.fromCharCode(rng.int(0x10000));
  return s;
}

const INT64_MAX = 2n ** 63n - 1n;

function fieldValue(rng: Random): FieldValue {
  switch (rng.int(7)) {
    case 0:
      return rng.pick([0, -0, 1, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 1.5, NaN, Infinity, -Infinity, rng.u32(), -rng.u32()]);
    case 1:
      return rng.pick([0n, -1n, INT64_MAX, -INT64_MAX - 1n, INT64_MAX + 1n, -INT64_MAX - 2n, 2n ** 100n, BigInt(rng.u32()) * BigInt(rng.u32())]);
    case 2:
      return { float: rng.pick([0, -0, 1.5, -2.25, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, NaN, Infinity, -Infinity, rng.u32() / 7]) };
    case 3:
      return rng.chance(0.5);
    default:
      return rng.chance(0.1) ? '' : nasty(rng, 10);
  }
}

export function generateLine(rng: Random): LineInput {
  const tags: Point['tags'] = {};
  for (let n = rng.int(7); n > 0; n--) tags[rng.chance(0.5) ? rng.pick(WORDS) : nasty(rng, 3)] = rng.chance(0.1) ? undefined : nasty(rng);
  const fields: Point['fields'] = {};
  for (let n = rng.chance(0.02) ? 0 : rng.range(1, 5); n > 0; n--) fields[rng.chance(0.6) ? rng.pick(WORDS) : nasty(rng, 3)] = fieldValue(rng);
  const common: Record<string, string> = {};
  for (let n = rng.int(3); n > 0; n--) common[rng.pick(['host', 'service', 'cluster', nasty(rng, 2)])] = nasty(rng, 3);
  const measurement = rng.chance(0.8) ? rng.pick(['netflow', 'httpflow', 'dnsflow', 'bash']) : nasty(rng, 3);
  const time = rng.chance(0.5) ? 1_700_000_000_000_000_000n + BigInt(rng.u32()) : (BigInt(rng.u32()) * BigInt(rng.u32())) >> 1n; // within int64, as clocks give
  return { point: { measurement, tags, fields, time }, common };
}

/** What a string reads back as: CR and LF visible, as the line leaves in UTF-8 (a lone surrogate becomes U+FFFD). */
const shown = (s: string) => Buffer.from(s.replace(/\n/g, '\\n').replace(/\r/g, '\\r'), 'utf8').toString('utf8');
/** A measurement, key or tag value read back: a trailing backslash gains a space, so as not to escape what follows. */
const shownName = (s: string) => (shown(s).endsWith('\\') ? `${shown(s)} ` : shown(s));

/** Why the encoder must refuse the point, if it must. */
function refusal(p: Point, tags: Record<string, string | undefined>): string | undefined {
  const keys = Object.keys(p.fields);
  if (!keys.length) return 'no fields';
  if (p.measurement === '' || p.measurement.startsWith('#')) return 'measurement';
  for (const [k, v] of Object.entries(tags)) if (k === '' && v) return 'empty tag key';
  for (const k of keys) {
    const v = p.fields[k];
    if (k === '') return 'empty field key';
    if (/\\([,= "]|$)/.test(k)) return 'field key with a backslash InfluxDB would read as an escape';
    if (typeof v === 'number' && !Number.isSafeInteger(v)) return 'unsafe integer';
    if (typeof v === 'bigint' && (v > INT64_MAX || v < -INT64_MAX - 1n)) return 'bigint out of range';
    if (typeof v === 'object' && !Number.isFinite(v.float)) return 'float not finite';
  }
  return undefined;
}

function expectedField(v: FieldValue): FieldText {
  switch (typeof v) {
    case 'number':
    case 'bigint':
      return { kind: 'integer', value: BigInt(v).toString() };
    case 'string':
      return { kind: 'string', value: shown(v) };
    case 'boolean':
      return { kind: 'boolean', value: String(v) };
    default:
      return { kind: 'float', value: String(v.float) };
  }
}

export const lineTarget: FuzzTarget<LineInput> = {
  name: 'lineprotocol',
  describe: 'points with hostile tags, fields and common tags through the line encoder, read back as InfluxDB does',
  generate: generateLine,
  run({ point, common }) {
    const merged = { ...point.tags, ...common };
    const why = refusal(point, merged);
    let line: string;
    try {
      line = new LineEncoder(common).encode(point);
    } catch (err) {
      assert.ok(why, `refused a valid point: ${(err as Error).message}`);
      assert.ok(err instanceof TypeError, `not a TypeError: ${err}`);
      assert.ok(!/[\r\n]/.test(err.message), 'message of more than one line');
      return;
    }
    assert.equal(why, undefined, `accepted a point it must refuse (${why}): ${line}`);
    const got = checkLine(line);
    assert.equal(got.measurement, shownName(point.measurement));
    const tags = Object.keys(merged)
      .filter((k) => merged[k])
      .sort()
      .map((k) => [shownName(k), shownName(merged[k]!)]);
    assert.deepEqual(got.tags, tags);
    assert.deepEqual(
      got.fields,
      Object.keys(point.fields).map((k) => [shownName(k), expectedField(point.fields[k])]),
    );
    assert.equal(got.time, point.time);
  },
  save: ({ point, common }) =>
    JSON.stringify(
      { point: { ...point, time: String(point.time), fields: Object.fromEntries(Object.entries(point.fields).map(([k, v]) => [k, saveField(v)])) }, common },
      null,
      1,
    ),
  load(text) {
    const o = JSON.parse(text) as { point: { measurement: string; tags: Point['tags']; fields: Record<string, unknown>; time: string }; common: Record<string, string> };
    const fields = Object.fromEntries(Object.entries(o.point.fields).map(([k, v]) => [k, loadField(v)]));
    return { point: { measurement: o.point.measurement, tags: o.point.tags, fields, time: BigInt(o.point.time) }, common: o.common };
  },
};

/** JSON has no bigint, NaN or infinities: they travel tagged. */
function saveField(v: FieldValue): unknown {
  if (typeof v === 'bigint') return { bigint: String(v) };
  if (typeof v === 'number') return { number: String(v) };
  if (typeof v === 'object') return { float: String(v.float) };
  return v;
}

function loadField(v: unknown): FieldValue {
  if (typeof v === 'object' && v !== null) {
    const o = v as { bigint?: string; number?: string; float?: string };
    if (o.bigint !== undefined) return BigInt(o.bigint);
    if (o.number !== undefined) return Number(o.number);
    return { float: Number(o.float) };
  }
  return v as string | boolean;
}
