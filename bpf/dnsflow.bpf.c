// SPDX-License-Identifier: GPL-2.0
/* dnsflow: DNS queries leaving, and responses entering, client sockets.
 *
 * cgroup_skb programs on the cgroup v2 root see the packets of every socket
 * on the host, whatever its network namespace, with the socket's own view
 * (a query is seen once, at the client, even when the server is local too).
 * Only the client side is taken: egress to port 53, ingress from port 53.
 * Everything else returns at the port check.
 *
 * By default queries are matched with their answers in the kernel: a query
 * waits in dns_pending (by both ends, transport and id) with a hash of its
 * name; its answer adds it to a series of the interval (ends, the client's
 * process, name, type, rcode: count, response time sum, maximum, histogram).
 * User space reads the series each interval (the two maps take turns, as in
 * httpflow) and finds timeouts by walking dns_pending. A name's text goes to
 * user space once, the first time its hash is seen; an answer to learn
 * addresses from (for netflow's dst_domain), at most once a second per name.
 * With cfg.per_query (--l7-per-request), every query and response goes to
 * user space instead.
 * When httpflow runs too, its programs call this object's for the packets
 * that may be DNS, and this object's own programs are detached (see
 * dns_handed_over). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "addr.h"
#include "capture.h"
#include "counters.h"
#include "in_progress.h"
#include "dnsflow.h"
#include "nest.h"
#include "netflow.h"
#include "ringbuf.h"

const volatile struct dnsflow_config cfg = {
	.include_loopback = 0,
	.wakeup_bytes = 64 * 1024,
	.per_query = 0,
	.max_series = 8192,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} dns_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Events are built here, then copied out with only their used length. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NEST_MAX);
	__type(key, __u32);
	__type(value, struct dns_event);
} dns_scratch SEC(".maps");

static __always_inline void count(__u32 slot)
{
	counter_inc(&counters, slot);
}

/* ---- aggregated mode ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dns_query_key);
	__type(value, struct dns_query);
} dns_pending SEC(".maps");

struct dns_series_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 9216); /* set by user space: series plus overflow series */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dns_series_key);
	__type(value, struct latency_series);
} dns_series_0 SEC(".maps"), dns_series_1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct dns_series_map);
} dns_series SEC(".maps") = {
	.values = {&dns_series_0, &dns_series_1},
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct series_control);
} dns_control SEC(".maps");

/* Adds to the series maps running now, per CPU (in_progress.h). */
IN_PROGRESS_MAP(dns_series_in_progress);

/* A zeroed series, to insert new ones from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct latency_series);
} dns_series_zero SEC(".maps");

/* Name hashes whose text user space has (it deletes those it forgets). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} dns_names SEC(".maps");

/* When each name and type last had an answer sent to learn addresses from. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} dns_learnt SEC(".maps");

/* netflow's tables, for the client's process (replaced by netflow's own maps
 * before load; without netflow they stay empty and the pid unknown). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct conn_stats);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct udp_key);
	__type(value, struct conn_stats);
} udp_flows SEC(".maps");

/* netflow's control: the UDP generation its flows are keyed by */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netflow_control);
} netflow_control SEC(".maps");

#define LEARN_EVERY_NS 1000000000ULL
#define TYPE_A 1
#define TYPE_AAAA 28

/* Hashes the first question's name, which starts at `at` in this CPU's
 * scratch message (wire format, ASCII letters lowercased), into the event's
 * `name`; returns the question's type, or 0 when there is no whole question.
 * One data-dependent branch in the loop, its exit: the verifier walks it once.
 * A global function: verified once, on its own. */
