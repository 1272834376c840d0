// Which kernel hooks count netflow's bytes (SPEC §2, --hooks). One object
// holds three sets of programs (bpf/netflow.bpf.c); the cheapest set this
// kernel can run is loaded and the others are left out, at start-up.
import * as fs from 'node:fs';
import { BpfObject, BTF_KIND, kernelBtf } from '../../bpf/native';
import { NETFLOW_CONTROL } from './decode';

export const BYTE_HOOKS = ['tracepoint', 'fentry', 'kprobe'] as const;
export type ByteHooks = (typeof BYTE_HOOKS)[number];
export type HooksMode = 'auto' | ByteHooks;
export const HOOKS_MODES: readonly HooksMode[] = ['auto', ...BYTE_HOOKS];

/** The socket-layer functions whose return value is the byte count, with their parameter counts. */
const SOCKET_FUNCTIONS = [
  { name: 'inet_sendmsg', params: 3, send: true },
  { name: 'inet6_sendmsg', params: 3, send: true },
  { name: 'inet_recvmsg', params: 4, send: false },
  { name: 'inet6_recvmsg', params: 4, send: false },
] as const;

/** Programs of each set, by name in the object. */
const PROGRAMS: Record<ByteHooks, readonly string[]> = {
  tracepoint: ['on_send', 'on_recv'],
  fentry: SOCKET_FUNCTIONS.map((f) => `fexit_${f.name}`),
  kprobe: ['kprobe_sendmsg', 'kretprobe_sendmsg', 'kprobe_recvmsg', 'kretprobe_recvmsg'],
};

/** What the kernel offers, as far as the hook choice needs to know. */
export interface KernelFacts {
  /** Parameter count of a kernel function, or of a raw tracepoint's typedef; undefined: absent. */
  btf(name: string, kind: number): number | undefined;
  /** Whether kprobes can be created. */
  kprobes(): boolean;
}

export const runningKernel: KernelFacts = {
  btf: kernelBtf,
  // perf's kprobe PMU (4.17+) is there whenever the kernel has kprobes; libbpf
  // attaches through it, which needs no tracefs
  kprobes: () => fs.existsSync('/sys/bus/event_source/devices/kprobe/type'),
};

/**
 * Why `hooks` cannot run on this kernel, as far as its BTF tells; undefined
 * when it may (loading is the final test: a kernel may have the functions yet
 * refuse fentry programs).
 */
export function missingFor(hooks: ByteHooks, k: KernelFacts = runningKernel): string | undefined {
  if (hooks === 'tracepoint') {
    // raw tracepoints are described in BTF by a typedef of their prototype
    return k.btf('btf_trace_sock_send_length', BTF_KIND.TYPEDEF) === undefined ||
      k.btf('btf_trace_sock_recv_length', BTF_KIND.TYPEDEF) === undefined
      ? 'no sock_send_length/sock_recv_length tracepoints (Linux 6.3+)'
      : undefined;
  }
  if (hooks === 'kprobe' && !k.kprobes()) return 'the kernel has no kprobes';
  for (const f of SOCKET_FUNCTIONS) {
    const params = k.btf(f.name, BTF_KIND.FUNC);
    if (params === undefined) return `no function ${f.name} in the kernel's BTF`;
    if (params !== f.params) return `${f.name} takes ${params} parameters, the programs expect ${f.params}`;
  }
  return undefined;
}

/** Leaves every set but `hooks` out of the object; call before load. */
export function selectByteHooks(obj: BpfObject, hooks: ByteHooks): void {
  for (const set of BYTE_HOOKS) for (const prog of PROGRAMS[set]) obj.setAutoload(prog, set === hooks);
}

/**
 * Byte hooks count nothing until this is called, once every hook is in place:
 * sends and receives start at one instant, however long attaching took.
 */
export function startCounting(obj: BpfObject): void {
  const control = obj.map('control');
  const zero = Buffer.alloc(4);
  const value = control.lookup(zero) ?? Buffer.alloc(NETFLOW_CONTROL.size);
  value.writeUInt32LE(1, NETFLOW_CONTROL.counting);
  control.update(zero, value);
}

/** Attaches the loaded set. */
export function attachByteHooks(obj: BpfObject, hooks: ByteHooks): void {
  switch (hooks) {
    case 'tracepoint':
    case 'fentry':
      // tp_btf and fexit programs name their hook in the object
      for (const prog of PROGRAMS[hooks]) obj.attachTrace(prog);
      return;
    case 'kprobe':
      for (const f of SOCKET_FUNCTIONS) {
        const dir = f.send ? 'sendmsg' : 'recvmsg';
        // the return first: an entry whose return is not yet probed would be counted as missed
        obj.attachKprobe(`kretprobe_${dir}`, f.name, true);
        obj.attachKprobe(`kprobe_${dir}`, f.name);
      }
  }
}
