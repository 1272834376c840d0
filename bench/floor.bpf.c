// SPDX-License-Identifier: GPL-2.0
/* The benchmark's floor: programs that do nothing, on the hooks the collector
 * uses on this kernel (the tracepoint byte hooks; tp_btf, as the collector's).
 * Run beside a workload, they show what the hooks cost before any work is done
 * in them. Not part of the product: bench/floor.ts loads it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tp_btf/inet_sock_set_state")
int floor_state(unsigned long long *ctx) { return 0; }

SEC("tp_btf/tcp_destroy_sock")
int floor_destroy(unsigned long long *ctx) { return 0; }

SEC("tp_btf/tcp_retransmit_skb")
int floor_retransmit(unsigned long long *ctx) { return 0; }

SEC("tp_btf/sock_send_length")
int floor_send(unsigned long long *ctx) { return 0; }

SEC("tp_btf/sock_recv_length")
int floor_recv(unsigned long long *ctx) { return 0; }

/* httpflow's, which call dnsflow's: one of each direction */
SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff *skb) { return 1; }

SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff *skb) { return 1; }

SEC("cgroup/sendmsg4")
int floor_sendmsg4(struct bpf_sock_addr *ctx) { return 1; }

SEC("cgroup/recvmsg4")
int floor_recvmsg4(struct bpf_sock_addr *ctx) { return 1; }

SEC("cgroup/sendmsg6")
int floor_sendmsg6(struct bpf_sock_addr *ctx) { return 1; }

SEC("cgroup/recvmsg6")
int floor_recvmsg6(struct bpf_sock_addr *ctx) { return 1; }

/* httpflow's TLS probes: entry and return of OpenSSL's read and write calls */
SEC("uprobe")
int floor_ssl_enter(void *ctx) { return 0; }

SEC("uretprobe")
int floor_ssl_return(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