__noinline int parse_question(__u32 at)
{
	struct dns_event *e = scratch(&dns_scratch);
	if (!e)
		return 0;
	__u64 base = at & 0x1f; /* 12, or 14 after TCP's length */
	__u8 *d = e->payload;
	/* bytes past the capture are stale: a name whose end or type lies there
	 * is refused below, whatever they held */
	__u64 n = e->len;
	__u64 h = FNV_OFFSET, next = 0, end = 0, found = 0, i;
	for (i = 0; i < 256; i++) {
		__u64 c = d[base + i];
		__u64 label = eq(i, next); /* a length byte */
		if (label & eq(c, 0)) {
			end = i;
			found = 1;
			break;
		}
		next = label * (i + c + 1) + (label ^ 1) * next;
		__u64 upper = lt(c, 'Z' + 1) & (lt(c, 'A') ^ 1) & (label ^ 1);
		h = (h ^ (c + (upper << 5))) * FNV_PRIME;
	}
	if (!found)
		return 0;
	__u64 q = base + end + 1;
	asm volatile("%0 &= 511" : "+r"(q));
	if (q + 2 > n || q > DNS_CAPTURE - 2)
		return 0; /* the type is not within the capture */
	__u32 qtype = (__u32)d[q] << 8 | d[q + 1];
	e->name = h;
	return qtype;
}

static __always_inline bool ephemeral(__u16 port)
{
	return port >= 32768 && port <= 60999;
}

/* Sends the scratch message as `kind` (a name to learn, an answer to learn from). */
static __always_inline void send_message(struct dns_event *e, __u8 kind)
{
	e->kind = kind;
	__u64 len = capture_len(e->len, DNS_CAPTURE);
	if (output_prefix(&dns_events, e, offsetof(struct dns_event, payload) + len, sizeof(*e), ~0ULL))
		count(DNS_CNT_RINGBUF_FULL);
	else
		count(DNS_CNT_EVENTS);
}

/* The client's process, from netflow's tables: by socket for TCP, by socket
 * and server for UDP (netflow has seen the query go out by the time the
 * answer comes in). */
static __always_inline void client_process(struct __sk_buff *skb, struct dns_series_key *k)
{
	struct bpf_sock *bsk = skb->sk;
	if (!bsk) {
		count(DNS_CNT_NO_PROCESS);
		return;
	}
	struct conn_stats *c;
	if (k->proto == IPPROTO_TCP) {
		__u64 key = (__u64)bsk;
		c = bpf_map_lookup_elem(&conns, &key);
	} else {
		__u32 zero = 0;
		struct netflow_control *nf = bpf_map_lookup_elem(&netflow_control, &zero);
		__u16 gen = nf ? nf->udp_gen : 0;
		struct udp_key key = {.sk = (__u64)bsk, .peer_port = k->server_port, .local_port = k->client_port, .gen = gen};
		__builtin_memcpy(key.peer, k->server, 16);
		c = bpf_map_lookup_elem(&udp_flows, &key);
		/* the query went out before user space moved the generation on */
		if (!c) {
			key.gen = gen - 1;
			c = bpf_map_lookup_elem(&udp_flows, &key);
		}
	}
	if (c) {
		k->pid = c->pid;
		__builtin_memcpy(k->comm, c->comm, sizeof(k->comm));
	} else {
		count(DNS_CNT_NO_PROCESS);
	}
}

/* Adds one answered query to its series, or to its endpoint pair's overflow
 * series for its rcode once the interval's series are all made. */
static __always_inline void add_answer(struct dns_series_key *k, __u64 latency)
{
	enum series_outcome added = add_to_series(&dns_control, &dns_series, &dns_series_zero, &dns_series_in_progress, k, cfg.max_series, latency);
	if (added == SERIES_FULL) {
		k->name = 0;
		k->qtype = 0;
		count(DNS_CNT_OVERFLOW);
		added = add_to_series(&dns_control, &dns_series, &dns_series_zero, &dns_series_in_progress, k, ~0ULL, latency);
	}
	count(added == SERIES_ADDED ? DNS_CNT_ANSWERED : DNS_CNT_SERIES_LOST);
}

/* Aggregated mode: the message in this CPU's scratch `e`, sent or received by
 * a client socket. */
