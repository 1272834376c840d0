/* Where each direction of a TCP connection's byte stream stands, so that a
 * segment seen twice (a retransmission, a duplicate) is not taken for a new
 * message, and a segment that fills a gap left by a lost one still is. */
#ifndef DATAKIT_EBPF_STREAM_H
#define DATAKIT_EBPF_STREAM_H

struct stream_pos {
	__u32 next[2];       /* the sequence number after the last byte seen; [1]: sent */
	__u32 hole_start[2]; /* bytes skipped over by a later segment, still to come */
	__u32 hole_end[2];
	__u8 known[2];       /* next[] holds a position */
	__u8 _pad[6];
};

#ifdef __BPF__
/* Sequence numbers wrap: compare them as distances. */
static __always_inline bool seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

/* Moves the stream on by a segment of len bytes at seq; true when the
 * segment's first byte has not been seen before. Only one gap is followed:
 * bytes of an older gap that come late count as seen. */
static __always_inline bool stream_advance(struct stream_pos *p, bool sent, __u32 seq, __u32 len)
{
	__u32 d = sent ? 1 : 0;
	__u32 end = seq + len;
	if (!p->known[d]) {
		p->known[d] = 1;
		p->next[d] = end;
		return true;
	}
	__u32 next = p->next[d];
	if (!seq_before(seq, next)) {
		if (seq != next) {
			/* a segment was lost or is late: its bytes are still new when they come */
			p->hole_start[d] = next;
			p->hole_end[d] = seq;
		}
		p->next[d] = end;
		return true;
	}
	if (seq_before(next, end))
		p->next[d] = end; /* partly new; its first byte was seen */
	__u32 hs = p->hole_start[d], he = p->hole_end[d];
	if (hs != he && !seq_before(seq, hs) && seq_before(seq, he)) {
		if (seq == hs)
			p->hole_start[d] = seq_before(end, he) ? end : he;
		return true;
	}
	return false;
}
#endif

#endif
