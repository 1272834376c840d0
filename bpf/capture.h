/* Variable-length copies that every verifier accepts, and the arithmetic the
 * parsers of captured bytes use instead of branches. */
#ifndef DATAKIT_EBPF_CAPTURE_H
#define DATAKIT_EBPF_CAPTURE_H

/* How many of `avail` bytes to copy, at most `cap` (at most 4096): 0 when
 * there is nothing, else a length the verifier can prove to be in [1, cap].
 * Built as (clamped avail - 1, masked) + 1 in the register the helper gets:
 * the verifiers of 5.10 to 6.12 do not learn "not zero" from a `!= 0` test,
 * and refuse a helper length that may be 0 ("invalid zero-sized read"). */
static __always_inline __u64 capture_len(__u64 avail, __u64 cap)
{
	if (!avail)
		return 0;
	__u64 len = avail - 1;
	if (len > cap - 1)
		len = cap - 1;
	/* both steps in asm: a `+ 1` the compiler can see becomes an overflow
	 * test against a linked copy, which 6.12's verifier gets wrong */
	asm volatile("%0 &= 0xfff\n\t%0 += 1" : "+r"(len));
	return len;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* 1 when a < b (both below 2^63), 0 otherwise. A parser's loop must not
 * branch on the bytes it reads, or the verifier follows every combination of
 * branches from byte to byte: the shift is in asm, or the compiler, knowing
 * the ranges, turns the comparison back into a branch. */
static __always_inline __u64 lt(__u64 a, __u64 b)
{
	__u64 d = a - b;
	asm volatile("%0 >>= 63" : "+r"(d));
	return d;
}

/* 1 when a == b (both below 2^63), 0 otherwise; the same way */
static __always_inline __u64 eq(__u64 a, __u64 b)
{
	__u64 d = (a ^ b) - 1;
	asm volatile("%0 >>= 63" : "+r"(d));
	return d;
}

#endif
