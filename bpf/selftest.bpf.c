// SPDX-License-Identifier: GPL-2.0
/* Programs of every kind the native layer can attach, each doing something a
 * test can observe exactly. Used only by test/integration/native.test.ts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "in_progress.h"

struct selftest_config {
	__u32 target_tgid; /* only count this process */
	__u32 magic;       /* proves .rodata config reached the kernel */
};
const volatile struct selftest_config cfg = {};

struct probe_record {
	__u32 value;
	__u32 magic;
	__u64 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} records SEC(".maps");

/* Slots: 0 uprobe hits, 1 uretprobe hits, 2 tracepoint hits, 3 raw tracepoint
 * hits, 4 cgroup_skb egress packets, 5 sockops active establishments,
 * 6 socket filter packets, 7 ring buffer reservations that failed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

/* A plain hash for map-operation tests from user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} scratch SEC(".maps");

/* A count of programs in progress, which user space sets per CPU as programs
 * would leave it (src/aggregate/in-progress.ts). */
IN_PROGRESS_MAP(in_progress);

static __always_inline void hit(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&hits, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline bool ours(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == cfg.target_tgid;
}

__u64 seq = 0;

SEC("uprobe")
int BPF_KPROBE(on_probe_target, __u32 value)
{
	if (!ours())
		return 0;
	hit(0);
	struct probe_record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);
	if (!r) {
		hit(7);
		return 0;
	}
	r->value = value;
	r->magic = cfg.magic;
	/* not an atomic fetch-and-add: 5.10 has none; the test calls from one thread */
	r->seq = seq++;
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_probe_target_ret, __u32 ret)
{
	if (ours())
		hit(1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if (ours())
		hit(2);
	return 0;
}

SEC("raw_tp/sys_enter")
int on_raw_sys_enter(void *ctx)
{
	if (ours())
		hit(3);
	return 0;
}

SEC("cgroup_skb/egress")
int on_egress(struct __sk_buff *skb)
{
	hit(4);
	return 1; /* allow */
}

SEC("sockops")
int on_sockops(struct bpf_sock_ops *ops)
{
	if (ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		hit(5);
	return 1;
}

SEC("socket")
int on_packet(struct __sk_buff *skb)
{
	hit(6);
	return 0; /* keep nothing on the socket */
}

char LICENSE[] SEC("license") = "GPL";
