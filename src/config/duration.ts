// Go-style durations as DataKit users write them in flags and ebpf.conf: "5s", "1m30s",
// "500ms", "2.5h", "10us". Same grammar as Go's time.ParseDuration (a sequence of decimal
// numbers, each with a unit), except that zero and negative durations are refused: every
// duration this collector reads is a period, and a period of zero makes no sense.

/** Bad duration text; the message names the text and what is wrong with it, on one line. */
export class DurationError extends Error {}

// Nanoseconds per unit. Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC).
const NS_PER_UNIT: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1_000n],
  ['\u00b5s', 1_000n],
  ['\u03bcs', 1_000n],
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);
const UNITS_HINT = 'use ns, us, ms, s, m or h';
/** Go's time.Duration is an int64 of nanoseconds: keep the same range. */
const MAX_NS = (1n << 63n) - 1n;

// One "number unit" component: digits, optional fraction, then everything up to the next number.
const NUMBER = /^(\d*)(?:\.(\d*))?/;
const UNIT = /^[^\d.]*/;

/**
 * Parses a duration and returns it in milliseconds (possibly fractional: "1500us" is 1.5).
 * Arithmetic is done on integer nanoseconds, like Go, so "1.1s" is exactly 1100.
 * Throws a DurationError for empty, negative, zero, unitless or malformed text.
 */
export function parseDuration(text: string): number {
  const fail = (why: string) => new DurationError(`invalid duration ${JSON.stringify(text)}: ${why}`);

  let s = text.trim();
  if (s === '') throw fail('empty');
  if (s.startsWith('-')) throw fail('must not be negative');
  if (s.startsWith('+')) s = s.slice(1);
  // Go accepts a bare "0" without a unit; it is still zero
  if (s === '0') throw fail('must be greater than zero');

  let totalNs = 0n;
  let consumed = '';
  while (s !== '') {
    const num = NUMBER.exec(s)!;
    const [numText, intDigits, fracDigits = ''] = num;
    if (intDigits === '' && fracDigits === '') {
      throw fail(consumed === '' ? 'expected a number followed by a unit, e.g. 5s or 1m30s' : unexpected(s, consumed));
    }
    const rest = s.slice(numText.length);
    const unit = UNIT.exec(rest)![0];
    if (unit === '') {
      // "10" or "1m30": the number runs to the end; "1.2.3s": a second dot follows it
      if (rest === '') throw fail(`missing unit after ${JSON.stringify(numText)}; ${UNITS_HINT}`);
      throw fail(unexpected(rest, consumed + numText));
    }
    const perUnit = NS_PER_UNIT.get(unit);
    if (perUnit === undefined) throw fail(`unknown unit ${JSON.stringify(unit)}; ${UNITS_HINT}`);

    // the fraction is truncated below one nanosecond, as Go does
    totalNs += BigInt(intDigits || '0') * perUnit;
    if (fracDigits !== '') totalNs += (BigInt(fracDigits) * perUnit) / 10n ** BigInt(fracDigits.length);
    if (totalNs > MAX_NS) throw fail('too large');

    consumed += numText + unit;
    s = rest.slice(unit.length);
  }
  if (totalNs === 0n) throw fail('must be greater than zero');
  return Number(totalNs) / 1e6;
}

function unexpected(rest: string, after: string): string {
  return `unexpected ${JSON.stringify(rest)} after ${JSON.stringify(after)}`;
}
