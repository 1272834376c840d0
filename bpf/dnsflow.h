/* Shared by dnsflow.bpf.c and src/plugins/dnsflow/decode.ts (layout checked
 * by test/unit/bpf-layout.test.ts). */
#ifndef DATAKIT_EBPF_DNSFLOW_H
#define DATAKIT_EBPF_DNSFLOW_H

#define DNS_PORT 53
#define DNS_CAPTURE 512 /* bytes of each DNS message copied to user space */

enum dns_counter {
	DNS_CNT_EVENTS = 0,       /* queries and responses queued */
	DNS_CNT_RINGBUF_FULL = 1, /* lost: ring buffer full */
	DNS_CNT_FRAGMENTS = 2,    /* IP fragments skipped (no ports to look at) */
	DNS_CNT_MAX = 3,
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
	__u16 _pad0;
	__u32 payload_len;  /* the whole L4 payload, of which `len` were copied */
	__u8 payload[DNS_CAPTURE];
};

struct dnsflow_config {
	__u32 include_loopback;
	__u32 wakeup_bytes;
};

#endif
