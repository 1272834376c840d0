// SPDX-License-Identifier: GPL-2.0
/* netflow: per-connection TCP statistics aggregated in the kernel.
 *
 * Connections are tracked from their state changes (inet_sock_set_state),
 * bytes are counted from sock_send_length / sock_recv_length (Linux 6.3+),
 * which fire in process context with the exact payload size and the owning
 * task. User space reads the `conns` map once per interval. When a socket is
 * destroyed (not merely closed: the application may still read what arrived
 * before the FIN) its final counters are queued on the `closed` ring buffer
 * and its entry removed, so short connections are never lost between reads.
 * Only raw tracepoints are used: no kprobes, no tracefs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "counters.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netflow.h"
#include "ringbuf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define MSG_PEEK 2
#define SAMPLE_EVERY 16

const volatile struct netflow_config cfg = {
	.include_loopback = 0,
	.wakeup_bytes = 1 << 20,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by user space before load */
	/* allocated as connections come: the bound is large, most hosts use little of it */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);         /* struct sock pointer */
	__type(value, struct conn_stats);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} closed SEC(".maps");

/* Closed connections whose event did not fit in the ring buffer, by id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct conn_stats);
} orphans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by user space before load */
	__type(key, struct udp_key);
	__type(value, struct conn_stats);
} udp_flows SEC(".maps");

/* The peer of the datagram being sent or received on this CPU, left by the
 * cgroup sendmsg/recvmsg hooks for the byte tracepoint that follows them in
 * the same syscall: unconnected sockets have no peer in struct sock. */
struct udp_peer {
	__u64 sk;
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct udp_peer);
} udp_stash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} http_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock pointer */
	__type(value, struct http_state);
} http_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct http_pending);
} http_pending SEC(".maps");

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

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* a hint: the least recently used may go */
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock pointer */
	__type(value, struct udp_last_peer);
} udp_last_peers SEC(".maps");

/* Per-CPU sequence for connection ids. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} id_seq SEC(".maps");

static __always_inline void count(__u32 slot)
{
	counter_inc(&counters, slot);
}

static __always_inline __u16 sk_proto(const struct sock *sk)
{
	/* a bitfield before 5.6, a plain field since: the probed read handles both */
	return BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
}

static __always_inline bool is_loopback(const __u8 *a, __u16 family)
{
	if (family == AF_INET)
		return a[0] == 127;
	/* ::1 and ::ffff:127.0.0.0/104 */
	__u32 w0 = *(__u32 *)a, w1 = *(__u32 *)(a + 4), w2 = *(__u32 *)(a + 8);
	if (w0 || w1)
		return false;
	if (w2 == 0)
		return a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 1;
	return w2 == bpf_htonl(0x0000ffff) && a[12] == 127;
}

static __always_inline bool tuple_allowed(const struct conn_tuple *t)
{
	if (cfg.include_loopback)
		return true;
	return !is_loopback(t->saddr, t->family) && !is_loopback(t->daddr, t->family);
}

/* Fill addresses and ports; returns false when the flow must not be tracked. */
static __always_inline bool read_tuple(const struct sock *sk, struct conn_tuple *t)
{
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->proto = sk_proto(sk);
	t->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (t->family == AF_INET) {
		__u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&t->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	return tuple_allowed(t);
}

static __always_inline void read_rtt(const struct sock *sk, struct conn_stats *c)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	c->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	c->mdev_us = BPF_CORE_READ(tp, mdev_us) >> 2;
}

static __always_inline void set_owner(struct conn_stats *c)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (c->pid != tgid) {
		c->pid = tgid;
		/* the process's name, not the thread's (e.g. dig's "isc-net-0000") */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		BPF_CORE_READ_STR_INTO(&c->comm, task, group_leader, comm);
		c->cgroup_id = bpf_get_current_cgroup_id();
	}
}

