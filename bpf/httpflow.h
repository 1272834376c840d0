/* Shared by httpflow.bpf.c and src/plugins/httpflow/decode.ts (layout checked
 * by test/unit/bpf-layout.test.ts). */
#ifndef DATAKIT_EBPF_HTTPFLOW_H
#define DATAKIT_EBPF_HTTPFLOW_H

#include "netflow.h"

#define HTTP_CAPTURE 1152 /* request line: method, a path of up to 1024 bytes, version */
#define HTTP_STATUS_CAPTURE 16 /* "HTTP/1.1 200 OK" */

enum http_kind {
	HTTP_REQUEST = 1,
	HTTP_RESPONSE = 2,
	HTTP_EXCHANGE = 3, /* a request kept until its response: both in one record */
};

enum http_counter {
	HTTP_CNT_EVENTS = 0,        /* request and response starts queued */
	HTTP_CNT_RINGBUF_FULL = 1,  /* lost: ring buffer full */
	HTTP_CNT_STATE_FULL = 2,    /* sockets whose request state could not be kept */
	HTTP_CNT_MAX = 3,
};

struct http_event {
	__u64 ts;          /* CLOCK_MONOTONIC ns of this packet */
	__u64 sk;          /* the socket: pairs requests and responses */
	__u64 req_end_ts;  /* responses, exchanges: last request byte seen on this connection */
	__u64 req_ts;      /* exchanges: when the request started */
	struct conn_tuple t; /* local end in saddr/sport */
	__u32 pid;         /* owner as netflow knows it; 0 when unknown */
	__u8 kind;         /* enum http_kind */
	__u8 egress;       /* this packet was sent by the local socket (else received) */
	__u16 len;         /* bytes in data */
	char comm[16];
	__u8 status[HTTP_STATUS_CAPTURE]; /* exchanges: the response's start, zero-padded */
	__u8 data[HTTP_CAPTURE];          /* the request's start (responses: the status line) */
};

/* Per socket with HTTP seen (sk_storage, freed with the socket): when its
 * latest request data went by, and the one request waiting for its answer,
 * kept in the kernel so that the common case, one request at a time, costs
 * one record. */
struct http_sock {
	__u64 req_end_ts;    /* last request data seen */
	__u64 ts;            /* the kept request's start */
	__u16 len;           /* bytes in data */
	__u8 stored;         /* data holds a request not yet sent to user space */
	__u8 outstanding;    /* requests not yet answered (pipelining: more than one) */
	__u8 request_egress; /* direction of requests on this connection */
	__u8 in_request;     /* request data seen since the last response start */
	__u8 _pad[2];
	__u8 data[HTTP_CAPTURE];
};

/* Read-only configuration, written by user space before load. */
struct httpflow_config {
	__u32 include_loopback;
	__u32 wakeup_bytes; /* wake user space once this much is queued */
};

#endif
