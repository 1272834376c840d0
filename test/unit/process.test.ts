// Signals and uncaught errors: what the collector does with each, by phase.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, beforeEach, describe, mock, test } from 'node:test';
import { configureLog } from '../../src/log';
import { metricsRegistry } from '../../src/metrics';
import type { Output } from '../../src/output/point';
import { ABANDON_MS, describeError, ProcessGuard, REPEAT_LIMIT, REPEAT_WINDOW_MS, RunningHandlers } from '../../src/process';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dkeb-process-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const logFile = path.join(tmp, 'log');
configureLog('info', logFile);
const logged = () => fs.readFileSync(logFile, 'utf8');

/** A guard whose exits, time and shutdown the test controls. */
function guarded(opts: { stop?: () => Promise<void>; abandon?: () => Promise<void> } = {}) {
  const exits: number[] = [];
  const calls: string[] = [];
  const clock = { ms: 1_000_000 };
  const guard = new ProcessGuard({ exit: (code) => exits.push(code), nowMs: () => clock.ms });
  const handlers: RunningHandlers = {
    stop: (signal) => {
      calls.push(`stop ${signal}`);
      return opts.stop ? opts.stop() : Promise.resolve();
    },
    abandon: () => {
      calls.push('abandon');
      return opts.abandon ? opts.abandon() : Promise.resolve();
    },
  };
  return { guard, handlers, exits, calls, clock };
}

const tick = () => new Promise((r) => setImmediate(r));

beforeEach(() => fs.truncateSync(logFile));

describe('uncaught errors', () => {
  test('while running, an Error is logged on one line with where it was thrown, counted, and survived', async () => {
    const { guard, handlers, exits, calls } = guarded();
    guard.running(handlers);
    const err = new TypeError('cannot read "x"\nsecond line');
    err.stack = `TypeError: cannot read "x"\n    at decode (/app/dist/src/plugins/bash/decode.js:12:7)\n    at drain (/app/x.js:1:1)`;
    guard.unexpected('uncaught_exception', err);
    guard.unexpected('unhandled_rejection', new Error('post failed'));
    await tick();
    assert.deepEqual(exits, []);
    assert.deepEqual(calls, []);
    assert.deepEqual(guard.errors, { uncaught_exception: 1, unhandled_rejection: 1 });
    const lines = logged().trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(
      lines[0],
      /ERROR unexpected error \(uncaught exception\): TypeError: cannot read "x" \(at decode \(\/app\/dist\/src\/plugins\/bash\/decode\.js:12:7\)\); carrying on$/,
    );
    assert.match(lines[1], /ERROR unexpected error \(unhandled rejection\): Error: post failed \(at .*process\.test\.js:\d+:\d+\)\); carrying on$/);
  });

  test('during start-up: exit 1 at once, nothing to detach yet', () => {
    const { guard, exits, calls } = guarded();
    guard.unexpected('uncaught_exception', new Error('boom'));
    assert.deepEqual(exits, [1]);
    assert.deepEqual(calls, []);
    assert.match(logged(), /unexpected error \(uncaught exception\): Error: boom .*; during start-up: exiting\n$/);
  });

  test('something thrown that is not an Error: detach, flush, exit 1', async () => {
    const { guard, handlers, exits, calls } = guarded();
    guard.running(handlers);
    guard.unexpected('unhandled_rejection', { code: 42 });
    assert.deepEqual(calls, ['abandon']);
    await tick();
    assert.deepEqual(exits, [1]);
    assert.match(logged(), /unexpected error \(unhandled rejection\): \{ code: 42 \}; not an Error: nothing says where it came from: exiting\n$/);
    // anything further while leaving exits at once
    guard.unexpected('uncaught_exception', new Error('again'));
    assert.deepEqual(exits, [1, 1]);
    assert.deepEqual(calls, ['abandon']);
  });

  test(`the ${REPEAT_LIMIT}th within a minute ends the process; as many spread wider do not`, async () => {
    const { guard, handlers, exits, clock } = guarded();
    guard.running(handlers);
    for (let i = 0; i < REPEAT_LIMIT * 2; i++) {
      guard.unexpected('uncaught_exception', new Error(`spread ${i}`));
      clock.ms += REPEAT_WINDOW_MS / (REPEAT_LIMIT - 1);
    }
    await tick();
    assert.deepEqual(exits, []);
    clock.ms += REPEAT_WINDOW_MS;
    for (let i = 1; i < REPEAT_LIMIT; i++) {
      guard.unexpected('unhandled_rejection', new Error(`close ${i}`));
      clock.ms += 1000;
    }
    await tick();
    assert.deepEqual(exits, [], `${REPEAT_LIMIT - 1} within a minute`);
    guard.unexpected('uncaught_exception', new Error('one too many'));
    await tick();
    assert.deepEqual(exits, [1]);
    assert.match(logged(), new RegExp(`Error: one too many .*; ${REPEAT_LIMIT} within a minute: exiting\\n$`));
    assert.deepEqual(guard.errors, { uncaught_exception: REPEAT_LIMIT * 2 + 1, unhandled_rejection: REPEAT_LIMIT - 1 });
  });

  test(`a detach that hangs does not hold the exit longer than ${ABANDON_MS} ms`, () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const { guard, handlers, exits } = guarded({ abandon: () => new Promise(() => {}) });
      guard.running(handlers);
      guard.unexpected('uncaught_exception', 'a string');
      mock.timers.tick(ABANDON_MS - 1);
      assert.deepEqual(exits, []);
      mock.timers.tick(1);
      assert.deepEqual(exits, [1]);
    } finally {
      mock.timers.reset();
    }
  });

  test('describeError: message and first frame, or what was thrown', () => {
    const err = new RangeError('too far');
    err.stack = 'RangeError: too far\n    at f (a.js:1:2)';
    assert.equal(describeError(err), 'RangeError: too far (at f (a.js:1:2))');
    const bare = new Error('no stack');
    bare.stack = undefined;
    assert.equal(describeError(bare), 'Error: no stack');
    assert.equal(describeError('text'), "'text'");
    assert.equal(describeError(undefined), 'undefined');
  });
});

