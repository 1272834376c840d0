// SPDX-License-Identifier: GPL-2.0
/* dnsflow: DNS queries leaving, and responses entering, client sockets.
 *
 * cgroup_skb programs on the cgroup v2 root see the packets of every socket
 * on the host, whatever its network namespace, with the socket's own view
 * (a query is seen once, at the client, even when the server is local too).
 * Only the client side is taken: egress to port 53, ingress from port 53.
 * Everything else returns at the port check. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "addr.h"
#include "capture.h"
#include "counters.h"
#include "dnsflow.h"
#include "ringbuf.h"

const volatile struct dnsflow_config cfg = {
	.include_loopback = 0,
	.wakeup_bytes = 64 * 1024,
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
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_event);
} dns_scratch SEC(".maps");

static __always_inline void count(__u32 slot)
{
	counter_inc(&counters, slot);
}

static __always_inline int handle(struct __sk_buff *skb, bool egress)
{
	__u32 saddr[4] = {}, daddr[4] = {}; /* words: is_loopback reads them so */
	__u16 family;
	__u8 proto;
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
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
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
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
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
		return 1;
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

	__u32 zero = 0;
	struct dns_event *e = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!e)
		return 1;
	__u64 len = capture_len(payload_len, DNS_CAPTURE);
	if (!len || bpf_skb_load_bytes(skb, off, e->payload, len))
		return 1;
	e->ts = bpf_ktime_get_ns();
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	e->sport = sport;
	e->dport = dport;
	e->family = family;
	e->proto = proto;
	e->is_response = !egress;
	e->len = len;
	e->_pad0 = 0;
	e->payload_len = payload_len;
	/* a query is some 50 bytes: send what was captured, not the whole record */
	if (output_prefix(&dns_events, e, offsetof(struct dns_event, payload) + len, sizeof(*e), cfg.wakeup_bytes))
		count(DNS_CNT_RINGBUF_FULL);
	else
		count(DNS_CNT_EVENTS);
	return 1;
}

SEC("cgroup_skb/egress")
int dns_egress(struct __sk_buff *skb)
{
	return handle(skb, true);
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	return handle(skb, false);
}

char LICENSE[] SEC("license") = "GPL";
