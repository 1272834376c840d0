import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ipType, isEphemeralPort, isLoopback } from '../../src/enrich/iptype';

test('IPv4 types', () => {
  const cases: [string, string][] = [
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.254', 'private'],
    ['172.15.0.1', 'other'],
    ['172.32.0.1', 'other'],
    ['192.168.1.1', 'private'],
    ['192.169.1.1', 'other'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['240.0.0.1', 'other'],
    ['127.0.0.1', 'loopback'],
    ['127.10.0.1', 'loopback'],
    ['198.51.100.1', 'other'],
    ['8.8.8.8', 'other'],
  ];
  for (const [ip, want] of cases) assert.equal(ipType(ip), want, ip);
});

test('IPv6 types', () => {
  const cases: [string, string][] = [
    ['::1', 'loopback'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fe80::1', 'other'],
    ['ff02::1', 'multicast'],
    ['ff05::1:3', 'multicast'],
    ['2001:db8::1', 'other'],
    ['::', 'other'],
  ];
  for (const [ip, want] of cases) assert.equal(ipType(ip), want, ip);
  assert.equal(isLoopback('::1'), true);
  assert.equal(isLoopback('::2'), false);
});

test('ephemeral port range is 32768-60999', () => {
  assert.equal(isEphemeralPort(32767), false);
  assert.equal(isEphemeralPort(32768), true);
  assert.equal(isEphemeralPort(60999), true);
  assert.equal(isEphemeralPort(61000), false);
  assert.equal(isEphemeralPort(80), false);
});
