/* Ring buffer output shared by the programs. */
#ifndef DATAKIT_EBPF_RINGBUF_H
#define DATAKIT_EBPF_RINGBUF_H

/* Wake user space only once `threshold` bytes wait: a wake-up per record costs
 * the traced process far more than the records themselves. A timer in user
 * space drains what stays below the threshold. */
static __always_inline __u64 wakeup_flags(void *ring, __u64 threshold)
{
	return bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= threshold ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Sends the first `size` bytes of a record built in scratch memory of `max`
 * bytes: records are only as long as what they captured. Returns 0 or a
 * negative errno (-ENOSPC: the ring is full). */
static __always_inline long output_prefix(void *ring, void *record, __u64 size, __u64 max, __u64 threshold)
{
	/* mask in the register the helper gets, so the verifier sees the bound */
	asm volatile("%0 &= 0xfff" : "+r"(size));
	if (size > max)
		return -22; /* EINVAL */
	return bpf_ringbuf_output(ring, record, size, wakeup_flags(ring, threshold));
}

#endif
