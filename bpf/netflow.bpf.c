// SPDX-License-Identifier: GPL-2.0
/* netflow: per-connection TCP and UDP statistics aggregated in the kernel.
 *
 * Connections are tracked from their state changes (inet_sock_set_state).
 * Bytes are counted where the socket layer learns what the protocol's
 * sendmsg/recvmsg returned: the exact payload size, in process context, with
 * the owning task. Three sets of programs do that, for the kernels that have
 * their hooks (user space loads one set, see src/plugins/netflow/hooks.ts):
 *   tracepoint: sock_send_length / sock_recv_length (Linux 6.3+)
 *   fentry:     fexit on inet_sendmsg, inet6_sendmsg, inet_recvmsg, inet6_recvmsg
 *   kprobe:     kprobe + kretprobe on those four functions
 * The tracepoints fire in sock_sendmsg/sock_recvmsg with the return value of
 * those same four functions (for AF_INET and AF_INET6 sockets), so every set
 * counts the same bytes.
 * Tracepoint and fentry programs are given typed (BTF) pointers and read the
 * socket in place; kprobe programs are given plain numbers and copy each field
 * with a probed read, a helper call each (see enum sk_access).
 * User space reads the `conns` map once per interval. When a socket is
 * destroyed (not merely closed: the application may still read what arrived
 * before the FIN) its final counters are queued on the `closed` ring buffer
 * and its entry removed, so short connections are never lost between reads.
 * State changes, retransmits and destruction use BTF-typed raw tracepoints
 * (tp_btf), in every set: no tracefs, and the socket read in place. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "addr.h"
#include "counters.h"
#include "in_progress.h"
#include "task.h"
#include "netflow.h"
#include "ringbuf.h"

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

/* Read by httpflow's TLS probes (netflow.h): an array, not a hash, so that
 * every send and receive pays one store. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, THREAD_SOCKS);
	__type(key, __u32);
	__type(value, struct thread_sock);
} thread_socks SEC(".maps");

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

/* UDP flows have no close: user space removes them. It never removes one a
 * program may still add to: it moves control.udp_gen on, so datagrams count
 * in new entries (same tuple, next generation), and removes the older
 * generation only at its next sweep, once no program that read the old
 * number can still be running (udp_in_progress). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by user space before load */
	/* allocated as flows come: most hosts have few */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct udp_key);
	__type(value, struct conn_stats);
} udp_flows SEC(".maps");

/* Peers of datagrams on their way (struct udp_peer); handed to httpflow. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UDP_STASH_SLOTS);
	__type(key, __u32);
	__type(value, struct udp_peer);
} udp_stash SEC(".maps");

static __always_inline struct udp_peer *stash_slot(__u32 tid)
{
	__u32 slot = tid & (UDP_STASH_SLOTS - 1);
	return bpf_map_lookup_elem(&udp_stash, &slot);
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* a hint: the least recently used may go */
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock pointer */
	__type(value, struct udp_last_peer);
} udp_last_peers SEC(".maps");

/* Local addresses of sockets bound to no address, as their datagrams last
 * left from or came to (struct udp_local); written by httpflow's packet
 * programs. A hint per socket, as udp_last_peers. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock pointer */
	__type(value, struct udp_local);
} udp_locals SEC(".maps");

/* UDP byte hooks holding a generation (in_progress.h): user space reads the
 * old generation's flows for the last time and removes them only once none
 * that read it is left. */
IN_PROGRESS_MAP(udp_in_progress);

/* Closes holding the epoch and the closed-series index (sum_closed through
 * the removal from conns): user space reads conns and the closed sums it left
 * only once none that read the old ones is left, so that a connection is
 * never both read live and summed. */
IN_PROGRESS_MAP(close_in_progress);

/* Per-CPU sequence for connection ids. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} id_seq SEC(".maps");

/* Byte counting starts when user space sets `counting`, once every hook is
 * attached: at one instant for sends and receives alike, however long the
 * attaching took (a trampoline or kprobe each). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netflow_control);
} control SEC(".maps");

struct closed_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* a full map sends close events, as before */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct closed_key);
	__type(value, struct closed_sum);
} closed_0 SEC(".maps"), closed_1 SEC(".maps");

/* The two closed-series maps; control.active says which one the programs add
 * to, and user space reads the other, as for httpflow's series. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct closed_map);
} closed_series SEC(".maps") = {
	.values = {&closed_0, &closed_1},
};

static __always_inline void count(__u32 slot)
{
	counter_inc(&counters, slot);
}

/* How a program reads the socket it is given. A typed pointer (tp_btf and
 * fentry programs) is read in place with plain loads; a plain number (kprobe
 * programs) only through probed reads, which cost a helper call each: on the
 * UDP path, most of the program's time. Readers take the mode as a constant,
 * so each program keeps one kind of read. */
