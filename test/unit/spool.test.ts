// The buffer dir: order across restarts (a new Spool over the same dir is a
// restart), acknowledgements that survive one, damage skipped and counted, and
// the bound dropping the oldest batches, counted in points.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { configureLog } from '../../src/log';
import { Spool } from '../../src/output/spool';
import type { Category } from '../../src/output/point';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-spool-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let dirs = 0;
let dir: string;
let logFile: string;
beforeEach(() => {
  dir = path.join(root, `buf-${++dirs}`);
  logFile = path.join(root, `log-${dirs}`);
  configureLog('info', logFile);
});
const warnings = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes(' WARN ')) : []);

/** A batch of `n` lines named after `tag`, as the output would write it. */
const batch = (tag: string, n = 2) => Array.from({ length: n }, (_, i) => `m,tag=${tag} i=${i}i 1`).join('\n');
const MiB = 2 ** 20;

/** Takes every waiting batch of `category` in order, acknowledging each; returns their bodies. */
function takeAll(spool: Spool, category: Category = 'network'): string[] {
  const out: string[] = [];
  for (let b = spool.next(category); b; b = spool.next(category)) {
    out.push(b.body.toString());
    spool.ack(category);
  }
  return out;
}

const segments = (category: Category = 'network') =>
  fs.existsSync(path.join(dir, category)) ? fs.readdirSync(path.join(dir, category)).filter((f) => f.endsWith('.seg')).sort() : [];

describe('order and acknowledgement', () => {
  test('batches come back in order, per category, across restarts; delivered files are deleted', () => {
    const a = new Spool(dir, { maxBytes: MiB, segmentBytes: 100 });
    a.append('network', batch('n1'), 2);
    a.append('logging', batch('l1', 1), 1);
    a.append('network', batch('n2', 3), 3);
    a.append('network', batch('n3'), 2);
    assert.deepEqual([a.points('network'), a.points('logging'), a.points()], [7, 1, 8]);
    assert.ok(segments().length >= 2, `small segments roll over: ${segments()}`);
    a.close();

    const b = new Spool(dir, { maxBytes: MiB, segmentBytes: 100 });
    assert.deepEqual([b.points('network'), b.points('logging')], [7, 1]);
    b.append('network', batch('n4'), 2);
    assert.deepEqual(takeAll(b), [batch('n1'), batch('n2', 3), batch('n3'), batch('n4')]);
    assert.deepEqual(takeAll(b, 'logging'), [batch('l1', 1)]);
    assert.deepEqual([b.points(), b.size, b.corrupt, b.droppedFull], [0, 0, 0, 0]);
    b.close();
    assert.deepEqual([segments('network'), segments('logging')], [[], []], 'nothing waits: no files');
    assert.deepEqual(new Spool(dir, { maxBytes: MiB }).points(), 0);
  });

  test('after a crash only the batch in flight comes again; acknowledged ones never', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    for (const t of ['b1', 'b2', 'b3', 'b4']) a.append('network', batch(t), 2);
    assert.equal(a.next('network')?.body.toString(), batch('b1'));
    a.ack('network');
    assert.equal(a.next('network')?.body.toString(), batch('b2'));
    // SIGKILL here: b2 in flight, never closed

    const b = new Spool(dir, { maxBytes: MiB });
    assert.equal(b.points('network'), 6);
    assert.equal(b.next('network')?.body.toString(), batch('b2'));
    b.release('network'); // its post failed: stays first
    assert.deepEqual(takeAll(b), [batch('b2'), batch('b3'), batch('b4')]);
  });

  test('new segments after a restart sort after the old ones, even once the old are delivered', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    a.append('network', batch('old'), 2);
    a.close();
    const b = new Spool(dir, { maxBytes: MiB });
    b.append('network', batch('new'), 2);
    const [first, second] = segments();
    assert.ok(first < second, `${first} < ${second}`);
    assert.equal(b.next('network')?.body.toString(), batch('old'));
    b.ack('network');
    // the old file is gone, the ack names the new one: a third run must not reuse old numbers
    const c = new Spool(dir, { maxBytes: MiB });
    c.append('network', batch('newer'), 2);
    assert.deepEqual(takeAll(c), [batch('new'), batch('newer')]);
  });
});