static __always_inline void dns_aggregate(struct __sk_buff *skb, struct dns_event *e, bool egress)
{
	__u32 base = e->proto == IPPROTO_TCP ? 2 : 0;
	if (e->len < base + 12) {
		count(DNS_CNT_PARSE_ERRORS);
		return;
	}
	__u8 *m = e->payload + base;
	__u16 id = (__u16)m[0] << 8 | m[1];
	__u8 qr = m[2] >> 7, rcode = m[3] & 0xf;
	__u16 answers = (__u16)m[6] << 8 | m[7];
	if (qr == egress)
		return; /* a query coming in or an answer going out: this side serves */

	struct dns_query_key qk = {.family = e->family, .proto = e->proto, .id = id};
	if (egress) {
		__builtin_memcpy(qk.client, e->saddr, 16);
		__builtin_memcpy(qk.server, e->daddr, 16);
		qk.client_port = e->sport;
		qk.server_port = e->dport;
	} else {
		__builtin_memcpy(qk.client, e->daddr, 16);
		__builtin_memcpy(qk.server, e->saddr, 16);
		qk.client_port = e->dport;
		qk.server_port = e->sport;
	}
	__u64 now = e->ts;

	if (egress) {
		int qtype = parse_question(base + 12);
		if (qtype <= 0) {
			count(DNS_CNT_PARSE_ERRORS);
			return;
		}
		struct dns_query q = {.ts = now, .name = e->name, .qtype = qtype};
		long err = bpf_map_update_elem(&dns_pending, &qk, &q, BPF_NOEXIST);
		if (err == -17 /* EEXIST */) {
			count(DNS_CNT_DUPLICATES); /* a retry: the first send counts */
			return;
		}
		if (err) {
			count(DNS_CNT_PENDING_FULL);
			return;
		}
		count(DNS_CNT_QUERIES);
		if (!bpf_map_lookup_elem(&dns_names, &e->name)) {
			__u8 one = 1;
			bpf_map_update_elem(&dns_names, &e->name, &one, BPF_ANY);
			send_message(e, DNS_KIND_NAME);
		}
		return;
	}

	struct dns_query *q = bpf_map_lookup_elem(&dns_pending, &qk);
	if (!q) {
		count(DNS_CNT_UNMATCHED);
		return;
	}
	struct dns_series_key k = {.family = qk.family, .proto = qk.proto, .rcode = rcode, .qtype = q->qtype, .name = q->name};
	__u64 latency = now > q->ts ? now - q->ts : 0;
	bpf_map_delete_elem(&dns_pending, &qk);
	__builtin_memcpy(k.client, qk.client, 16);
	__builtin_memcpy(k.server, qk.server, 16);
	k.client_port = ephemeral(qk.client_port) ? 0 : qk.client_port;
	k.server_port = qk.server_port;
	client_process(skb, &k);
	add_answer(&k, latency);

	/* addresses for netflow's dst_domain: an answer per name and type at most once a second */
	if (rcode || !answers || (k.qtype != TYPE_A && k.qtype != TYPE_AAAA))
		return;
	__u64 lk = k.name ^ ((__u64)k.qtype << 48);
	__u64 *last = bpf_map_lookup_elem(&dns_learnt, &lk);
	if (last && now - *last < LEARN_EVERY_NS)
		return;
	bpf_map_update_elem(&dns_learnt, &lk, &now, BPF_ANY);
	e->name = k.name;
	send_message(e, DNS_KIND_ANSWER);
}

/* A DNS message's payload, copied into this run's scratch event: summed
 * in the kernel, or sent to user space per query. */
static __always_inline void dns_payload(struct __sk_buff *skb, struct dns_event *e, bool egress, __u32 off, __u32 payload_len,
					const __u32 *saddr, const __u32 *daddr, __u16 sport, __u16 dport, __u16 family, __u8 proto)
{
	__u64 len = capture_len(payload_len, DNS_CAPTURE);
	if (!len || bpf_skb_load_bytes(skb, off, e->payload, len))
		return;
	e->ts = bpf_ktime_get_ns();
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	e->sport = sport;
	e->dport = dport;
	e->family = family;
	e->proto = proto;
	e->is_response = !egress;
	e->len = len;
	e->kind = DNS_KIND_PACKET;
	e->_pad0 = 0;
	e->payload_len = payload_len;
	e->name = 0;
	if (!cfg.per_query) {
		dns_aggregate(skb, e, egress);
		return;
	}
	/* a query is some 50 bytes: send what was captured, not the whole record */
	if (output_prefix(&dns_events, e, offsetof(struct dns_event, payload) + len, sizeof(*e), cfg.wakeup_bytes))
		count(DNS_CNT_RINGBUF_FULL);
	else
		count(DNS_CNT_EVENTS);
}

