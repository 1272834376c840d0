import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { configureLog } from '../../src/log';
import { LossWarnings } from '../../src/plugins/loss';

test('a loss counter that grows is logged once per growth, with its meaning', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-loss-')), 'log');
  configureLog('info', file);
  const w = new LossWarnings('dnsflow', { ringbuf_full: 'DNS packets lost: ring buffer full' });
  w.check({ ringbuf_full: 0, events: 10 });
  w.check({ ringbuf_full: 3, events: 20 });
  w.check({ ringbuf_full: 3, events: 30 });
  w.check({ ringbuf_full: 10 });
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0], /WARN dnsflow: ringbuf_full \+3 \(DNS packets lost: ring buffer full\)$/);
  assert.match(lines[1], /WARN dnsflow: ringbuf_full \+7 /);
  fs.rmSync(path.dirname(file), { recursive: true });
});
