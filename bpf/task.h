/* The process the current task belongs to, as the collector reports it. */
#ifndef DATAKIT_EBPF_TASK_H
#define DATAKIT_EBPF_TASK_H

/* The process's name, not the thread's (e.g. dig's "isc-net-0000"): its
 * group leader's. Needs bpf_core_read.h. */
static __always_inline void process_comm(char (*comm)[16])
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(comm, task, group_leader, comm);
}

#endif