describe('damage', () => {
  test('a last record cut short (power loss mid-write) is skipped with one warning; the rest is kept', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    for (const t of ['r1', 'r2', 'r3']) a.append('network', batch(t, 5), 5);
    a.close();
    const file = path.join(dir, 'network', segments()[0]);
    fs.truncateSync(file, fs.statSync(file).size - 20);

    const b = new Spool(dir, { maxBytes: MiB });
    assert.deepEqual([b.corrupt, b.points('network')], [1, 10]);
    const w = warnings();
    assert.equal(w.length, 1, w.join('\n'));
    assert.match(w[0], /buffer: network\/\d{16}\.seg: 1 damaged stretch\(es\) skipped: record cut short at byte \d+/);
    b.append('network', batch('r4'), 2);
    assert.deepEqual(takeAll(b), [batch('r1', 5), batch('r2', 5), batch('r4')]);

    // repaired: a later start finds nothing wrong
    fs.rmSync(logFile);
    const c = new Spool(dir, { maxBytes: MiB });
    assert.deepEqual([c.corrupt, c.points()], [0, 0]);
  });

  test('garbage between records is skipped; the records after it are read', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    for (const t of ['g1', 'g2']) a.append('network', batch(t), 2);
    a.close();
    const file = path.join(dir, 'network', segments()[0]);
    const bytes = fs.readFileSync(file);
    const second = 8 + 24 + Buffer.byteLength(batch('g1'));
    const garbage = Buffer.from('\u0000\u0013garbage DKBR not a record');
    fs.writeFileSync(file, Buffer.concat([bytes.subarray(0, second), garbage, bytes.subarray(second)]));

    const b = new Spool(dir, { maxBytes: MiB });
    assert.deepEqual([b.corrupt, b.points('network')], [1, 4]);
    assert.match(warnings().join('\n'), new RegExp(`1 damaged stretch\\(es\\) skipped: not a record at byte ${second}$`));
    assert.equal(b.next('network')?.body.toString(), batch('g1'));
    b.ack('network');
    // SIGKILL: a restart reads the repaired file from the ack on
    const c = new Spool(dir, { maxBytes: MiB });
    assert.deepEqual([c.corrupt, c.points('network')], [0, 2]);
    assert.deepEqual(takeAll(c), [batch('g2')]);
  });

  test('a file with the wrong header, an empty file and a bad ack are survived', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    a.append('logging', batch('ok'), 2);
    a.close();
    fs.writeFileSync(path.join(dir, 'logging', '0000000000000000.seg'), 'PK\u0003\u0004 not ours at all');
    fs.writeFileSync(path.join(dir, 'logging', '0000000000000099.seg'), '');
    fs.writeFileSync(path.join(dir, 'logging', 'notes.txt'), 'left alone');
    fs.writeFileSync(path.join(dir, 'logging', 'ack'), 'garbage');

    const b = new Spool(dir, { maxBytes: MiB });
    assert.deepEqual([b.corrupt, b.points('logging')], [2, 2]);
    assert.deepEqual(takeAll(b, 'logging'), [batch('ok')]);
    assert.equal(warnings().filter((w) => /wrong header/.test(w)).length, 2);
    assert.equal(warnings().filter((w) => /ack unreadable/.test(w)).length, 1);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'logging')), ['notes.txt']);
  });

  test('a record damaged after start-up is skipped when it is read', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    for (const t of ['d1', 'd2', 'd3']) a.append('network', batch(t), 2);
    const file = path.join(dir, 'network', segments()[0]);
    const fd = fs.openSync(file, 'r+');
    const second = 8 + 24 + Buffer.byteLength(batch('d1'));
    fs.writeSync(fd, 'X', second + 24 + 3); // a byte of d2's payload
    fs.closeSync(fd);
    assert.deepEqual(takeAll(a), [batch('d1'), batch('d3')]);
    assert.equal(a.corrupt, 1);
    assert.match(warnings().join('\n'), /network batch at \d{16}\.seg:\d+ skipped: bad checksum/);
  });
});

describe('the bound', () => {
  // header (24 bytes) + payload: each of these batches takes exactly 100 bytes
  const sized = (tag: string) => `${tag}:`.padEnd(76, 'x');

  test('past it the oldest batches go, counted exactly in points, whatever their category', () => {
    const s = new Spool(dir, { maxBytes: 350 });
    s.append('network', sized('n1'), 10);
    s.append('logging', sized('l1'), 1);
    s.append('network', sized('n2'), 20);
    assert.deepEqual([s.size, s.droppedFull], [300, 0]);
    s.append('network', sized('n3'), 30); // 400 > 350: the oldest (n1) goes
    assert.deepEqual([s.size, s.droppedFull, s.points()], [300, 10, 51]);
    s.append('network', sized('n4'), 40);
    assert.equal(s.droppedFull, 10 + 1, 'then l1, the oldest left');
    assert.deepEqual(takeAll(s), [sized('n2'), sized('n3'), sized('n4')]);
    assert.deepEqual(takeAll(s, 'logging'), []);
  });

  test('a batch larger than the bound is dropped itself', () => {
    const s = new Spool(dir, { maxBytes: 150 });
    s.append('network', sized('a'), 3);
    s.append('network', sized('b').repeat(2), 7);
    assert.deepEqual([s.droppedFull, s.points()], [7, 3]);
  });

  test('a batch in flight is not dropped: the next oldest goes', () => {
    const s = new Spool(dir, { maxBytes: 250 });
    s.append('network', sized('f1'), 1);
    s.append('network', sized('f2'), 2);
    assert.equal(s.next('network')?.points, 1);
    s.append('network', sized('f3'), 3);
    s.append('network', sized('f4'), 4); // f1 in flight does not count; f2 must go
    assert.equal(s.droppedFull, 2);
    s.ack('network');
    assert.deepEqual(takeAll(s), [sized('f3'), sized('f4')]);
  });

  test('a lower bound at start-up drops the oldest then, with a warning', () => {
    const a = new Spool(dir, { maxBytes: MiB });
    for (let i = 1; i <= 5; i++) a.append('network', sized(`s${i}`), i);
    a.close();
    const b = new Spool(dir, { maxBytes: 250 });
    assert.deepEqual([b.droppedFull, b.points()], [1 + 2 + 3, 4 + 5]);
    assert.match(warnings().join('\n'), /buffer: 6 points dropped at start-up/);
    assert.deepEqual(takeAll(b), [sized('s4'), sized('s5')]);
  });
});