/* A unique id: per-CPU sequence number and CPU. */
static __always_inline __u64 new_id(void)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&id_seq, &zero);
	if (!seq)
		return 0;
	*seq += 1;
	return (*seq << 12) | (bpf_get_smp_processor_id() & 0xfff);
}

static __always_inline struct conn_stats *track(__u64 key, __u8 direction, __u8 flags)
{
	struct conn_stats fresh = {};
	fresh.id = new_id();
	fresh.direction = direction;
	fresh.flags = flags;
	/* BPF_NOEXIST: a concurrent insert for the same socket keeps the first */
	long err = bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST */) {
		count(CNT_CONN_MAP_FULL);
		return NULL;
	}
	if (!err)
		count(CNT_CONNS_TRACKED);
	return bpf_map_lookup_elem(&conns, &key);
}

static __always_inline bool is_inet_tcp(const struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return (family == AF_INET || family == AF_INET6) && sk_proto(sk) == IPPROTO_TCP;
}

/* Owner and RTT are sampled, not read on every event: the probed reads cost
 * more than the rest of the hook. Always on the first event, then every
 * SAMPLE_EVERY events, and again when the connection closes. */
static __always_inline void account(struct conn_stats *c, const struct sock *sk, int bytes, bool sent)
{
	if (sent)
		__sync_fetch_and_add(&c->bytes_sent, bytes);
	else
		__sync_fetch_and_add(&c->bytes_recv, bytes);
	if (!c->pid || ++c->samples >= SAMPLE_EVERY) {
		c->samples = 0;
		set_owner(c);
		if (c->t.proto == IPPROTO_TCP && !(c->flags & CONN_F_CLOSED))
			read_rtt(sk, c);
	}
}

static __always_inline bool same_addr(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline void on_udp_bytes(struct sock *sk, __u64 skp, int bytes, bool sent)
{
	struct udp_key k = {.sk = skp};
	struct conn_tuple t = {};
	__u32 zero = 0;
	struct udp_peer *p = bpf_map_lookup_elem(&udp_stash, &zero);

	read_tuple(sk, &t);
	if (p && p->sk == skp) {
		/* unconnected socket: the peer came with this datagram */
		__builtin_memcpy(t.daddr, p->addr, 16);
		t.dport = p->port;
		if (p->family == AF_INET6 && t.family == AF_INET)
			t.family = AF_INET6;
		p->sk = 0;
		if (sent) {
			struct udp_last_peer *lp = bpf_map_lookup_elem(&udp_last_peers, &skp);
			if (!lp || lp->port != t.dport || lp->local_port != t.sport || !same_addr(lp->addr, t.daddr)) {
				struct udp_last_peer np = {.port = t.dport, .family = t.family, .local_port = t.sport};
				__builtin_memcpy(np.addr, t.daddr, 16);
				bpf_map_update_elem(&udp_last_peers, &skp, &np, BPF_ANY);
			}
		}
	} else if (!t.dport) {
		struct udp_last_peer *lp = bpf_map_lookup_elem(&udp_last_peers, &skp);
		if (!lp || lp->local_port != t.sport) {
			count(CNT_UDP_NO_PEER);
			return;
		}
		__builtin_memcpy(t.daddr, lp->addr, 16);
		t.dport = lp->port;
		t.family = lp->family;
		count(CNT_UDP_LAST_PEER);
	}
	if (!tuple_allowed(&t))
		return;
	__builtin_memcpy(k.peer, t.daddr, 16);
	k.peer_port = t.dport;

	struct conn_stats *c = bpf_map_lookup_elem(&udp_flows, &k);
	if (!c) {
		struct conn_stats fresh = {};
		fresh.t = t;
		fresh.id = new_id();
		/* the side that received first is the server */
		fresh.direction = sent ? DIR_OUTGOING : DIR_INCOMING;
		long err = bpf_map_update_elem(&udp_flows, &k, &fresh, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST */) {
			count(CNT_UDP_MAP_FULL);
			return;
		}
		c = bpf_map_lookup_elem(&udp_flows, &k);
		if (!c)
			return;
	}
	account(c, sk, bytes, sent);
}

static __always_inline void on_bytes(struct sock *sk, int bytes, bool sent)
{
	__u64 key = (__u64)sk;
	struct conn_stats *c = bpf_map_lookup_elem(&conns, &key);
	if (c) {
		account(c, sk, bytes, sent);
		return;
	}
	/* not tracked: UDP, another family, filtered, or open before we started */
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	__u16 proto = sk_proto(sk);
	if (proto == IPPROTO_UDP) {
		on_udp_bytes(sk, key, bytes, sent);
		return;
	}
	if (proto != IPPROTO_TCP)
		return;
	int state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT)
		return;
	struct conn_tuple t = {};
	if (!read_tuple(sk, &t))
		return;
	c = track(key, DIR_UNKNOWN, CONN_F_PREEXISTING);
	if (!c)
		return;
	c->t = t;
	account(c, sk, bytes, sent);
}

