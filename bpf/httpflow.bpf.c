// SPDX-License-Identifier: GPL-2.0
/* httpflow: HTTP/1.x exchanges.
 *
 * cgroup_skb programs on the cgroup v2 root see every TCP segment of every
 * socket on the host, with the socket itself. A segment whose payload starts
 * like a request line or a status line is an HTTP message start. The owner of
 * the socket comes from netflow's connection table, which user space hands to
 * this object before load (when netflow runs; without it the owner is unknown).
 *
 * By default exchanges are summed in the kernel: a request is parsed where it
 * is seen (method, a hash of its path, version) and waits in socket storage;
 * its response adds it to a series of the current interval (ends, side,
 * owner, method, path, status, version: count, latency sum and maximum, a
 * latency histogram). A path's text goes to user space once, the first time
 * its hash is seen. User space switches between two series maps each
 * interval and reads the one no longer written to.
 *
 * With cfg.per_request (--l7-per-request), the first bytes of each message
 * go to user space instead, which pairs and reports every exchange. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "addr.h"
#include "capture.h"
#include "counters.h"
#include "in_progress.h"
#include "dnsflow.h" /* DNS_PORT, for the packets dnsflow takes */
#include "httpflow.h"
#include "nest.h"
#include "ringbuf.h"
#include "task.h"

const volatile struct httpflow_config cfg = {
	.include_loopback = 0,
	.wakeup_bytes = 1 << 20,
	.per_request = 0,
	.max_series = 16384,
	.go_conn_data = 8,
	.go_netfd = 0,
	.go_sysfd = 16,
	.udp_peers = 0,
	.udp_locals = 0,
};

/* netflow's table, by socket (replaced by netflow's own map before load). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct conn_stats);
} conns SEC(".maps");

/* netflow's stash of datagram peers (replaced by netflow's own map before load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct udp_peer);
} udp_stash SEC(".maps");

/* netflow's local addresses of wildcard-bound sockets (replaced by netflow's own map before load). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct udp_local);
} udp_locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} http_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct http_sock);
} http_socks SEC(".maps");

/* ---- aggregated mode ---- */

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct http_conn);
} http_conns SEC(".maps");

struct http_series_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 17408); /* set by user space: series plus overflow series */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct http_series_key);
	__type(value, struct latency_series);
} http_series_0 SEC(".maps"), http_series_1 SEC(".maps");

/* The two series maps; control.active says which one the programs add to. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct http_series_map);
} http_series SEC(".maps") = {
	.values = {&http_series_0, &http_series_1},
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct series_control);
} http_control SEC(".maps");

/* Adds to the series maps running now, per CPU (in_progress.h). */
IN_PROGRESS_MAP(http_series_in_progress);

