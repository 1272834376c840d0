// SPDX-License-Identifier: GPL-2.0
/* bash: every line an interactive bash reads, from a uretprobe on readline()
 * (bash -c and scripts never call it). The line is copied once, straight into
 * the ring buffer record. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "counters.h"
#include <bpf/bpf_tracing.h>
#include "bash.h"

const volatile struct bash_config cfg = {};

/* Keeps struct bash_event in the object's BTF, where the layout test reads it. */
const struct bash_event *bash_event_btf __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} lines SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BASH_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	counter_inc(&counters, slot);
}

static __always_inline bool is_bash(void)
{
	char comm[16];
	bpf_get_current_comm(comm, sizeof(comm));
	return comm[0] == 'b' && comm[1] == 'a' && comm[2] == 's' && comm[3] == 'h' && comm[4] == 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_readline_return, const char *line)
{
	if (!line)
		return 0; /* end of input */
	if (cfg.only_bash && !is_bash())
		return 0;
	struct bash_event *e = bpf_ringbuf_reserve(&lines, sizeof(*e), 0);
	if (!e) {
		count(BASH_CNT_RINGBUF_FULL);
		return 0;
	}
	long n = bpf_probe_read_user_str(e->line, sizeof(e->line), line);
	if (n <= 0) {
		count(BASH_CNT_READ_FAILED);
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	e->len = n - 1;
	e->truncated = 0;
	if (n == sizeof(e->line)) {
		/* filled the buffer: truncated unless the string ended exactly there */
		char next = 0;
		bpf_probe_read_user(&next, 1, line + sizeof(e->line) - 1);
		e->truncated = next != 0;
	}
	e->ts = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	count(BASH_CNT_LINES);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* bash processes that just exec'd, for user space to probe their file at
 * once: found by the next /proc scan instead, a bash in a container may
 * already wait at its prompt, and that first line would be missed. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 10);
} bash_execs SEC(".maps");

/* a raw tracepoint: attached by name, with no tracefs to mount */
SEC("raw_tp/sched_process_exec")
int on_exec(void *ctx)
{
	/* comm is the new program's name by now */
	if (!is_bash())
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&bash_execs, &pid, sizeof(pid), 0))
		count(BASH_CNT_EXECS_LOST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
