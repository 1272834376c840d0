// Go-style durations: what DataKit users write in --interval and ebpf.conf.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DurationError, parseDuration } from '../../src/config/duration';

function rejects(text: string, why: string): void {
  assert.throws(
    () => parseDuration(text),
    (e: unknown) => e instanceof DurationError && e.message === `invalid duration ${JSON.stringify(text)}: ${why}`,
    `parseDuration(${JSON.stringify(text)})`,
  );
}

test('single units', () => {
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1m'), 60_000);
  assert.equal(parseDuration('5s'), 5_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('10us'), 0.01);
  assert.equal(parseDuration('1500\u00b5s'), 1.5); // micro sign
  assert.equal(parseDuration('1500\u03bcs'), 1.5); // Greek mu
  assert.equal(parseDuration('2000000ns'), 2);
  assert.equal(parseDuration('1ns'), 1e-6);
});

test('combined units, in any order, as Go allows', () => {
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1h2m3s'), 3_723_000);
  assert.equal(parseDuration('1h2m3s4ms5us6ns'), 3_723_004.005006);
  assert.equal(parseDuration('30s1m'), 90_000);
  assert.equal(parseDuration('1s1s'), 2_000);
  assert.equal(parseDuration('1s.5s'), 1_500);
});

test('fractions are exact', () => {
  assert.equal(parseDuration('2.5s'), 2_500);
  assert.equal(parseDuration('1.1s'), 1_100); // not 1100.0000000000002
  assert.equal(parseDuration('0.3s'), 300);
  assert.equal(parseDuration('2.5h'), 9_000_000);
  assert.equal(parseDuration('.5s'), 500);
  assert.equal(parseDuration('1.s'), 1_000);
  assert.equal(parseDuration('1.5m30s'), 120_000);
  assert.equal(parseDuration('0.0000000015s'), 1e-6); // below 1 ns is truncated
});

test('sign and surrounding spaces', () => {
  assert.equal(parseDuration('+5s'), 5_000);
  assert.equal(parseDuration('  5s\t'), 5_000);
  assert.equal(parseDuration('5s\n'), 5_000);
});

test('the largest Go duration is accepted, one more is not', () => {
  assert.equal(parseDuration('9223372036854775807ns'), 9223372036854.775807);
  rejects('9223372036854775808ns', 'too large');
  rejects('2562048h', 'too large');
  rejects('99999999999999999999999h', 'too large');
});

test('empty', () => {
  rejects('', 'empty');
  rejects('   ', 'empty');
});

test('negative', () => {
  rejects('-5s', 'must not be negative');
  rejects('-0s', 'must not be negative');
});

test('zero', () => {
  rejects('0', 'must be greater than zero');
  rejects('0s', 'must be greater than zero');
  rejects('0h0m0s', 'must be greater than zero');
  rejects('0.0ms', 'must be greater than zero');
  rejects('0.1ns', 'must be greater than zero'); // truncated to 0 ns
});

test('without a unit', () => {
  rejects('10', 'missing unit after "10"; use ns, us, ms, s, m or h');
  rejects('1.5', 'missing unit after "1.5"; use ns, us, ms, s, m or h');
  rejects('1m30', 'missing unit after "30"; use ns, us, ms, s, m or h');
});

test('unknown units', () => {
  rejects('5x', 'unknown unit "x"; use ns, us, ms, s, m or h');
  rejects('5S', 'unknown unit "S"; use ns, us, ms, s, m or h');
  rejects('1d', 'unknown unit "d"; use ns, us, ms, s, m or h');
  rejects('5sec', 'unknown unit "sec"; use ns, us, ms, s, m or h');
  rejects('5 s', 'unknown unit " s"; use ns, us, ms, s, m or h');
  rejects('1m 30s', 'unknown unit "m "; use ns, us, ms, s, m or h');
  rejects('1h-5m', 'unknown unit "h-"; use ns, us, ms, s, m or h');
});

test('garbage', () => {
  rejects('s', 'expected a number followed by a unit, e.g. 5s or 1m30s');
  rejects('abc', 'expected a number followed by a unit, e.g. 5s or 1m30s');
  rejects('.s', 'expected a number followed by a unit, e.g. 5s or 1m30s');
  rejects('--5s', 'must not be negative');
  rejects('1.2.3s', 'unexpected ".3s" after "1.2"');
  rejects('1s1.2.3s', 'unexpected ".3s" after "1s1.2"');
  rejects('1s.x', 'unexpected ".x" after "1s"');
});

test('messages stay on one line', () => {
  rejects('5\nx', 'unknown unit "\\nx"; use ns, us, ms, s, m or h');
});