enum sk_access {
	SK_PROBED,
	SK_DIRECT,
};

#define SK_READ(mode, sk, field) ((mode) == SK_DIRECT ? (sk)->field : BPF_CORE_READ(sk, field))

static __always_inline __u16 sk_proto(const struct sock *sk, enum sk_access mode)
{
	/* a bitfield before 5.6, a plain field since: both macros handle both */
	return mode == SK_DIRECT ? BPF_CORE_READ_BITFIELD(sk, sk_protocol) : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
}

static __always_inline void read_v6(const struct in6_addr *a, __u8 *to, enum sk_access mode)
{
	__u32 *w = (__u32 *)to;
	if (mode == SK_PROBED) {
		bpf_probe_read_kernel(to, 16, a);
		return;
	}
	w[0] = a->in6_u.u6_addr32[0];
	w[1] = a->in6_u.u6_addr32[1];
	w[2] = a->in6_u.u6_addr32[2];
	w[3] = a->in6_u.u6_addr32[3];
}

static __always_inline bool tuple_allowed(const struct conn_tuple *t)
{
	if (cfg.include_loopback)
		return true;
	return !is_loopback((const __u32 *)t->saddr, t->family) && !is_loopback((const __u32 *)t->daddr, t->family);
}

/* Fill addresses and ports; returns false when the flow must not be tracked. */
static __always_inline bool read_tuple(const struct sock *sk, struct conn_tuple *t, enum sk_access mode)
{
	t->family = SK_READ(mode, sk, __sk_common.skc_family);
	t->proto = sk_proto(sk, mode);
	t->sport = SK_READ(mode, sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(SK_READ(mode, sk, __sk_common.skc_dport));
	t->netns = mode == SK_DIRECT ? sk->__sk_common.skc_net.net->ns.inum : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (t->family == AF_INET) {
		__u32 s = SK_READ(mode, sk, __sk_common.skc_rcv_saddr);
		__u32 d = SK_READ(mode, sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->saddr, &s, 4);
		__builtin_memcpy(t->daddr, &d, 4);
	} else {
		read_v6(__builtin_preserve_access_index(&sk->__sk_common.skc_v6_rcv_saddr), t->saddr, mode);
		read_v6(__builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr), t->daddr, mode);
	}
	return tuple_allowed(t);
}

/* Read on a connection's first and last state changes and every SAMPLE_EVERY
 * byte events. */
static __always_inline void read_rtt(const struct sock *sk, struct conn_stats *c, enum sk_access mode)
{
	if (mode == SK_DIRECT) {
		/* tcp_sock's fields lie beyond struct sock, the type the verifier
		 * knows: the helper's checked cast gives a pointer to read in place */
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);
		if (tp) {
			c->srtt_us = tp->srtt_us >> 3;
			c->mdev_us = tp->mdev_us >> 2;
		}
		return;
	}
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	c->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	c->mdev_us = BPF_CORE_READ(tp, mdev_us) >> 2;
}

static __always_inline void set_owner(struct conn_stats *c)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (c->pid != tgid) {
		c->pid = tgid;
		process_comm(&c->comm);
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
	__u32 zero = 0;
	struct netflow_control *ctl = bpf_map_lookup_elem(&control, &zero);
	if (ctl)
		fresh.epoch = ctl->epoch;
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
	__u16 family = sk->__sk_common.skc_family;
	return (family == AF_INET || family == AF_INET6) && sk_proto(sk, SK_DIRECT) == IPPROTO_TCP;
}

/* Owner and RTT are sampled, not read on every event: the probed reads cost
 * more than the rest of the hook. Always on the first event, then every
 * SAMPLE_EVERY events, and again when the connection closes. */
static __always_inline void account(struct conn_stats *c, const struct sock *sk, int bytes, bool sent, enum sk_access mode)
{
	if (sent)
		__sync_fetch_and_add(&c->bytes_sent, bytes);
	else
		__sync_fetch_and_add(&c->bytes_recv, bytes);
	if (!c->pid || ++c->samples >= SAMPLE_EVERY) {
		c->samples = 0;
		set_owner(c);
		if (c->t.proto == IPPROTO_TCP && !(c->flags & CONN_F_CLOSED))
			read_rtt(sk, c, mode);
	}
}