static __always_inline int handle(struct __sk_buff *skb, bool egress)
{
	/* A connected socket whose peer is not port 53 carries no DNS a client
	 * sends or receives: leave before loading any header (this runs for every
	 * packet of every socket, HTTP's included). An unconnected socket has no
	 * peer port and goes on. */
	__u16 peer = skb_peer_port(skb);
	if (peer && peer != bpf_htons(DNS_PORT))
		return 1;
	/* A socket bound to port 53 serves: queries come in to it and answers
	 * leave it, neither a client's (a client that sends its own queries from
	 * port 53 is not seen either). A server's packets leave here too. */
	if (skb->local_port == DNS_PORT)
		return 1;

	__u32 saddr[4] = {}, daddr[4] = {}; /* words: is_loopback reads them so */
	__u16 family;
	__u8 proto;
	__u32 l4;
	/* headers are read in place when in the skb's linear part, as they
	 * almost always are, else copied (a helper call each) */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip, *in_place = data;
		if ((void *)(in_place + 1) <= data_end)
			ip = *in_place;
		else if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 1;
		proto = ip.protocol;
		if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
			return 1;
		if (ip.frag_off & bpf_htons(0x3fff)) {
			count(DNS_CNT_FRAGMENTS); /* later fragments carry no ports */
			return 1;
		}
		family = AF_INET;
		l4 = ip.ihl * 4;
		__builtin_memcpy(saddr, &ip.saddr, 4);
		__builtin_memcpy(daddr, &ip.daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6, *in_place = data;
		if ((void *)(in_place + 1) <= data_end)
			ip6 = *in_place;
		else if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		proto = ip6.nexthdr; /* extension headers: not DNS as sent by resolvers */
		if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
			return 1;
		family = AF_INET6;
		l4 = sizeof(ip6);
		__builtin_memcpy(saddr, &ip6.saddr, 16);
		__builtin_memcpy(daddr, &ip6.daddr, 16);
	} else {
		return 1;
	}

	__u16 ports[2];
	__u32 at = l4 & 63;
	__u16 *ports_in_place = data + at;
	if ((void *)(ports_in_place + 2) <= data_end) {
		ports[0] = ports_in_place[0];
		ports[1] = ports_in_place[1];
	} else if (bpf_skb_load_bytes(skb, at, ports, sizeof(ports))) {
		return 1;
	}
	__u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);
	if (egress ? dport != DNS_PORT : sport != DNS_PORT)
		return 1;
	if (!cfg.include_loopback && is_loopback(egress ? daddr : saddr, family))
		return 1;

	__u32 off = l4 + 8; /* UDP header */
	if (proto == IPPROTO_TCP) {
		__u8 doff;
		if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
			return 1;
		off = l4 + (doff >> 4) * 4;
	}
	if (skb->len <= off)
		return 1; /* no payload: a bare TCP ACK or FIN */
	__u32 payload_len = skb->len - off;

	/* only runs that use scratch memory count their nesting */
	__u32 *depth = nest_enter();
	struct dns_event *e = scratch(&dns_scratch);
	if (e)
		dns_payload(skb, e, egress, off, payload_len, saddr, daddr, sport, dport, family, proto);
	nest_leave(depth);
	return 1;
}

/* Which programs take the packets: dnsflow's own, attached to the cgroup
 * (0), or the *_called ones, which httpflow's programs call for the packets
 * that may be DNS (1). User space turns it to 1 once httpflow calls them, then
 * detaches its own: no packet is missed, and only one in flight at the switch
 * can be seen twice (a query twice is a duplicate, an answer twice unmatched:
 * counted, not summed twice). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} dns_handed_over SEC(".maps");

static __always_inline bool handed_over(void)
{
	__u32 zero = 0;
	__u32 *h = bpf_map_lookup_elem(&dns_handed_over, &zero);
	return h && *h;
}

SEC("cgroup_skb/egress")
int dns_egress(struct __sk_buff *skb)
{
	return handed_over() ? 1 : handle(skb, true);
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	return handed_over() ? 1 : handle(skb, false);
}

SEC("cgroup_skb/egress")
int dns_egress_called(struct __sk_buff *skb)
{
	return handed_over() ? handle(skb, true) : 1;
}

SEC("cgroup_skb/ingress")
int dns_ingress_called(struct __sk_buff *skb)
{
	return handed_over() ? handle(skb, false) : 1;
}

char LICENSE[] SEC("license") = "GPL";
