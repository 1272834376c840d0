/* Addresses as the programs keep them: 16 bytes, IPv4 in the first 4. */
#ifndef DATAKIT_EBPF_ADDR_H
#define DATAKIT_EBPF_ADDR_H

#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. `a` is read as words: it must
 * be 4-byte aligned (the verifier refuses misaligned stack reads). */
static __always_inline bool is_loopback(const __u32 *a, __u16 family)
{
	if (family == AF_INET)
		return (a[0] & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
	if (a[0] || a[1])
		return false;
	if (a[2] == 0)
		return a[3] == bpf_htonl(1);
	return a[2] == bpf_htonl(0x0000ffff) && (a[3] & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
}

/* Writes IPv4 address `v4` as ::ffff:a.b.c.d: how a dual-stack socket names
 * an IPv4 end. */
static __always_inline void v4_mapped(__u32 *a, __u32 v4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0x0000ffff);
	a[3] = v4;
}

#endif
