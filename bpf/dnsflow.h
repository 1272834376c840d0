/* Shared by dnsflow.bpf.c and src/plugins/dnsflow/decode.ts (layout checked
 * by test/unit/bpf-layout.test.ts). */
#ifndef DATAKIT_EBPF_DNSFLOW_H
#define DATAKIT_EBPF_DNSFLOW_H

#include "series.h"

/* The remote port of a packet's socket, in network order; 0 when it has none
 * (unconnected). It is in the upper half of the field on little-endian
 * machines, in the lower on big-endian ones. */
static __always_inline __u16 skb_peer_port(const struct __sk_buff *skb)
{
	__u32 rp = skb->remote_port;
	return rp >> 16 ? rp >> 16 : rp;
}

#define DNS_PORT 53
#define DNS_CAPTURE 512 /* bytes of each DNS message copied to user space */

enum dns_counter {
	DNS_CNT_EVENTS = 0,       /* messages queued to user space */
	DNS_CNT_RINGBUF_FULL = 1, /* lost: ring buffer full */
	DNS_CNT_FRAGMENTS = 2,    /* IP fragments skipped (no ports to look at) */
	/* aggregated mode */
	DNS_CNT_QUERIES = 3,          /* queries waiting for their answers */
	DNS_CNT_ANSWERED = 4,         /* answers added to a series */
	DNS_CNT_DUPLICATES = 5,       /* a query sent again (a retry): its first send counts */
	DNS_CNT_PENDING_FULL = 6,     /* queries not tracked: the pending table was full */
	DNS_CNT_UNMATCHED = 7,        /* responses with no query waiting */
	DNS_CNT_PARSE_ERRORS = 8,     /* messages that did not parse */
	DNS_CNT_OVERFLOW = 9,         /* answers added to an endpoint pair's overflow series */
	DNS_CNT_SERIES_LOST = 10,     /* answers lost: not even an overflow series could be made */
	DNS_CNT_NO_PROCESS = 11,      /* answers whose client process netflow did not know (yet) */
	DNS_CNT_MAX = 12,
};

enum dns_kind {
	DNS_KIND_PACKET = 0, /* per-query mode: every query and response */
	DNS_KIND_NAME = 1,   /* aggregated: a query whose name's hash was new */
	DNS_KIND_ANSWER = 2, /* aggregated: an answer to learn addresses from (dst_domain) */
};

struct dns_event {
	__u64 ts;           /* CLOCK_MONOTONIC, ns */
	__u8 saddr[16];     /* packet source; IPv4 in the first 4 bytes */
	__u8 daddr[16];     /* packet destination */
	__u16 sport;        /* host order */
	__u16 dport;
	__u16 family;       /* AF_INET or AF_INET6 */
	__u8 proto;         /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 is_response;   /* seen entering a client socket (source port 53) */
	__u16 len;          /* bytes in payload */
	__u8 kind;          /* enum dns_kind */
	__u8 _pad0;
	__u32 payload_len;  /* the whole L4 payload, of which `len` were copied */
	__u64 name;         /* aggregated: hash of the question's name */
	__u8 payload[DNS_CAPTURE];
};

/* ---- aggregated mode ---- */

/* A query waiting for its answer, by both ends, transport and DNS id. */
struct dns_query_key {
	__u8 client[16]; /* IPv4 in the first 4 bytes */
	__u8 server[16];
	__u16 client_port;
	__u16 server_port;
	__u16 family;
	__u8 proto;
	__u8 _pad;
	__u16 id;
	__u16 _pad2;
};

struct dns_query {
	__u64 ts;   /* CLOCK_MONOTONIC ns of its first send */
	__u64 name; /* hash of the question's name */
	__u16 qtype;
	__u16 _pad;
	__u32 pid;
	char comm[16];
};

/* One series: the answered queries of one interval that share all of this. */
struct dns_series_key {
	__u8 client[16];
	__u8 server[16];
	__u16 client_port; /* 0: an ephemeral port, collapsed */
	__u16 server_port;
	__u16 family;
	__u8 proto;
	__u8 rcode;
	__u16 qtype;       /* 0 with name 0: the endpoint pair's overflow series */
	__u16 _pad;
	__u32 pid;
	__u64 name;        /* hash of the question's name */
	char comm[16];
};

struct dnsflow_config {
	__u32 include_loopback;
	__u32 wakeup_bytes;
	__u32 per_query;  /* 1: every query and response to user space (DataKit 1.4.0's points) */
	__u32 max_series; /* series per interval before answers go to overflow series */
};

#endif
