/* Structures shared by netflow.bpf.c and the TypeScript decoder
 * (src/plugins/netflow/decode.ts). Every field is explicitly sized and padded:
 * the layout is checked against this object's BTF by test/unit/bpf-layout.test.ts. */
#ifndef DATAKIT_EBPF_NETFLOW_H
#define DATAKIT_EBPF_NETFLOW_H

enum conn_direction {
	DIR_UNKNOWN = 0,  /* first seen already open: user space decides */
	DIR_OUTGOING = 1, /* we connected */
	DIR_INCOMING = 2, /* we accepted */
};

enum conn_flags {
	CONN_F_ESTABLISHED = 1, /* became established while we watched */
	CONN_F_PREEXISTING = 2, /* was already open when first seen */
	CONN_F_CLOSED = 4,      /* reached TCP_CLOSE; reported when the socket is destroyed */
};

/* Loss and activity counters, one slot each in the per-CPU `counters` map. */
enum netflow_counter {
	CNT_CONN_MAP_FULL = 0,  /* a new connection could not be tracked */
	CNT_RINGBUF_FULL = 1,   /* a close event fell back to the `orphans` map */
	CNT_CONNS_TRACKED = 2,  /* connections that got a map entry */
	CNT_CLOSE_EVENTS = 3,   /* close events queued */
	CNT_CLOSE_LOST = 4,     /* a closed connection's last counters were lost */
	CNT_UDP_MAP_FULL = 5,   /* a new UDP flow could not be tracked */
	CNT_UDP_NO_PEER = 6,    /* UDP bytes whose peer address was unknown */
	CNT_UDP_LAST_PEER = 7,  /* UDP receives without an address, given the socket's last peer */
	CNT_KRETPROBE_MISSED = 8, /* kprobe path: a send or receive whose return the kernel did not report */
	CNT_CLOSED_SUMMED = 9,  /* connections made and closed between two reads, summed in the kernel */
	CNT_UDP_FLOWS_MADE = 10, /* UDP flows that got a map entry (user space removes them) */
	CNT_MAX = 11,
};

struct conn_tuple {
	__u8 saddr[16];  /* local address: IPv4 in the first 4 bytes */
	__u8 daddr[16];  /* remote address */
	__u16 sport;     /* local port, host order */
	__u16 dport;     /* remote port, host order */
	__u16 family;    /* AF_INET or AF_INET6 */
	__u8 proto;      /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad0;
	__u32 netns;     /* network namespace inode */
	__u32 _pad1;
};

struct conn_stats {
	struct conn_tuple t;
	__u64 id;          /* unique per tracked connection, never reused */
	__u64 bytes_sent;  /* payload bytes taken from the application */
	__u64 bytes_recv;  /* payload bytes handed to the application */
	__u32 pid;         /* tgid of the last process that used the socket */
	__u32 retrans;     /* retransmitted segments */
	__u32 srtt_us;     /* smoothed RTT, µs */
	__u32 mdev_us;     /* RTT mean deviation, µs */
	__u8 direction;    /* enum conn_direction */
	__u8 flags;        /* enum conn_flags */
	__u8 samples;      /* byte events since owner and RTT were last sampled */
	__u8 _pad;
	__u32 epoch;       /* the map read it was made after (netflow_control.epoch) */
	char comm[16];     /* command name of `pid` */
	__u64 cgroup_id;   /* cgroup v2 of `pid` when it took over: names a pod's container */
};

/* A UDP flow: one socket and one peer (unconnected sockets talk to many). */
struct udp_key {
	__u64 sk;
	__u8 peer[16];
	__u16 peer_port;
	__u16 local_port; /* socket memory is reused: a later socket at the same address is another flow */
	__u16 gen;        /* netflow_control.udp_gen when made: user space retires whole generations */
	__u16 _pad;
};

/* The peer of the datagram a thread is sending or receiving (unconnected
 * sockets have no peer in struct sock), left for the byte hook that follows in
 * the same syscall: by httpflow's egress packet program for sends (netflow's
 * cgroup sendmsg hooks when that program does not run), by the cgroup recvmsg
 * hooks for receives. All run in that thread's context, so the slot is the
 * thread's, not the CPU's: a thread preempted or moved to another CPU in
 * between still finds its peer. */
struct udp_peer {
	__u64 sk;
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u32 tid; /* the slot is shared by threads with the same low bits */
};

#define UDP_STASH_SLOTS 4096 /* a power of two: the slot is the thread id's low bits */

/* Fills a thread's stash slot. The thread id goes first: take_peer reads it
 * last, so a slot another thread rewrites meanwhile is not taken as ours. */
static __always_inline void udp_peer_put(struct udp_peer *p, __u32 tid, __u64 sk, const __u32 addr[4], __u16 port, __u16 family)
{
	p->tid = tid;
	asm volatile("" ::: "memory");
	p->sk = sk;
	__builtin_memcpy(p->addr, addr, 16);
	p->port = port;
	p->family = family;
}

/* The peer an unconnected UDP socket last sent to, checked by its local port
 * (socket memory is reused): a receive that asks for no address most likely
 * comes from there, as for a client talking to one server. */
struct udp_last_peer {
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u16 local_port;
	__u16 _pad;
};

/* The local address the datagrams of a socket bound to no address (0.0.0.0,
 * ::) last left from (the source routing chose) or came to: httpflow's packet
 * programs note it by socket, in the socket's family (an IPv4 address of a
 * dual-stack socket as ::ffff:a.b.c.d). The byte hooks see only the wildcard
 * in the socket. */
struct udp_local {
	__u8 addr[16];
};

static __always_inline bool addr_unset(const __u8 *a, __u16 family)
{
	const __u32 *w = (const __u32 *)a;
	return family == AF_INET ? !w[0] : !(w[0] | w[1] | w[2] | w[3]);
}

struct conn_close_event {
	__u64 sk;
	struct conn_stats c;
};

/* Written by user space while the programs run. */
struct netflow_control {
	__u32 counting; /* byte hooks count: set once all are attached */
	__u32 epoch;    /* moved on just before each read of `conns` */
	__u32 active;   /* which closed-series map the programs add to: 0 or 1 */
	__u32 udp_gen;  /* the UDP generation new datagrams count in (low 16 bits) */
};

/* Connections made and closed between two reads of `conns` (user space never
 * saw them) are summed here, by what their netflow point would say, instead
 * of each sending a close event. */
struct closed_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;  /* 0: an ephemeral port, collapsed */
	__u16 dport;
	__u16 family;
	__u8 proto;
	__u8 direction;
	__u32 pid;
	char comm[16];
	__u64 cgroup_id;
};

struct closed_sum {
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u64 retrans;
	__u64 conns;   /* established and closed */
	__u64 srtt_us; /* sums over the connections */
	__u64 mdev_us;
};

/* The TCP socket a thread last moved bytes on, by thread id's low bits
 * (THREAD_SOCKS slots). httpflow's TLS probes clear a thread's slot when a
 * TLS library call starts and read it when it returns: a socket written
 * there meanwhile is the one the library read or wrote for that call. */
#define THREAD_SOCKS 4096

struct thread_sock {
	__u32 tid;
	__u32 _pad;
	__u64 sk;
};

/* Read-only configuration, written by user space before load. */
struct netflow_config {
	__u32 include_loopback;
	__u32 wakeup_bytes; /* wake user space once this much is queued */
};

#endif
