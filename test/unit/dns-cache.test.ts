import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DnsCache } from '../../src/enrich/dns-cache';

test('names addresses until their TTL (plus grace) runs out', () => {
  const c = new DnsCache(10, 500);
  c.add('198.51.100.7', 'www.example.com', 30, 1000);
  assert.equal(c.domainOf('198.51.100.7', 1000 + 30_000), 'www.example.com');
  assert.equal(c.domainOf('198.51.100.7', 1000 + 30_500), 'www.example.com');
  assert.equal(c.domainOf('198.51.100.7', 1000 + 30_501), undefined);
  assert.equal(c.size, 0, 'expired entries are dropped');
  assert.equal(c.domainOf('198.51.100.8'), undefined);
});

test('a newer answer replaces the name and the TTL', () => {
  const c = new DnsCache();
  c.add('2001:db8::1', 'a.example', 10, 0);
  c.add('2001:db8::1', 'b.example', 100, 5000);
  assert.equal(c.domainOf('2001:db8::1', 50_000), 'b.example');
});

test('bounded: the least recently used address goes first', () => {
  const c = new DnsCache(3);
  c.add('198.51.100.1', 'one', 60, 0);
  c.add('198.51.100.2', 'two', 60, 0);
  c.add('198.51.100.3', 'three', 60, 0);
  assert.equal(c.domainOf('198.51.100.1', 1), 'one'); // now most recently used
  c.add('198.51.100.4', 'four', 60, 0);
  assert.equal(c.size, 3);
  assert.equal(c.evicted, 1);
  assert.equal(c.domainOf('198.51.100.2', 1), undefined);
  assert.equal(c.domainOf('198.51.100.1', 1), 'one');
  assert.equal(c.domainOf('198.51.100.4', 1), 'four');
});