/* Path hashes whose text user space has (it deletes those it forgets). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} http_paths SEC(".maps");

/* Moved on by user space each time it forgets a path: a connection's note of
 * the last path it sent (http_queue.sent_path) holds only within one epoch. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} http_paths_epoch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} http_path_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NEST_MAX);
	__type(key, __u32);
	__type(value, struct http_parsed);
} http_parse SEC(".maps");

/* A zeroed series, to insert new ones from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct latency_series);
} http_series_zero SEC(".maps");

/* Events are built here, then copied out with only their used length. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NEST_MAX);
	__type(key, __u32);
	__type(value, struct http_event);
} http_scratch SEC(".maps");

/* Requests given to a listening socket, until their connection answers. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct http_early_key);
	__type(value, struct http_early);
} http_early SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NEST_MAX);
	__type(key, __u32);
	__type(value, struct http_early);
} http_early_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HTTP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} http_counters SEC(".maps");

static __always_inline void http_count(__u32 slot)
{
	counter_inc(&http_counters, slot);
}

/* The TCP header up to its flags: where the payload starts and the segment's place in the stream. */
struct tcp_start {
	__u16 sport;
	__u16 dport;
	__u32 seq;
	__u32 ack_seq;
	__u8 doff; /* high nibble: header length in words */
	__u8 flags;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_RST 0x04

/* First four payload bytes, as a little-endian u32 of the characters. */
#define W(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

static __always_inline int http_kind(__u32 w)
{
	switch (w) {
	case W('G', 'E', 'T', ' '):
	case W('P', 'O', 'S', 'T'):
	case W('P', 'U', 'T', ' '):
	case W('H', 'E', 'A', 'D'):
	case W('D', 'E', 'L', 'E'):
	case W('O', 'P', 'T', 'I'):
	case W('P', 'A', 'T', 'C'):
	case W('C', 'O', 'N', 'N'):
	case W('T', 'R', 'A', 'C'):
		return HTTP_REQUEST;
	case W('H', 'T', 'T', 'P'):
		return HTTP_RESPONSE;
	}
	return 0;
}

/* Sends an event with `len` bytes of data, counting what the ring could not take. */
static __always_inline void http_output(struct http_event *e, __u64 len)
{
	if (output_prefix(&http_events, e, offsetof(struct http_event, data) + len, sizeof(*e), cfg.wakeup_bytes))
		http_count(HTTP_CNT_RINGBUF_FULL);
	else
		http_count(HTTP_CNT_EVENTS);
}

/* Addresses from the socket, local end first as netflow reports them;
 * false when the flow is not reported (loopback). */
static __always_inline bool read_ends(struct bpf_sock *bsk, __u32 family, struct conn_tuple *t)
{
	t->family = family;
	t->proto = IPPROTO_TCP;
	t->sport = bsk->src_port;
	t->dport = bpf_ntohs(bsk->dst_port);
	t->netns = 0;
	__u32 *sa = (__u32 *)t->saddr, *da = (__u32 *)t->daddr;
	if (family == AF_INET) {
		sa[0] = bsk->src_ip4;
		da[0] = bsk->dst_ip4;
		sa[1] = sa[2] = sa[3] = 0;
		da[1] = da[2] = da[3] = 0;
	} else {
		sa[0] = bsk->src_ip6[0]; sa[1] = bsk->src_ip6[1]; sa[2] = bsk->src_ip6[2]; sa[3] = bsk->src_ip6[3];
		da[0] = bsk->dst_ip6[0]; da[1] = bsk->dst_ip6[1]; da[2] = bsk->dst_ip6[2]; da[3] = bsk->dst_ip6[3];
	}
	return cfg.include_loopback || (!is_loopback(sa, family) && !is_loopback(da, family));
}

#define MAX_PATH 1024 /* path bytes kept, as user space keeps them */

/* Method id (as src/plugins/httpflow/aggregate.ts numbers them) and length,
 * from the first four bytes. */
static __always_inline __u8 method_of(__u32 w, __u32 *len)
{
	switch (w) {
	case W('G', 'E', 'T', ' '): *len = 3; return 1;
	case W('P', 'O', 'S', 'T'): *len = 4; return 2;
	case W('P', 'U', 'T', ' '): *len = 3; return 3;
	case W('H', 'E', 'A', 'D'): *len = 4; return 4;
	case W('D', 'E', 'L', 'E'): *len = 6; return 5;
	case W('O', 'P', 'T', 'I'): *len = 7; return 6;
	case W('P', 'A', 'T', 'C'): *len = 5; return 7;
	case W('C', 'O', 'N', 'N'): *len = 7; return 8;
	case W('T', 'R', 'A', 'C'): *len = 5; return 9;
	}
	return 0;
}

/* Word-at-a-time byte tests (bit hacks): each sets bit 7 of the bytes of
 * `x` that match; bytes above the lowest match may be flagged wrongly, so
 * only the lowest one is ever used. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static __always_inline __u64 zero_bytes(__u64 x)
{
	return (x - ONES) & ~x & HIGHS;
}

/* bytes below n (n at most 128) */
static __always_inline __u64 bytes_below(__u64 x, __u64 n)
{
	return (x - ONES * n) & ~x & HIGHS;
}

/* Index of the lowest flagged byte; 8 when none. Arithmetic, not branches:
 * the parser's loop must not fork the verifier's walk at every word. */
static __always_inline __u64 first_byte(__u64 m)
{
	__u64 low = m & (0 - m);
	__u64 k = ((low >> 7) * 0x0001020304050607ULL) >> 56;
	__u64 any = m | (0 - m);
	/* in asm, or the compiler turns `m != 0` back into a branch */
	asm volatile("%0 >>= 63" : "+r"(any));
	return k + ((any ^ 1) << 3);
}

/* Parses the request line captured in this CPU's http_parsed (its first n
 * bytes): method, version, and a hash of the path (up to '?', '#' or the
 * space before the version; at most MAX_PATH bytes). Returns 1 for a request
 * line.
 * It reads eight bytes at a time, and its loop has one data-dependent branch,
 * its exit, so that the verifier's walk stays linear on 5.10 (no bpf_loop).
 * A global function: verified once, on its own. */
__noinline int parse_captured(__u64 captured)
{
	struct http_parsed *p = scratch(&http_parse);
	if (!p)
		return 0;
	p->ok = 0;
	__u64 n = capture_len(captured, HTTP_CAPTURE);
	if (!n)
		return 0;
	__u8 *d = p->event.data;
	__u32 mlen = 0;
	__u8 method = method_of(*(__u32 *)d, &mlen);
	if (!method || d[mlen & 7] != ' ')
		return 0;
	/* a zero after what was captured ends the target like a control character
	 * would (the guard after data leaves room for it and for the last word) */
	d[n] = 0;
	__u64 start = (mlen & 7) + 1, h = FNV_OFFSET, inq = 0, pos = 0, w;
	for (w = 0; w < HTTP_CAPTURE / 8; w++) {
		__u64 x = *(__u64 *)(d + start + w * 8);
		/* the target ends at a space, a control character or DEL; the path before that, at '?' or '#' */
		__u64 mend = bytes_below(x, 0x21) | zero_bytes(x ^ (ONES * 0x7f));
		__u64 mpath = mend | zero_bytes(x ^ (ONES * '?')) | zero_bytes(x ^ (ONES * '#'));
		__u64 fp = first_byte(mpath), fe = first_byte(mend);
		/* the bytes before the path's end, in words still in the path and within MAX_PATH */
		__u64 take = (inq ^ 1) & lt(w, MAX_PATH / 8);
		__u64 keep = ((1ULL << ((fp << 3) & 63)) - 1) | (0 - (fp >> 3));
		__u64 sel = 0 - take;
		h = (((h ^ (x & keep)) * FNV_PRIME) & sel) | (h & ~sel);
		inq |= take & lt(fp, fe);
		if (mend) {
			pos = start + w * 8 + fe;
			break;
		}
	}
	if (pos <= start)
		return 0; /* no target */
	__u8 version = 1;
	if (pos >= n) {
		/* the line goes on past the capture: a request only if its path is long */
		if (n - start < MAX_PATH)
			return 0;
	} else {
		/* through asm: the compiler would compute d + pos before the check,
		 * in a register the check does not bound */
		__u64 at = pos;
		asm volatile("%0 &= 2047" : "+r"(at));
		if (at > HTTP_CAPTURE - 9 || at + 9 > n || d[at] != ' ')
			return 0; /* a control character in the target, or no room for the version */
		__u64 v = *(__u64 *)(d + at + 1);
		if (v == 0x312e312f50545448ULL) /* "HTTP/1.1" */
			version = 1;
		else if (v == 0x302e312f50545448ULL) /* "HTTP/1.0" */
			version = 0;
		else
			return 0;
	}
	p->path = h;
	p->len = n;
	p->method = method;
	p->version = version;
	p->ok = 1;
	p->event.path = h;
	p->event.len = n;
	return 1;
}

/* Parses the request line of a segment's payload at `off` (parse_captured). */
__noinline int parse_request(struct __sk_buff *skb, __u32 off)
{
	struct http_parsed *p = scratch(&http_parse);
	if (!p)
		return 0;
	p->ok = 0;
	if (skb->len <= off)
		return 0;
	__u64 n = capture_len(skb->len - off, HTTP_CAPTURE);
	if (!n || bpf_skb_load_bytes(skb, off, p->event.data, n))
		return 0;
	return parse_captured(n);
}

/* The status of a status line's first 12 bytes; 0 when it is not one. */
static __always_inline __u16 status_of(const __u8 *b)
{
	if (*(__u32 *)b != W('H', 'T', 'T', 'P') || b[4] != '/' || b[5] != '1' || b[6] != '.' || (b[7] != '0' && b[7] != '1') || b[8] != ' ')
		return 0;
	if (b[9] < '1' || b[9] > '5' || b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9')
		return 0;
	return (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
}

/* The status of a status line at `off`; 0 when it is not one. */
static __always_inline __u16 parse_status(struct __sk_buff *skb, __u32 off)
{
	__u8 b[12];
	if (skb->len < off + 12 || bpf_skb_load_bytes(skb, off, b, 12))
		return 0;
	return status_of(b);
}

/* TLS probes can be preempted (6.x), and another take this CPU's scratch
 * memory meanwhile: each write of it by a TLS probe moves this on, before and
 * after, so what was written is known to be still there while it has not
 * moved since. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tls_writes SEC(".maps");

/* Whether the scratch still holds the write that left tls_writes at `stamp` (0: not checked). */
static __always_inline bool scratch_intact(__u64 stamp)
{
	__u32 zero = 0;
	__u64 *w = bpf_map_lookup_elem(&tls_writes, &zero);
	return !stamp || (w && *w == stamp);
}

/* A path's text goes to user space the first time its hash is seen. With a
 * stamp (TLS), a text that may not be this parse's any more is sent again
 * next time: the hash is forgotten. True when user space has the text. */
static __always_inline bool send_path_once(struct http_parsed *p, __u64 path, __u64 stamp)
{
	if (bpf_map_lookup_elem(&http_paths, &path))
		return true;
	__u8 one = 1;
	bpf_map_update_elem(&http_paths, &path, &one, BPF_ANY);
	__u64 len = capture_len(p->len, HTTP_CAPTURE);
	if (output_prefix(&http_path_events, &p->event, offsetof(struct http_path_event, data) + len, sizeof(p->event), ~0ULL)) {
		http_count(HTTP_CNT_RINGBUF_FULL);
		bpf_map_delete_elem(&http_paths, &path); /* sent again next time */
		return false;
	}
	http_count(HTTP_CNT_PATHS_SENT);
	if (!scratch_intact(stamp)) {
		bpf_map_delete_elem(&http_paths, &path);
		return false;
	}
	return true;
}

/* The ends of a segment that came to a listening socket, as the connection's own socket will have them. */
static __always_inline bool early_key_of_packet(struct __sk_buff *skb, __u32 family, const struct tcp_start *th, struct http_early_key *k)
{
	k->family = family;
	k->rport = bpf_ntohs(th->sport);
	k->lport = bpf_ntohs(th->dport);
	if (family == AF_INET)
		return !bpf_skb_load_bytes(skb, 12, &k->raddr[0], 4);
	return !bpf_skb_load_bytes(skb, 8, k->raddr, 16);
}

static __always_inline void early_key_of_sock(struct bpf_sock *sk, __u32 family, struct http_early_key *k)
{
	k->family = family;
	k->rport = bpf_ntohs(sk->dst_port);
	k->lport = sk->src_port;
	if (family == AF_INET) {
		k->raddr[0] = sk->dst_ip4;
	} else {
		k->raddr[0] = sk->dst_ip6[0];
		k->raddr[1] = sk->dst_ip6[1];
		k->raddr[2] = sk->dst_ip6[2];
		k->raddr[3] = sk->dst_ip6[3];
	}
}

/* A request that reached a listening socket: the connection it belongs to
 * has no socket yet, so it waits by the connection's ends. */
static __always_inline void http_early_request(struct __sk_buff *skb, __u32 family, __u32 off, const struct tcp_start *th)
{
	struct http_early_key k = {};
	if (!early_key_of_packet(skb, family, th, &k))
		return;
	if (!cfg.include_loopback && is_loopback(k.raddr, family))
		return;
	if (!parse_request(skb, off)) {
		http_count(HTTP_CNT_NOT_HTTP);
		return;
	}
	struct http_parsed *p = scratch(&http_parse);
	struct http_early *e = scratch(&http_early_scratch);
	if (!p || !p->ok || !e)
		return;
	e->ts = bpf_ktime_get_ns();
	e->path = p->path;
	e->method = p->method;
	e->version = p->version;
	e->seq_end = bpf_ntohl(th->seq) + (skb->len - off);
	__u64 len = capture_len(p->len, HTTP_CAPTURE);
	e->len = len;
	if (cfg.per_request && bpf_probe_read_kernel(e->data, len, p->event.data))
		return;
	if (bpf_map_update_elem(&http_early, &k, e, BPF_ANY)) {
		http_count(HTTP_CNT_STATE_FULL);
		return;
	}
	http_count(HTTP_CNT_EARLY);
	if (!cfg.per_request)
		send_path_once(p, p->path, 0);
}

/* Aggregated mode: the first answer of a socket whose request came early takes that request. */
static __always_inline struct http_conn *adopt_conn(struct bpf_sock *full, __u32 family)
{
	struct http_early_key k = {};
	early_key_of_sock(full, family, &k);
	struct http_early *e = bpf_map_lookup_elem(&http_early, &k);
	if (!e)
		return NULL;
	struct http_conn *hc = bpf_sk_storage_get(&http_conns, full, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (hc && !hc->q.count) {
		struct http_queue *q = &hc->q;
		struct http_waiting *w = &q->waiting[q->head & (HTTP_QUEUE - 1)];
		w->ts = e->ts;
		w->path = e->path;
		w->method = e->method;
		w->version = e->version;
		q->count = 1;
		q->request_egress = 0;
		q->in_request = 1;
		q->req_end_ts = e->ts;
		hc->pos.known[0] = 1;
		hc->pos.next[0] = e->seq_end;
	}
	bpf_map_delete_elem(&http_early, &k);
	return hc;
}

/* Per request: the same, the request kept in socket storage as if it had come there. */
static __always_inline struct http_sock *adopt_sock(struct bpf_sock *full, __u32 family)
{
	struct http_early_key k = {};
	early_key_of_sock(full, family, &k);
	struct http_early *e = bpf_map_lookup_elem(&http_early, &k);
	if (!e)
		return NULL;
	struct http_sock *st = bpf_sk_storage_get(&http_socks, full, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st && !st->outstanding) {
		__u64 len = capture_len(e->len, HTTP_CAPTURE);
		if (!bpf_probe_read_kernel(st->data, len, e->data)) {
			st->len = len;
			st->ts = e->ts;
			st->stored = 1;
			st->outstanding = 1;
			st->request_egress = 0;
			st->in_request = 1;
			st->req_end_ts = e->ts;
			st->pos.known[0] = 1;
			st->pos.next[0] = e->seq_end;
		}
	}
	bpf_map_delete_elem(&http_early, &k);
	return st;
}

static __always_inline bool ephemeral(__u16 port)
{
	return port >= 32768 && port <= 60999;
}

/* Adds one exchange to its series, or to its endpoint pair's overflow series
 * once the interval's series are all made. */
static __always_inline void add_exchange(struct http_series_key *k, __u64 latency)
{
	enum series_outcome added = add_to_series(&http_control, &http_series, &http_series_zero, &http_series_in_progress, k, cfg.max_series, latency);
	if (added == SERIES_FULL) {
		k->path = 0;
		k->method = 0;
		k->status = 0;
		k->version = 0;
		http_count(HTTP_CNT_OVERFLOW);
		added = add_to_series(&http_control, &http_series, &http_series_zero, &http_series_in_progress, k, ~0ULL, latency);
	}
	http_count(added == SERIES_ADDED ? HTTP_CNT_EXCHANGES : HTTP_CNT_SERIES_LOST);
}

/* Aggregated mode: a request (parsed into `p`: its path, method and version
 * given apart, as read) that started at `start` waits in its connection's
 * queue for its response. */
static __always_inline void queue_request(struct http_queue *q, struct http_parsed *p, __u64 path, __u8 method, __u8 version, __u64 stamp, bool egress, __u64 start, __u64 now)
{
	q->request_egress = egress;
	q->in_request = 1;
	q->req_end_ts = now;
	if (q->count >= HTTP_QUEUE) {
		http_count(HTTP_CNT_QUEUE_OVERFLOW);
		return;
	}
	struct http_waiting *w = &q->waiting[(q->head + q->count) & (HTTP_QUEUE - 1)];
	w->ts = start;
	w->path = path;
	w->method = method;
	w->version = version;
	q->count++;
	/* the path this connection sent last is not looked up again (keep-alive
	 * repeats one path) while user space has forgotten none since */
	__u32 zero = 0;
	__u32 *epoch = bpf_map_lookup_elem(&http_paths_epoch, &zero);
	if (!epoch)
		return;
	__u32 now_epoch = *epoch;
	if (q->sent_path == path && q->paths_epoch == now_epoch)
		return;
	if (send_path_once(p, path, stamp)) {
		q->sent_path = path;
		q->paths_epoch = now_epoch;
	}
}

/* A final response that started at `start` answers the oldest waiting
 * request: its method, path and version go into the series key, and the
 * time to first byte into `latency`. False when no request waits. */
static __always_inline bool queue_answer(struct http_queue *q, __u64 start, struct http_series_key *k, __u64 *latency)
{
	if (!q || !q->count) {
		http_count(HTTP_CNT_UNMATCHED);
		return false;
	}
	q->in_request = 0;
	struct http_waiting *w = &q->waiting[q->head & (HTTP_QUEUE - 1)];
	q->head++;
	q->count--;
	/* the connection's last request data belongs to this request only if no other waits */
	__u64 end = w->ts;
	if (!q->count && q->req_end_ts > end)
		end = q->req_end_ts;
	*latency = start > end ? start - end : 0;
	k->method = w->method;
	k->version = w->version;
	k->path = w->path;
	return true;
}

/* The series' ends, an ephemeral port of the client collapsed. */
static __always_inline void key_ends(struct http_series_key *k, const struct conn_tuple *t, bool server)
{
	__builtin_memcpy(k->saddr, t->saddr, 16);
	__builtin_memcpy(k->daddr, t->daddr, 16);
	k->family = t->family;
	k->server = server;
	k->sport = !server && ephemeral(t->sport) ? 0 : t->sport;
	k->dport = server && ephemeral(t->dport) ? 0 : t->dport;
}

/* Aggregated mode: a request waits in its socket's queue; a response takes
 * the oldest and adds the exchange to its series. */
static __always_inline void http_aggregate(struct __sk_buff *skb, struct bpf_sock *bsk, __u32 family, __u32 off, int kind, bool egress, __u32 seq)
{
	struct bpf_sock *full = bpf_sk_fullsock(bsk);
	if (!full)
		return;
	__u64 now = bpf_ktime_get_ns();
	if (!kind) {
		/* more of a request: its end moves on */
		struct http_conn *hc = bpf_sk_storage_get(&http_conns, full, 0, 0);
		if (!hc)
			return;
		if (!stream_advance(&hc->pos, egress, seq, skb->len - off))
			http_count(HTTP_CNT_SEEN_BEFORE);
		else if (hc->q.in_request && hc->q.request_egress == egress)
			hc->q.req_end_ts = now;
		return;
	}
	struct conn_tuple t = {};
	if (!read_ends(bsk, family, &t))
		return; /* loopback, not reported */
	if (kind == HTTP_REQUEST) {
		if (!parse_request(skb, off)) {
			http_count(HTTP_CNT_NOT_HTTP);
			return;
		}
		struct http_parsed *p = scratch(&http_parse);
		if (!p || !p->ok)
			return;
		struct http_conn *hc = bpf_sk_storage_get(&http_conns, full, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (!hc) {
			http_count(HTTP_CNT_STATE_FULL);
			return;
		}
		if (!stream_advance(&hc->pos, egress, seq, skb->len - off)) {
			http_count(HTTP_CNT_SEEN_BEFORE);
			return;
		}
		queue_request(&hc->q, p, p->path, p->method, p->version, 0, egress, now, now);
		return;
	}

	struct http_conn *hc = bpf_sk_storage_get(&http_conns, full, 0, 0);
	if (!hc && egress)
		hc = adopt_conn(full, family);
	if (hc && !stream_advance(&hc->pos, egress, seq, skb->len - off)) {
		http_count(HTTP_CNT_SEEN_BEFORE);
		return;
	}
	__u16 status = parse_status(skb, off);
	if (!status) {
		http_count(HTTP_CNT_NOT_HTTP);
		return;
	}
	if (status < 200 && status != 101)
		return; /* an interim answer (100 Continue): the final one follows */
	struct http_series_key k = {};
	__u64 latency;
	if (!queue_answer(hc ? &hc->q : NULL, now, &k, &latency))
		return;
	/* the response leaves the side that serves */
	key_ends(&k, &t, egress);
	k.status = status;
	if (!hc->pid) {
		__u64 key = (__u64)bsk;
		struct conn_stats *c = bpf_map_lookup_elem(&conns, &key);
		if (c) {
			hc->pid = c->pid;
			__builtin_memcpy(hc->comm, c->comm, sizeof(hc->comm));
		}
	}
	k.pid = hc->pid;
	__builtin_memcpy(k.comm, hc->comm, sizeof(k.comm));
	add_exchange(&k, latency);
}

/* Per request: message starts go to user space, which pairs them. */
static __always_inline void http_per_request(struct __sk_buff *skb, struct bpf_sock *bsk, __u32 family, __u32 off, int kind, bool egress, __u32 seq)
{
	struct bpf_sock *full = bpf_sk_fullsock(bsk);
	if (!full)
		return;
	/* per-socket state is made by a request, and only looked up otherwise */
	struct http_sock *st = bpf_sk_storage_get(&http_socks, full, 0, kind == HTTP_REQUEST ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!st && kind == HTTP_RESPONSE && egress)
		st = adopt_sock(full, family);
	if (st && !stream_advance(&st->pos, egress, seq, skb->len - off)) {
		http_count(HTTP_CNT_SEEN_BEFORE);
		return;
	}
	if (kind == HTTP_RESPONSE) {
		__u16 status = parse_status(skb, off);
		if (status && status < 200 && status != 101)
			return; /* an interim answer (100 Continue): the final one follows */
	}
	__u64 now = bpf_ktime_get_ns();
	if (!kind) {
		/* more of a request: its end moves on */
		if (st && st->in_request && st->request_egress == egress)
			st->req_end_ts = now;
		return;
	}
	if (kind == HTTP_REQUEST && !st)
		http_count(HTTP_CNT_STATE_FULL);

	struct http_event *e = scratch(&http_scratch);
	if (!e)
		return;
	e->req_end_ts = 0;
	if (st && kind == HTTP_REQUEST) {
		st->request_egress = egress;
		st->in_request = 1;
		st->req_end_ts = now;
	} else if (st) {
		e->req_end_ts = st->req_end_ts;
		st->in_request = 0;
	}
	if (!read_ends(bsk, family, &e->t))
		return;

	__u64 key = (__u64)bsk;
	struct conn_stats *c = bpf_map_lookup_elem(&conns, &key);
	e->pid = c ? c->pid : 0;
	if (c)
		__builtin_memcpy(e->comm, c->comm, sizeof(e->comm));
	else
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	e->sk = key;
	e->egress = egress;
	e->req_ts = 0;

	/* a request is kept until its response when it is the only one waiting */
	if (st && kind == HTTP_REQUEST) {
		if (!st->outstanding) {
			__u64 keep = capture_len(skb->len - off, HTTP_CAPTURE);
			if (keep && !bpf_skb_load_bytes(skb, off, st->data, keep)) {
				st->len = keep;
				st->ts = now;
				st->stored = 1;
				st->outstanding = 1;
				return;
			}
		}
		/* pipelined: the kept request goes out first, as a record of its own */
		if (st->stored) {
			st->stored = 0;
			__u64 plen = capture_len(st->len, HTTP_CAPTURE);
			if (plen && !bpf_probe_read_kernel(e->data, plen, st->data)) {
				e->ts = st->ts;
				e->kind = HTTP_REQUEST;
				e->len = plen;
				http_output(e, plen);
			}
		}
		if (st->outstanding < 255)
			st->outstanding++;
	} else if (st && kind == HTTP_RESPONSE) {
		if (st->stored && st->outstanding == 1) {
			st->stored = 0;
			st->outstanding = 0;
			__builtin_memset(e->status, 0, sizeof(e->status));
			__u64 slen = capture_len(skb->len - off, HTTP_STATUS_CAPTURE);
			__u64 plen = capture_len(st->len, HTTP_CAPTURE);
			if (slen && plen && !bpf_skb_load_bytes(skb, off, e->status, slen) && !bpf_probe_read_kernel(e->data, plen, st->data)) {
				e->ts = now;
				e->req_ts = st->ts;
				e->kind = HTTP_EXCHANGE;
				e->len = plen;
				http_output(e, plen);
			}
			return;
		}
		if (st->outstanding)
			st->outstanding--;
	}

	e->ts = now;
	e->kind = kind;
	/* a request needs its whole first line; a response only its status */
	__u64 len = capture_len(skb->len - off, kind == HTTP_REQUEST ? HTTP_CAPTURE : HTTP_STATUS_CAPTURE);
	if (!len || bpf_skb_load_bytes(skb, off, e->data, len))
		return;
	e->len = len;
	http_output(e, len);
	return;
}

/* A FIN or RST: once the connection is over in both directions (or reset),
 * requests still waiting will never be answered; they are counted, not kept. */
static __always_inline void http_end(struct bpf_sock *bsk, bool egress, __u8 flags)
{
	struct bpf_sock *full = bpf_sk_fullsock(bsk);
	if (!full)
		return;
	__u8 side = egress ? 2 : 1;
	if (cfg.per_request) {
		struct http_sock *st = bpf_sk_storage_get(&http_socks, full, 0, 0);
		if (!st)
			return;
		if (flags & TCP_FLAG_FIN)
			st->fin |= side;
		if (!(flags & TCP_FLAG_RST) && st->fin != 3)
			return;
		if (st->stored)
			http_count(HTTP_CNT_UNANSWERED);
		/* requests already sent to user space: it lets them go, counted */
		if (st->outstanding > st->stored) {
			struct http_event *e = scratch(&http_scratch);
			if (e) {
				e->ts = bpf_ktime_get_ns();
				e->sk = (__u64)bsk;
				e->kind = HTTP_CONN_END;
				e->len = 0;
				http_output(e, 0);
			}
		}
		st->stored = 0;
		st->outstanding = 0;
		return;
	}
	struct http_conn *hc = bpf_sk_storage_get(&http_conns, full, 0, 0);
	if (!hc)
		return;
	if (flags & TCP_FLAG_FIN)
		hc->fin |= side;
	if (!(flags & TCP_FLAG_RST) && hc->fin != 3)
		return;
	if (hc->q.count)
		counter_add(&http_counters, HTTP_CNT_UNANSWERED, hc->q.count);
	hc->q.count = 0;
}

/* A segment with data, a FIN or a RST. */
static __always_inline void http_segment(struct __sk_buff *skb, struct bpf_sock *bsk, __u32 family, __u32 off, const struct tcp_start *th, bool egress)
{
	if (skb->len > off && bsk->state == BPF_TCP_LISTEN) {
		/* data before the handshake's end: its connection has no socket yet */
		__u32 word = 0;
		if (!egress && skb->len >= off + 4 && !bpf_skb_load_bytes(skb, off, &word, 4) && http_kind(word) == HTTP_REQUEST)
			http_early_request(skb, family, off, th);
		return;
	}
	if (skb->len > off) {
		__u32 seq = bpf_ntohl(th->seq);
		__u32 word = 0;
		int kind = 0;
		if (skb->len >= off + 4 && !bpf_skb_load_bytes(skb, off, &word, 4))
			kind = http_kind(word);
		if (cfg.per_request)
			http_per_request(skb, bsk, family, off, kind, egress, seq);
		else
			http_aggregate(skb, bsk, family, off, kind, egress, seq);
	}
	/* after the data it may carry: the end of the connection */
	if (th->flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		http_end(bsk, egress, th->flags);
}

/* The packet's family, IP protocol and IP header length: read in place when
 * the header is in the skb's linear part, as it almost always is (a helper's
 * copy costs more than the rest of a bare ACK's run), else copied. False when
 * it is not IP. Read once per packet, for the UDP peer stash and for TCP. */
static __always_inline bool ip_header(struct __sk_buff *skb, __u32 *family, __u8 *proto, __u32 *l4)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;
		if ((void *)(ip + 1) <= end) {
			*proto = ip->protocol;
			*l4 = ip->ihl * 4;
		} else {
			__u8 b[10]; /* through the protocol byte, in one load */
			if (bpf_skb_load_bytes(skb, 0, b, sizeof(b)))
				return false;
			*proto = b[9];
			*l4 = (b[0] & 0xf) * 4;
		}
		*family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;
		if ((void *)(ip6 + 1) <= end)
			*proto = ip6->nexthdr;
		else if (bpf_skb_load_bytes(skb, 6, proto, 1))
			return false;
		*l4 = 40;
		*family = AF_INET6;
	} else {
		return false;
	}
	return true;
}

/* The TCP header's start, at l4: in place, else copied. */
static __always_inline bool tcp_start_at(struct __sk_buff *skb, __u32 l4, struct tcp_start *th)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 at = l4 & 63;
	struct tcp_start *t = data + at;
	if ((void *)(t + 1) <= end) {
		*th = *t;
		return true;
	}
	return !bpf_skb_load_bytes(skb, at, th, sizeof(*th));
}

/* dnsflow's packet programs, one per side, put here by user space when dnsflow
 * runs too: the packets that may be DNS go on to them, so that every packet
 * runs one program on each side instead of two. Empty, the call falls through. */
struct dns_programs {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} dns_egress_programs SEC(".maps"), dns_ingress_programs SEC(".maps");

/* What dnsflow's own programs do not leave at their first test: a socket whose
 * peer is on port 53, or an unconnected one (UDP; a TCP listener's peer is
 * unknown too, but a client's DNS never comes to one). Never returns when
 * dnsflow takes the packet. */
static __always_inline void pass_dns(struct __sk_buff *skb, struct bpf_sock *bsk, bool egress)
{
	__u16 peer = skb_peer_port(skb);
	if (peer == bpf_htons(DNS_PORT) || (!peer && bsk->state == BPF_TCP_CLOSE)) {
		if (egress)
			bpf_tail_call(skb, &dns_egress_programs, 0);
		else
			bpf_tail_call(skb, &dns_ingress_programs, 0);
	}
}

/* A UDP datagram leaving a socket for a peer other than the one it is
 * connected to (most often: an unconnected socket). This program runs inside
 * the send call, in the sending thread, before netflow's byte hook: the peer
 * waits in that thread's stash slot, which the byte hook takes (netflow.bpf.c,
 * take_peer), as it took what netflow's cgroup sendmsg hooks stashed. Those
 * hooks lock the socket on every send; this program runs anyway. Datagrams
 * whose headers are not in place (IPv6 extension headers) are left to
 * netflow's fallback, the socket's last peer. Kernels whose packet programs
 * may not call bpf_get_current_pid_tgid (5.10, 6.1) get this object with
 * cfg.udp_peers off, which makes this dead code the verifier skips, and keep
 * netflow's sendmsg hooks. */
static __always_inline void stash_udp_peer(struct __sk_buff *skb, struct bpf_sock *bsk, __u32 family, __u32 l4)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 addr[4] = {};
	if (family == AF_INET) {
		/* AF_INET from a dual-stack socket too: take_peer maps it */
		struct iphdr *ip = data;
		if ((void *)(ip + 1) > end)
			return;
		addr[0] = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data;
		if ((void *)(ip6 + 1) > end)
			return;
		__builtin_memcpy(addr, &ip6->daddr, 16);
	}
	__u16 *ports = data + (l4 & 63);
	if ((void *)(ports + 2) > end)
		return;
	__u16 dport = ports[1];
	if (bsk->state == BPF_TCP_ESTABLISHED && dport == (__u16)bsk->dst_port) {
		/* connected: netflow reads this peer from the socket, unless the
		 * datagram goes elsewhere (sendto on a connected socket) */
		if (family == AF_INET ? addr[0] == bsk->dst_ip4
				      : addr[0] == bsk->dst_ip6[0] && addr[1] == bsk->dst_ip6[1] && addr[2] == bsk->dst_ip6[2] && addr[3] == bsk->dst_ip6[3])
			return;
	}
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 slot = tid & (UDP_STASH_SLOTS - 1);
	struct udp_peer *p = bpf_map_lookup_elem(&udp_stash, &slot);
	if (!p)
		return;
	udp_peer_put(p, tid, (__u64)bsk, addr, bpf_ntohs(dport), family);
}

/* A datagram leaving or reaching a socket bound to no address: its local
 * address (the source routing chose, or the destination it came to) is noted
 * by socket for netflow (struct udp_local), whose byte hooks would report the
 * wildcard. Written only when it changes: most such sockets use one address.
 * A multicast or broadcast destination names a group, not this host: left. */
static __always_inline void note_udp_local(struct __sk_buff *skb, struct bpf_sock *bsk, __u32 family, bool egress)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct udp_local v = {};
	__u32 *w = (__u32 *)v.addr;
	if (bsk->family == AF_INET6) {
		if (bsk->src_ip6[0] | bsk->src_ip6[1] | bsk->src_ip6[2] | bsk->src_ip6[3])
			return;
	} else if (bsk->family != AF_INET || bsk->src_ip4) {
		return;
	}
	if (family == AF_INET) {
		struct iphdr *ip = data;
		if ((void *)(ip + 1) > end)
			return;
		__u32 a = egress ? ip->saddr : ip->daddr;
		if ((a & bpf_htonl(0xf0000000)) == bpf_htonl(0xe0000000) || a == 0xffffffff)
			return;
		if (bsk->family == AF_INET)
			w[0] = a;
		else /* a dual-stack socket's IPv4 datagram: as the socket names it */
			v4_mapped(w, a);
	} else {
		struct ipv6hdr *ip6 = data;
		if ((void *)(ip6 + 1) > end || bsk->family != AF_INET6)
			return;
		if (egress)
			__builtin_memcpy(v.addr, &ip6->saddr, 16);
		else
			__builtin_memcpy(v.addr, &ip6->daddr, 16);
		if (v.addr[0] == 0xff)
			return;
	}
	__u64 key = (__u64)bsk;
	struct udp_local *known = bpf_map_lookup_elem(&udp_locals, &key);
	if (known) {
		__u32 *k = (__u32 *)known->addr;
		if (k[0] == w[0] && k[1] == w[1] && k[2] == w[2] && k[3] == w[3])
			return;
	}
	bpf_map_update_elem(&udp_locals, &key, &v, BPF_ANY);
}

static __always_inline int http_skb(struct __sk_buff *skb, bool egress)
{
	struct bpf_sock *bsk = skb->sk;
	if (!bsk)
		return 1;
	/* (the socket's protocol is not readable before bpf_sk_fullsock: the packet's says) */
	__u32 family, l4;
	__u8 proto = 0;
	bool ip = ip_header(skb, &family, &proto, &l4);
	if (ip && proto == IPPROTO_UDP) {
		if (egress && cfg.udp_peers)
			stash_udp_peer(skb, bsk, family, l4);
		if (cfg.udp_locals)
			note_udp_local(skb, bsk, family, egress);
	}
	pass_dns(skb, bsk, egress);
	struct tcp_start th;
	if (!ip || proto != IPPROTO_TCP || !tcp_start_at(skb, l4, &th))
		return 1;
	__u32 off = l4 + (th.doff >> 4) * 4;
	if (skb->len <= off && !(th.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		return 1; /* a bare ACK: nothing to see */
	/* only runs that may use scratch memory count their nesting */
	__u32 *depth = nest_enter();
	http_segment(skb, bsk, family, off, &th, egress);
	nest_leave(depth);
	return 1;
}

#include "tls.h"

SEC("cgroup_skb/egress")
int http_egress(struct __sk_buff *skb)
{
	return http_skb(skb, true);
}

SEC("cgroup_skb/ingress")
int http_ingress(struct __sk_buff *skb)
{
	return http_skb(skb, false);
}

char LICENSE[] SEC("license") = "GPL";