static __always_inline bool same_addr(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* The peer this thread stashed for this datagram (unconnected socket), into
 * t; the slot is emptied. False when the slot holds another socket's or
 * another thread's (a collision: the datagram counts as udp_no_peer). */
static __always_inline bool take_peer(__u64 skp, struct conn_tuple *t)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct udp_peer *p = stash_slot(tid);
	if (!p || p->sk != skp || p->tid != tid)
		return false;
	__u8 addr[16];
	__builtin_memcpy(addr, p->addr, 16);
	__u16 port = p->port, family = p->family;
	asm volatile("" ::: "memory");
	/* a colliding thread that rewrote the slot meanwhile wrote its tid first */
	if (*(volatile __u32 *)&p->tid != tid)
		return false;
	p->sk = 0;
	t->dport = port;
	if (family == AF_INET && t->family == AF_INET6) {
		/* an IPv4 peer of a dual-stack socket (its sendto() gave ::ffff:a.b.c.d,
		 * and the kernel sent it as IPv4): in the socket's family, as its
		 * receives give it */
		v4_mapped((__u32 *)t->daddr, *(__u32 *)addr);
		return true;
	}
	__builtin_memcpy(t->daddr, addr, 16);
	if (family == AF_INET6 && t->family == AF_INET)
		t->family = AF_INET6;
	return true;
}

static __always_inline void on_udp_bytes(struct sock *sk, __u64 skp, int bytes, bool sent, __u16 gen, enum sk_access mode)
{
	struct udp_key k = {.sk = skp, .gen = gen};
	struct conn_tuple t = {};

	read_tuple(sk, &t, mode);
	if (take_peer(skp, &t)) {
		if (sent) {
			struct udp_last_peer *lp = bpf_map_lookup_elem(&udp_last_peers, &skp);
			if (!lp) {
				struct udp_last_peer np = {.port = t.dport, .family = t.family, .local_port = t.sport};
				__builtin_memcpy(np.addr, t.daddr, 16);
				bpf_map_update_elem(&udp_last_peers, &skp, &np, BPF_ANY);
			} else if (lp->port != t.dport || lp->local_port != t.sport || !same_addr(lp->addr, t.daddr)) {
				/* in place: a server answering many clients changes it at
				 * almost every send, and an update makes a new element. A
				 * receive reading it meanwhile may see half of each peer:
				 * the hint is a guess for such a socket anyway */
				__builtin_memcpy(lp->addr, t.daddr, 16);
				lp->port = t.dport;
				lp->family = t.family;
				lp->local_port = t.sport;
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
	/* a socket bound to no address: the local address its datagrams last used */
	bool local_unset = addr_unset(t.saddr, t.family);
	if (local_unset) {
		struct udp_local *l = bpf_map_lookup_elem(&udp_locals, &skp);
		if (l) {
			__builtin_memcpy(t.saddr, l->addr, 16);
			local_unset = false;
		}
	}
	if (!tuple_allowed(&t))
		return;
	__builtin_memcpy(k.peer, t.daddr, 16);
	k.peer_port = t.dport;
	k.local_port = t.sport;

	struct conn_stats *c = bpf_map_lookup_elem(&udp_flows, &k);
	if (!c) {
		struct conn_stats fresh = {};
		fresh.t = t;
		fresh.id = new_id();
		/* the side that received first is the server; a flow going on in a
		 * new generation keeps the direction its first datagram gave it */
		k.gen = gen - 1;
		struct conn_stats *before = bpf_map_lookup_elem(&udp_flows, &k);
		k.gen = gen;
		fresh.direction = before ? before->direction : sent ? DIR_OUTGOING : DIR_INCOMING;
		long err = bpf_map_update_elem(&udp_flows, &k, &fresh, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST */) {
			count(CNT_UDP_MAP_FULL);
			return;
		}
		if (!err)
			count(CNT_UDP_FLOWS_MADE);
		c = bpf_map_lookup_elem(&udp_flows, &k);
		if (!c)
			return;
	}
	/* a flow made before its socket's local address was known. The 16 bytes
	 * are not written at once: a read of the table meanwhile may see half of
	 * them, once in the flow's life */
	if (!local_unset && addr_unset(c->t.saddr, c->t.family))
		__builtin_memcpy(c->t.saddr, t.saddr, 16);
	account(c, sk, bytes, sent, mode);
}

/* Notes the socket the current thread moved bytes on (for TLS, netflow.h). */
static __always_inline void note_thread_sock(struct sock *sk)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 slot = tid & (THREAD_SOCKS - 1);
	struct thread_sock *ts = bpf_map_lookup_elem(&thread_socks, &slot);
	if (ts) {
		ts->tid = tid;
		ts->sk = (__u64)sk;
	}
}

static __always_inline void on_bytes(struct sock *sk, int bytes, bool sent, enum sk_access mode)
{
	__u32 zero = 0;
	note_thread_sock(sk);
	struct netflow_control *ctl = bpf_map_lookup_elem(&control, &zero);
	if (!ctl || !ctl->counting)
		return;
	__u64 key = (__u64)sk;
	/* UDP sockets are never in conns. Read in place, the protocol costs less
	 * than the lookup it spares a datagram; probed, more than it saves. */
	bool udp_first = mode == SK_DIRECT && sk_proto(sk, mode) == IPPROTO_UDP;
	if (!udp_first) {
		struct conn_stats *c = bpf_map_lookup_elem(&conns, &key);
		if (c) {
			account(c, sk, bytes, sent, mode);
			return;
		}
	}
	/* not tracked: UDP, another family, filtered, or open before we started */
	__u16 family = SK_READ(mode, sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	__u16 proto = sk_proto(sk, mode);
	if (proto == IPPROTO_UDP) {
		__u64 *busy = in_progress_enter(&udp_in_progress);
		if (!busy)
			return;
		on_udp_bytes(sk, key, bytes, sent, *(volatile __u32 *)&ctl->udp_gen, mode);
		in_progress_leave(busy);
		return;
	}
	if (proto != IPPROTO_TCP)
		return;
	int state = SK_READ(mode, sk, __sk_common.skc_state);
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT)
		return;
	struct conn_tuple t = {};
	if (!read_tuple(sk, &t, mode))
		return;
	struct conn_stats *c = track(key, DIR_UNKNOWN, CONN_F_PREEXISTING);
	if (!c)
		return;
	c->t = t;
	account(c, sk, bytes, sent, mode);
}

/* cgroup sock_addr hooks: called for sends with an address and receives that
 * ask for one, in the syscall, just before the byte tracepoint. The send
 * hooks stay attached only while httpflow's egress program does not stash
 * the peer instead: they lock the socket on every send. */
static __always_inline void stash_peer(struct bpf_sock_addr *ctx, bool v6)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct udp_peer *p = stash_slot(tid);
	if (!p)
		return;
	__u32 a[4] = {};
	if (v6) {
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
	} else {
		a[0] = ctx->user_ip4;
	}
	udp_peer_put(p, tid, (__u64)ctx->sk, a, bpf_ntohs((__u16)ctx->user_port), v6 ? AF_INET6 : AF_INET);
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

/* ---- bytes, tracepoint set (Linux 6.3+) ---- */

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0)
		on_bytes(sk, ret, true, SK_DIRECT);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	/* peeked bytes are read again later: count them once */
	if (ret > 0 && !(flags & MSG_PEEK))
		on_bytes(sk, ret, false, SK_DIRECT);
	return 0;
}

