/* Per-CPU scratch memory that nesting cannot overwrite. A cgroup_skb program
 * running for a send in process context can be interrupted on its CPU by a
 * softirq that runs the same programs (a receive, or a send that a receive
 * clocks out). Each run counts itself in and out of a per-CPU depth, and each
 * depth has a scratch slot of its own: an interrupting run never overwrites
 * what the run it interrupted is building. */
#ifndef DATAKIT_EBPF_NEST_H
#define DATAKIT_EBPF_NEST_H

#define NEST_MAX 4 /* slots per CPU; process context and a softirq need two */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nest_depth SEC(".maps");

static __always_inline __u32 *nest_enter(void)
{
	__u32 zero = 0;
	__u32 *depth = bpf_map_lookup_elem(&nest_depth, &zero);
	if (depth)
		*depth += 1;
	return depth;
}

static __always_inline void nest_leave(__u32 *depth)
{
	if (depth && *depth)
		*depth -= 1;
}

/* This run's slot in the scratch maps (of NEST_MAX entries). */
static __always_inline __u32 nest_slot(void)
{
	__u32 zero = 0;
	__u32 *depth = bpf_map_lookup_elem(&nest_depth, &zero);
	return depth && *depth ? (*depth - 1) & (NEST_MAX - 1) : 0;
}

/* This run's entry of a per-CPU scratch map. */
#define scratch(map) ({ __u32 slot_ = nest_slot(); bpf_map_lookup_elem(map, &slot_); })

#endif
