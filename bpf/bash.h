/* Shared by bash.bpf.c and src/plugins/bash/decode.ts (layout checked by
 * test/unit/bpf-layout.test.ts). */
#ifndef DATAKIT_EBPF_BASH_H
#define DATAKIT_EBPF_BASH_H

#define BASH_LINE_MAX 4096 /* capture size; longer lines are truncated and marked */

enum bash_counter {
	BASH_CNT_LINES = 0,        /* lines queued */
	BASH_CNT_RINGBUF_FULL = 1, /* lines lost: ring buffer full */
	BASH_CNT_READ_FAILED = 2,  /* lines that could not be read from the process */
	BASH_CNT_EXECS_LOST = 3,   /* bash execs not told to user space (ring full): found by the next scan */
	BASH_CNT_MAX = 4,
};

struct bash_event {
	__u64 ts;        /* CLOCK_MONOTONIC, ns */
	__u32 pid;       /* tgid of the bash process */
	__u32 uid;
	__u32 len;       /* bytes in line, without the NUL */
	__u8 truncated;  /* the line was longer than BASH_LINE_MAX - 1 */
	__u8 _pad[3];
	char line[BASH_LINE_MAX];
};

struct bash_config {
	__u32 only_bash; /* set when attached to a shared libreadline: skip other programs */
	__u32 _pad;
};

#endif
