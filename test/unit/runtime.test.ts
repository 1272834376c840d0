// Start-up checks that need no privileges.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkKernel, kernelVersion, StartupError } from '../../src/runtime';

test('kernel versions from uname -r', () => {
  assert.deepEqual(kernelVersion('5.10.0-35-amd64'), [5, 10]);
  assert.deepEqual(kernelVersion('6.12.118+deb13-amd64'), [6, 12]);
  assert.deepEqual(kernelVersion('4.18.0-553.el8_10.x86_64'), [4, 18]);
  assert.equal(kernelVersion('unknown'), undefined);
});

test('older than 5.10: one clear line; 5.10 and newer, or unreadable, pass', () => {
  for (const ok of ['5.10.0-35-amd64', '5.15.0-1-generic', '6.1.0-57-amd64', '10.0.1', 'weird']) assert.doesNotThrow(() => checkKernel(ok), ok);
  for (const old of ['5.4.0-42-generic', '4.19.0-27-amd64', '4.18.0-553.el8_10.x86_64']) {
    assert.throws(() => checkKernel(old), (e: unknown) => e instanceof StartupError && e.message === `Linux ${old} is too old: datakit-ebpf needs Linux 5.10 or newer`);
  }
});