/* cgroup sock_addr hooks: called for sends with an address and receives that
 * ask for one, in the syscall, just before the byte tracepoint. */
static __always_inline void stash_peer(struct bpf_sock_addr *ctx, bool v6)
{
	__u32 zero = 0;
	struct udp_peer *p = bpf_map_lookup_elem(&udp_stash, &zero);
	if (!p)
		return;
	p->sk = (__u64)ctx->sk;
	p->port = bpf_ntohs((__u16)ctx->user_port);
	__u32 *a = (__u32 *)p->addr;
	if (v6) {
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
		p->family = AF_INET6;
	} else {
		a[0] = ctx->user_ip4;
		a[1] = a[2] = a[3] = 0;
		p->family = AF_INET;
	}
}

SEC("cgroup/sendmsg4")
int udp_sendmsg4(struct bpf_sock_addr *ctx)
{
	stash_peer(ctx, false);
	return 1;
}

SEC("cgroup/recvmsg4")
int udp_recvmsg4(struct bpf_sock_addr *ctx)
{
	stash_peer(ctx, false);
	return 1;
}

SEC("cgroup/sendmsg6")
int udp_sendmsg6(struct bpf_sock_addr *ctx)
{
	stash_peer(ctx, true);
	return 1;
}

SEC("cgroup/recvmsg6")
int udp_recvmsg6(struct bpf_sock_addr *ctx)
{
	stash_peer(ctx, true);
	return 1;
}

SEC("raw_tp/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0)
		on_bytes(sk, ret, true);
	return 0;
}

SEC("raw_tp/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	/* peeked bytes are read again later: count them once */
	if (ret > 0 && !(flags & MSG_PEEK))
		on_bytes(sk, ret, false);
	return 0;
}