/* ---- bytes, fentry set: the functions whose results those tracepoints report ---- */

static __always_inline void on_socket_bytes(struct socket *sock, int ret, bool sent, enum sk_access mode)
{
	if (ret > 0)
		on_bytes(SK_READ(mode, sock, sk), ret, sent, mode);
}

SEC("fexit/inet_sendmsg")
int BPF_PROG(fexit_inet_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	on_socket_bytes(sock, ret, true, SK_DIRECT);
	return 0;
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(fexit_inet6_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	on_socket_bytes(sock, ret, true, SK_DIRECT);
	return 0;
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(fexit_inet_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	if (!(flags & MSG_PEEK))
		on_socket_bytes(sock, ret, false, SK_DIRECT);
	return 0;
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(fexit_inet6_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	if (!(flags & MSG_PEEK))
		on_socket_bytes(sock, ret, false, SK_DIRECT);
	return 0;
}

/* ---- bytes, kprobe set: the same functions, arguments kept from entry to return ---- */

struct call_args {
	__u64 sock;
	__u32 flags;
	__u32 _pad;
};

/* By thread: a thread is in at most one of these calls at a time. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* a thread that exits mid-call leaves its entry to age out */
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct call_args);
} call_args SEC(".maps");

static __always_inline void call_enter(struct socket *sock, __u32 flags)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct call_args a = {.sock = (__u64)sock, .flags = flags};
	/* an entry still here is a call whose return was not reported: the
	 * kernel ran out of kretprobe instances (too many calls in flight) */
	if (bpf_map_lookup_elem(&call_args, &tid))
		count(CNT_KRETPROBE_MISSED);
	bpf_map_update_elem(&call_args, &tid, &a, BPF_ANY);
}

