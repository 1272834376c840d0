// Which byte-hook sets a kernel can run, judged from its BTF (src/plugins/netflow/hooks.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BTF_KIND } from '../../src/bpf/native';
import { KernelFacts, missingFor } from '../../src/plugins/netflow/hooks';

/** A kernel whose BTF has exactly these names, with these parameter counts. */
function kernel(btf: Record<string, number>, kprobes = true): KernelFacts {
  return { btf: (name) => btf[name], kprobes: () => kprobes };
}

const FUNCTIONS = { inet_sendmsg: 3, inet6_sendmsg: 3, inet_recvmsg: 4, inet6_recvmsg: 4 };
const TRACEPOINTS = { btf_trace_sock_send_length: 0, btf_trace_sock_recv_length: 0 };

test('6.3 and newer: all three sets', () => {
  const k = kernel({ ...FUNCTIONS, ...TRACEPOINTS });
  assert.deepEqual([missingFor('tracepoint', k), missingFor('fentry', k), missingFor('kprobe', k)], [undefined, undefined, undefined]);
});

test('5.10 to 6.2: no byte tracepoints', () => {
  const k = kernel(FUNCTIONS);
  assert.equal(missingFor('tracepoint', k), 'no sock_send_length/sock_recv_length tracepoints (Linux 6.3+)');
  assert.equal(missingFor('fentry', k), undefined);
});

test('a kernel without kprobes, or whose functions look different, is refused by name', () => {
  assert.equal(missingFor('kprobe', kernel(FUNCTIONS, false)), 'the kernel has no kprobes');
  assert.equal(missingFor('fentry', kernel({ ...FUNCTIONS, inet_recvmsg: 5 })), 'inet_recvmsg takes 5 parameters, the programs expect 4');
  const noV6: Record<string, number> = { ...FUNCTIONS };
  delete noV6.inet6_sendmsg;
  assert.equal(missingFor('kprobe', kernel(noV6)), "no function inet6_sendmsg in the kernel's BTF");
});

test('the kinds asked for are the ones BTF uses', () => {
  const asked: string[] = [];
  const spy: KernelFacts = { btf: (name, kind) => (asked.push(`${name}:${kind}`), 0), kprobes: () => true };
  missingFor('tracepoint', spy);
  missingFor('fentry', spy);
  assert.ok(asked.includes(`btf_trace_sock_send_length:${BTF_KIND.TYPEDEF}`));
  assert.ok(asked.includes(`inet_sendmsg:${BTF_KIND.FUNC}`));
});