/* The socket is being freed: report its final counters. */
static __always_inline void report_closed(__u64 key)
{
	struct conn_stats *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return;
	if (!(c->flags & (CONN_F_ESTABLISHED | CONN_F_PREEXISTING))) {
		bpf_map_delete_elem(&conns, &key); /* a connect that never succeeded */
		return;
	}
	struct conn_close_event *e = bpf_ringbuf_reserve(&closed, sizeof(*e), 0);
	if (!e) {
		/* keep the counters where user space collects them each interval */
		count(CNT_RINGBUF_FULL);
		if (bpf_map_update_elem(&orphans, &c->id, c, BPF_NOEXIST))
			count(CNT_CLOSE_LOST);
		bpf_map_delete_elem(&conns, &key);
		return;
	}
	e->sk = key;
	e->c = *c;
	/* delete before submit: once the event is visible the entry is gone, so
	 * user space never counts the same bytes from both the map and the event */
	bpf_map_delete_elem(&conns, &key);
	count(CNT_CLOSE_EVENTS);
	bpf_ringbuf_submit(e, wakeup_flags(&closed, cfg.wakeup_bytes));
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	if (!is_inet_tcp(sk))
		return 0;
	__u64 key = (__u64)sk;
	struct conn_stats *c;

	switch (newstate) {
	case TCP_SYN_SENT:
		/* connect(): process context, so the caller owns the socket */
		c = track(key, DIR_OUTGOING, 0);
		if (c)
			set_owner(c);
		break;
	case TCP_ESTABLISHED: {
		/* softirq context: the current task is unrelated, leave pid alone */
		struct conn_tuple t = {};
		if (!read_tuple(sk, &t)) {
			bpf_map_delete_elem(&conns, &key);
			break;
		}
		c = bpf_map_lookup_elem(&conns, &key);
		if (!c)
			c = track(key, oldstate == TCP_SYN_RECV ? DIR_INCOMING : DIR_OUTGOING, 0);
		if (!c)
			break;
		c->t = t;
		c->flags |= CONN_F_ESTABLISHED;
		read_rtt(sk, c);
		break;
	}
	case TCP_FIN_WAIT1:
	case TCP_LAST_ACK:
		/* close() by the application: process context */
		c = bpf_map_lookup_elem(&conns, &key);
		if (c && !c->pid)
			set_owner(c);
		break;
	case TCP_CLOSE:
		c = bpf_map_lookup_elem(&conns, &key);
		if (!c)
			break;
		if (!(c->flags & (CONN_F_ESTABLISHED | CONN_F_PREEXISTING))) {
			bpf_map_delete_elem(&conns, &key); /* a connect that failed */
			break;
		}
		/* last RTT while the connection was up; counted as closed on destroy */
		read_rtt(sk, c);
		c->flags |= CONN_F_CLOSED;
		break;
	}
	return 0;
}

SEC("raw_tp/tcp_destroy_sock")
int BPF_PROG(on_destroy, struct sock *sk)
{
	__u64 key = (__u64)sk;
	report_closed(key);
	bpf_map_delete_elem(&http_conns, &key);
	return 0;
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	__u64 key = (__u64)sk;
	struct conn_stats *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	/* one event per skb, which may carry several segments (GSO): count
	 * segments, as the kernel's own TcpRetransSegs does */
	const struct tcp_skb_cb *cb = __builtin_preserve_access_index((const void *)&skb->cb);
	__u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);
	__sync_fetch_and_add(&c->retrans, segs ? segs : 1);
	return 0;
}

/* ---- httpflow ----
 * cgroup_skb programs see every TCP segment of every socket on the host with
 * the socket itself, so the owner comes from the connection netflow tracks.
 * A segment whose payload starts like a request line or a status line is an
 * HTTP message start; only its first bytes go to user space. */

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

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

/* How many of `len` bytes to copy, at most `cap` (at most 2047): masked in the
 * register the copying helper gets, so that the verifier sees the bound. 0: none. */
static __always_inline __u64 capture_len(__u64 len, __u64 cap)
{
	if (len > cap)
		len = cap;
	asm volatile("%0 &= 0x7ff" : "+r"(len));
	return len <= cap ? len : 0;
}

