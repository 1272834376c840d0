// Decoder for struct bash_event (bpf/bash.h).
export const BASH_EVENT = { ts: 0, pid: 8, uid: 12, len: 16, truncated: 20, line: 24, size: 24 + 4096 } as const;
export const BASH_CONFIG = { only_bash: 0, size: 8 } as const;
export const BASH_COUNTER_NAMES = ['lines', 'ringbuf_full', 'read_failed', 'execs_lost'] as const;

export interface BashLine {
  monotonicNs: bigint;
  pid: number;
  uid: number;
  line: string;
  truncated: boolean;
}

export function decodeBashEvent(buf: Buffer, off: number): BashLine {
  const len = Math.min(buf.readUInt32LE(off + BASH_EVENT.len), BASH_EVENT.size - BASH_EVENT.line);
  return {
    monotonicNs: buf.readBigUInt64LE(off + BASH_EVENT.ts),
    pid: buf.readUInt32LE(off + BASH_EVENT.pid),
    uid: buf.readUInt32LE(off + BASH_EVENT.uid),
    line: buf.toString('utf8', off + BASH_EVENT.line, off + BASH_EVENT.line + len),
    truncated: buf[off + BASH_EVENT.truncated] !== 0,
  };
}