static __always_inline void call_return(int ret, bool sent)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct call_args *a = bpf_map_lookup_elem(&call_args, &tid);
	if (!a)
		return;
	struct socket *sock = (struct socket *)a->sock;
	bool peek = a->flags & MSG_PEEK;
	bpf_map_delete_elem(&call_args, &tid);
	if (sent || !peek)
		on_socket_bytes(sock, ret, sent, SK_PROBED);
}

SEC("kprobe")
int BPF_KPROBE(kprobe_sendmsg, struct socket *sock)
{
	call_enter(sock, 0);
	return 0;
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_sendmsg, int ret)
{
	call_return(ret, true);
	return 0;
}

SEC("kprobe")
int BPF_KPROBE(kprobe_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags)
{
	call_enter(sock, flags);
	return 0;
}

SEC("kretprobe")
int BPF_KRETPROBE(kretprobe_recvmsg, int ret)
{
	call_return(ret, false);
	return 0;
}

static __always_inline bool ephemeral(__u16 port)
{
	return port >= 32768 && port <= 60999;
}

/* A connection user space never saw (made since its last read of `conns`,
 * which it skips when made after the read began): summed into the active
 * closed-series map. False when there is no room: a close event goes instead. */
static __always_inline bool sum_closed(struct conn_stats *c)
{
	__u32 zero = 0;
	struct netflow_control *ctl = bpf_map_lookup_elem(&control, &zero);
	if (!ctl || c->epoch != ctl->epoch || !(c->flags & CONN_F_ESTABLISHED) || c->direction == DIR_UNKNOWN)
		return false;
	__u32 active = ctl->active & 1;
	void *sums = bpf_map_lookup_elem(&closed_series, &active);
	if (!sums)
		return false;
	struct closed_key k = {};
	__builtin_memcpy(k.saddr, c->t.saddr, 16);
	__builtin_memcpy(k.daddr, c->t.daddr, 16);
	bool out = c->direction == DIR_OUTGOING;
	/* the client's ephemeral port: ours when outgoing, the peer's when incoming */
	k.sport = out && ephemeral(c->t.sport) ? 0 : c->t.sport;
	k.dport = !out && ephemeral(c->t.dport) ? 0 : c->t.dport;
	k.family = c->t.family;
	k.proto = c->t.proto;
	k.direction = c->direction;
	k.pid = c->pid;
	__builtin_memcpy(k.comm, c->comm, sizeof(k.comm));
	k.cgroup_id = c->cgroup_id;
	struct closed_sum *v = bpf_map_lookup_elem(sums, &k);
	if (!v) {
		struct closed_sum fresh = {};
		bpf_map_update_elem(sums, &k, &fresh, BPF_NOEXIST);
		v = bpf_map_lookup_elem(sums, &k);
		if (!v)
			return false;
	}
	__sync_fetch_and_add(&v->bytes_sent, c->bytes_sent);
	__sync_fetch_and_add(&v->bytes_recv, c->bytes_recv);
	__sync_fetch_and_add(&v->retrans, c->retrans);
	__sync_fetch_and_add(&v->conns, 1);
	__sync_fetch_and_add(&v->srtt_us, c->srtt_us);
	__sync_fetch_and_add(&v->mdev_us, c->mdev_us);
	return true;
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
	/* from reading the epoch and index to the entry's removal (close_in_progress) */
	__u64 *summing = in_progress_enter(&close_in_progress);
	bool summed = sum_closed(c);
	if (summed)
		bpf_map_delete_elem(&conns, &key);
	in_progress_leave(summing);
	if (summed) {
		count(CNT_CLOSED_SUMMED);
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

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	struct conn_stats *c;

	/* By the new state first: half of a connection's changes are none of
	 * these, and only the two that start tracking read the socket to see
	 * whether it is TCP (a socket in conns is). */
	switch (newstate) {
	case TCP_SYN_SENT:
		/* connect(): process context, so the caller owns the socket */
		if (!is_inet_tcp(sk))
			break;
		c = track(key, DIR_OUTGOING, 0);
		if (c)
			set_owner(c);
		break;
	case TCP_ESTABLISHED: {
		/* softirq context: the current task is unrelated, leave pid alone */
		if (!is_inet_tcp(sk))
			break;
		struct conn_tuple t = {};
		if (!read_tuple(sk, &t, SK_DIRECT)) {
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
		read_rtt(sk, c, SK_DIRECT);
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
		read_rtt(sk, c, SK_DIRECT);
		c->flags |= CONN_F_CLOSED;
		break;
	}
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(on_destroy, struct sock *sk)
{
	report_closed((__u64)sk);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
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

char LICENSE[] SEC("license") = "GPL";