/* Sends an event with `len` bytes of data, counting what the ring could not take. */
static __always_inline void http_output(struct http_event *e, __u64 len)
{
	if (output_prefix(&http_events, e, offsetof(struct http_event, data) + len, sizeof(*e), cfg.wakeup_bytes))
		http_count(HTTP_CNT_RINGBUF_FULL);
	else
		http_count(HTTP_CNT_EVENTS);
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

	__u64 key = (__u64)bsk;
	__u32 word = 0;
	int kind = 0;
	if (skb->len >= off + 4 && !bpf_skb_load_bytes(skb, off, &word, 4))
		kind = http_kind(word);
	struct http_state *st = bpf_map_lookup_elem(&http_conns, &key);
	__u64 now = bpf_ktime_get_ns();
	if (!kind) {
		/* more of a request: its end moves on */
		if (st && st->in_request && st->request_egress == egress)
			st->req_end_ts = now;
		return 1;
	}

	__u32 zero = 0;
	struct http_event *e = bpf_map_lookup_elem(&http_scratch, &zero);
	if (!e)
		return 1;
	if (kind == HTTP_REQUEST) {
		if (!st) {
			struct http_state fresh = {.request_egress = egress};
			if (bpf_map_update_elem(&http_conns, &key, &fresh, BPF_NOEXIST) && bpf_map_update_elem(&http_conns, &key, &fresh, BPF_EXIST))
				http_count(HTTP_CNT_STATE_FULL);
			st = bpf_map_lookup_elem(&http_conns, &key);
		}
		if (st) {
			st->request_egress = egress;
			st->in_request = 1;
			st->req_end_ts = now;
		}
		e->req_end_ts = 0;
	} else {
		e->req_end_ts = st ? st->req_end_ts : 0;
		if (st)
			st->in_request = 0;
	}

	/* addresses from the socket: local end first, as netflow reports them */
	e->t.family = family;
	e->t.proto = IPPROTO_TCP;
	e->t.sport = bsk->src_port;
	e->t.dport = bpf_ntohs(bsk->dst_port);
	e->t.netns = 0;
	if (family == AF_INET) {
		__u32 s4 = bsk->src_ip4, d4 = bsk->dst_ip4;
		__builtin_memset(e->t.saddr, 0, 16);
		__builtin_memset(e->t.daddr, 0, 16);
		__builtin_memcpy(e->t.saddr, &s4, 4);
		__builtin_memcpy(e->t.daddr, &d4, 4);
	} else {
		__u32 *sa = (__u32 *)e->t.saddr, *da = (__u32 *)e->t.daddr;
		sa[0] = bsk->src_ip6[0]; sa[1] = bsk->src_ip6[1]; sa[2] = bsk->src_ip6[2]; sa[3] = bsk->src_ip6[3];
		da[0] = bsk->dst_ip6[0]; da[1] = bsk->dst_ip6[1]; da[2] = bsk->dst_ip6[2]; da[3] = bsk->dst_ip6[3];
	}
	if (!tuple_allowed(&e->t))
		return 1;

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
	struct bpf_sock *full = bpf_sk_fullsock(bsk);
	struct http_pending *p = 0;
	if (full)
		p = bpf_sk_storage_get(&http_pending, full, 0, kind == HTTP_REQUEST ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (p && kind == HTTP_REQUEST) {
		if (!p->outstanding) {
			__u64 keep = capture_len(skb->len - off, HTTP_CAPTURE);
			if (keep && !bpf_skb_load_bytes(skb, off, p->data, keep)) {
				p->len = keep;
				p->ts = now;
				p->stored = 1;
				p->outstanding = 1;
				return 1;
			}
		}
		/* pipelined: the kept request goes out first, as a record of its own */
		if (p->stored) {
			p->stored = 0;
			__u64 plen = capture_len(p->len, HTTP_CAPTURE);
			if (plen && !bpf_probe_read_kernel(e->data, plen, p->data)) {
				e->ts = p->ts;
				e->kind = HTTP_REQUEST;
				e->len = plen;
				http_output(e, plen);
			}
		}
		if (p->outstanding < 255)
			p->outstanding++;
	} else if (p && kind == HTTP_RESPONSE) {
		if (p->stored && p->outstanding == 1) {
			p->stored = 0;
			p->outstanding = 0;
			__builtin_memset(e->status, 0, sizeof(e->status));
			__u64 slen = capture_len(skb->len - off, HTTP_STATUS_CAPTURE);
			__u64 plen = capture_len(p->len, HTTP_CAPTURE);
			if (slen && plen && !bpf_skb_load_bytes(skb, off, e->status, slen) && !bpf_probe_read_kernel(e->data, plen, p->data)) {
				e->ts = now;
				e->req_ts = p->ts;
				e->kind = HTTP_EXCHANGE;
				e->len = plen;
				http_output(e, plen);
			}
			return 1;
		}
		if (p->outstanding)
			p->outstanding--;
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