describe('signals', () => {
  test('SIGTERM: orderly stop, exit 0', async () => {
    const { guard, handlers, exits, calls } = guarded();
    guard.running(handlers);
    guard.signal('SIGTERM');
    assert.deepEqual(calls, ['stop SIGTERM']);
    await tick();
    assert.deepEqual(exits, [0]);
    assert.match(logged(), /INFO SIGTERM: flushing and detaching\n$/);
  });

  for (const [first, second, code] of [
    ['SIGTERM', 'SIGTERM', 143],
    ['SIGINT', 'SIGINT', 130],
    ['SIGINT', 'SIGTERM', 143],
  ] as const) {
    test(`${first} then ${second} while stopping: exit ${code} at once`, () => {
      const { guard, handlers, exits, calls } = guarded({ stop: () => new Promise(() => {}) });
      guard.running(handlers);
      guard.signal(first);
      assert.deepEqual(exits, []);
      guard.signal(second);
      assert.deepEqual(exits, [code]);
      assert.deepEqual(calls, [`stop ${first}`]);
      assert.match(logged(), new RegExp(`WARN ${second} again: exiting at once \\(status ${code}\\)\\n$`));
    });
  }

  test('a failed shutdown exits 1', async () => {
    const { guard, handlers, exits } = guarded({ stop: () => Promise.reject(new Error('flush broke')) });
    guard.running(handlers);
    guard.signal('SIGINT');
    await tick();
    assert.deepEqual(exits, [1]);
    assert.match(logged(), /ERROR shutdown failed: Error: flush broke/);
  });

  test('during start-up: the collector stops once started; a second signal exits at once', () => {
    const one = guarded();
    one.guard.signal('SIGTERM');
    assert.deepEqual(one.calls, []);
    one.guard.running(one.handlers);
    assert.deepEqual(one.calls, ['stop SIGTERM']);

    const two = guarded();
    two.guard.signal('SIGINT');
    two.guard.signal('SIGINT');
    assert.deepEqual(two.exits, [130]);
  });

  test('SIGHUP reopens the log file', () => {
    const { guard, exits } = guarded();
    // SIGHUP without --log is checked against the real process (test/integration/process.test.ts)
    guard.hangup();
    assert.deepEqual(exits, []);
    assert.match(logged(), /INFO SIGHUP: log file reopened\n$/);
  });
});

test('metrics: unexpected errors and log lines are exported as counters', async () => {
  const output: Output = { write: () => {}, flush: async () => {}, close: async () => {}, stats: () => ({ sent: 0, failed: 0, dropped: 0, dropped_full: 0, rejected: 0, corrupt: 0, unencodable: 0, buffered: 0 }) };
  const errors = { uncaught_exception: 3, unhandled_rejection: 0 };
  const registry = metricsRegistry(() => [], output, () => errors);
  const text = await registry.metrics();
  assert.match(text, /^datakit_ebpf_unexpected_errors_total\{kind="uncaught_exception"\} 3$/m);
  assert.match(text, /^datakit_ebpf_unexpected_errors_total\{kind="unhandled_rejection"\} 0$/m);
  assert.match(text, /^datakit_ebpf_log_lines_total\{result="failed"\} 0$/m);
  const written = Number(/^datakit_ebpf_log_lines_total\{result="written"\} (\d+)$/m.exec(text)?.[1]);
  assert.ok(written > 10, `${written} lines written by the tests above`);
  errors.unhandled_rejection = 2;
  assert.match(await registry.metrics(), /^datakit_ebpf_unexpected_errors_total\{kind="unhandled_rejection"\} 2$/m);
});
