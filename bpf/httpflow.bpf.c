// SPDX-License-Identifier: GPL-2.0
/* httpflow: starts of HTTP/1.x requests and responses.
 *
 * cgroup_skb programs on the cgroup v2 root see every TCP segment of every
 * socket on the host, with the socket itself. A segment whose payload starts
 * like a request line or a status line is an HTTP message start; only its
 * first bytes go to user space. The owner of the socket comes from netflow's
 * connection table, which user space hands to this object before load (when
 * netflow runs; without it the owner is unknown). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "addr.h"
#include "capture.h"
#include "counters.h"
#include "httpflow.h"
#include "ringbuf.h"

const volatile struct httpflow_config cfg = {
	.include_loopback = 0,
	.wakeup_bytes = 1 << 20,
};

/* netflow's table, by socket (replaced by netflow's own map before load). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct conn_stats);
} conns SEC(".maps");

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

/* Events are built here, then copied out with only their used length. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http_event);
} http_scratch SEC(".maps");

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

static __always_inline int http_skb(struct __sk_buff *skb, bool egress)
{
	struct bpf_sock *bsk = skb->sk;
	if (!bsk)
		return 1;
	__u32 l4, family;
	__u8 proto;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;
		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1))
			return 1;
		l4 = (vihl & 0xf) * 4;
		family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return 1;
		l4 = 40;
		family = AF_INET6;
	} else {
		return 1;
	}
	if (proto != IPPROTO_TCP)
		return 1;
	__u8 doff;
	if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
		return 1;
	__u32 off = l4 + (doff >> 4) * 4;
	if (skb->len <= off)
		return 1; /* no payload */

	__u32 word = 0;
	int kind = 0;
	if (skb->len >= off + 4 && !bpf_skb_load_bytes(skb, off, &word, 4))
		kind = http_kind(word);
	struct bpf_sock *full = bpf_sk_fullsock(bsk);
	if (!full)
		return 1;
	/* per-socket state is made by a request, and only looked up otherwise */
	struct http_sock *st = bpf_sk_storage_get(&http_socks, full, 0, kind == HTTP_REQUEST ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	__u64 now = bpf_ktime_get_ns();
	if (!kind) {
		/* more of a request: its end moves on */
		if (st && st->in_request && st->request_egress == egress)
			st->req_end_ts = now;
		return 1;
	}
	if (kind == HTTP_REQUEST && !st)
		http_count(HTTP_CNT_STATE_FULL);

	__u32 zero = 0;
	struct http_event *e = bpf_map_lookup_elem(&http_scratch, &zero);
	if (!e)
		return 1;
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
		return 1;

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
				return 1;
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
			return 1;
		}
		if (st->outstanding)
			st->outstanding--;
	}

	e->ts = now;
	e->kind = kind;
	/* a request needs its whole first line; a response only its status */
	__u64 len = capture_len(skb->len - off, kind == HTTP_REQUEST ? HTTP_CAPTURE : HTTP_STATUS_CAPTURE);
	if (!len || bpf_skb_load_bytes(skb, off, e->data, len))
		return 1;
	e->len = len;
	http_output(e, len);
	return 1;
}

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
