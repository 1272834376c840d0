/* Shared by httpflow.bpf.c and src/plugins/httpflow/decode.ts (layout checked
 * by test/unit/bpf-layout.test.ts). */
#ifndef DATAKIT_EBPF_HTTPFLOW_H
#define DATAKIT_EBPF_HTTPFLOW_H

#include "netflow.h"
#include "series.h"
#include "stream.h"

#define HTTP_CAPTURE 1152 /* request line: method, a path of up to 1024 bytes, version */
#define HTTP_STATUS_CAPTURE 16 /* "HTTP/1.1 200 OK" */

enum http_kind {
	HTTP_REQUEST = 1,
	HTTP_RESPONSE = 2,
	HTTP_EXCHANGE = 3, /* a request kept until its response: both in one record */
	HTTP_CONN_END = 4, /* the connection ended with requests sent to user space unanswered */
};

/* Or'ed into http_event.kind: the message was read from a TLS library's plaintext. */
#define HTTP_TLS 0x10

enum http_counter {
	HTTP_CNT_EVENTS = 0,        /* request and response starts queued (per-request mode) */
	HTTP_CNT_RINGBUF_FULL = 1,  /* lost: ring buffer full */
	HTTP_CNT_STATE_FULL = 2,    /* sockets whose request state could not be kept */
	HTTP_CNT_EXCHANGES = 3,     /* exchanges added to a series (aggregated mode) */
	HTTP_CNT_OVERFLOW = 4,      /* of those, added to an endpoint pair's overflow series: the table was full */
	HTTP_CNT_SERIES_LOST = 5,   /* exchanges lost: not even an overflow series could be made */
	HTTP_CNT_QUEUE_OVERFLOW = 6, /* requests not kept: too many waiting on one socket */
	HTTP_CNT_UNMATCHED = 7,     /* responses with no request waiting */
	HTTP_CNT_NOT_HTTP = 8,      /* message starts that did not parse */
	HTTP_CNT_PATHS_SENT = 9,    /* path texts sent to user space */
	HTTP_CNT_SEEN_BEFORE = 10,  /* segments skipped: their data was seen before (retransmitted, duplicated) */
	HTTP_CNT_UNANSWERED = 11,   /* requests whose connection ended before their response */
	HTTP_CNT_EARLY = 12,        /* requests that came before their connection was accepted */
	HTTP_CNT_TLS_NO_SOCKET = 13, /* TLS plaintext whose connection was not known: not read */
	HTTP_CNT_TLS_EXECS_LOST = 14, /* execs not told to user space (ring full): found by the next scan */
	HTTP_CNT_TLS_PREEMPTED = 15, /* TLS messages not counted: their probe was preempted, and another took its scratch memory */
	HTTP_CNT_MAX = 16,
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
	struct stream_pos pos;
	__u64 req_end_ts;    /* last request data seen */
	__u64 ts;            /* the kept request's start */
	__u16 len;           /* bytes in data */
	__u8 stored;         /* data holds a request not yet sent to user space */
	__u8 outstanding;    /* requests not yet answered (pipelining: more than one) */
	__u8 request_egress; /* direction of requests on this connection */
	__u8 in_request;     /* request data seen since the last response start */
	__u8 fin;            /* FIN seen: bit 0 received, bit 1 sent */
	__u8 _pad;
	__u8 data[HTTP_CAPTURE];
};

/* ---- aggregated mode: exchanges summed into per-interval series ---- */

#define HTTP_QUEUE 8 /* requests kept waiting per socket (pipelining) */

/* A request waiting for its response (aggregated mode). */
struct http_waiting {
	__u64 ts;   /* when it started */
	__u64 path; /* hash of its path */
	__u8 method;
	__u8 version; /* minor version: 0 or 1 */
	__u8 _pad[6];
};

/* A connection's requests waiting for their responses (aggregated mode),
 * whether seen in packets (struct http_conn) or in a TLS library's plaintext. */
struct http_queue {
	__u64 req_end_ts;    /* last request data seen */
	__u64 sent_path;     /* the hash of this connection's last path, known to user space... */
	__u32 paths_epoch;   /* ...while user space has forgotten no path since (http_paths_epoch) */
	__u8 request_egress; /* direction of requests on this connection */
	__u8 in_request;     /* request data seen since the last response start */
	__u8 head;           /* the oldest waiting request */
	__u8 count;          /* requests waiting */
	struct http_waiting waiting[HTTP_QUEUE];
};

/* Per socket with HTTP seen in its packets (aggregated mode, sk_storage). */
struct http_conn {
	struct stream_pos pos;
	struct http_queue q;
	__u32 pid;      /* the owner as netflow last saw it, kept at the first answer: */
	char comm[16];  /* one lookup of netflow's table per connection, not per exchange */
	__u8 fin;       /* FIN seen: bit 0 received, bit 1 sent */
	__u8 _pad[3];
};

/* One series: the exchanges of one interval that share all of this. */
struct http_series_key {
	__u8 saddr[16]; /* local end; IPv4 in the first 4 bytes */
	__u8 daddr[16]; /* remote end */
	__u16 sport;    /* 0: an ephemeral client port, collapsed */
	__u16 dport;
	__u16 family;
	__u8 server;    /* this side answered (incoming) */
	__u8 method;    /* enum in src/plugins/httpflow/aggregate.ts; 0 with path 0: overflow */
	__u16 status;
	__u8 version;
	__u8 tls;       /* read from a TLS library's plaintext */
	__u32 pid;
	__u64 path;     /* hash of the path; 0: the endpoint pair's overflow series ("*") */
	char comm[16];
};

/* A path's text, sent the first time its hash is seen. */
struct http_path_event {
	__u64 path; /* the hash */
	__u16 len;  /* bytes in data: the request's start, as captured */
	__u8 _pad[6];
	__u8 data[HTTP_CAPTURE];
};

/* What the request parser found (per CPU). */
struct http_parsed {
	__u64 path;
	__u16 len;    /* bytes of the request captured in data */
	__u8 method;
	__u8 version;
	__u8 ok;
	__u8 _pad[3];
	struct http_path_event event; /* data holds the captured request */
	__u8 guard[8];                /* the parser reads a word past the capture */
};

/* A request that came before its connection was accepted (the handshake's
 * last ACK lost or late): the kernel hands it to the listening socket, so it
 * waits here, by the connection's ends, until the new socket answers it. */
struct http_early_key {
	__u32 raddr[4]; /* remote end; IPv4 in the first word */
	__u16 rport;    /* host order */
	__u16 lport;
	__u16 family;
	__u16 _pad;
};

struct http_early {
	__u64 ts;      /* when it came */
	__u64 path;    /* aggregated: its path's hash */
	__u32 seq_end; /* the request stream's position after it */
	__u16 len;     /* per request: bytes in data */
	__u8 method;
	__u8 version;
	__u8 data[HTTP_CAPTURE];
};

/* ---- TLS: plaintext at a TLS library's read and write calls ---- */

/* A read or write call in progress (by thread for OpenSSL, by goroutine for Go). */
struct tls_call {
	__u64 conn; /* the library's connection: SSL * (OpenSSL), *tls.Conn (Go) */
	__u64 buf;  /* the caller's buffer */
	__u64 out;  /* OpenSSL's _ex forms: where the byte count goes */
	__u64 ts;   /* when the call started */
	__u64 sk;   /* Go: the socket, found at entry */
	__u32 write; /* OpenSSL: a write (else a read) */
	__u32 ex;    /* OpenSSL: an _ex form (the byte count at `out`) */
};

struct tls_conn_key {
	__u64 conn;
	__u32 tgid;
	__u32 _pad;
};

/* A TLS connection: its socket's ends, and its requests waiting (as http_queue). */
struct tls_conn {
	struct conn_tuple t;
	__u64 sk;
	__u32 carry[2];     /* by direction ([1]: written): the first bytes of a message start that came alone */
	__u8 carry_len[2];  /* 0 to 3 */
	__u8 _pad[6];
	struct http_queue q;
};

/* Go: a goroutine's call, by goroutine (struct g) and process. */
struct go_call_key {
	__u64 g;
	__u32 tgid;
	__u32 _pad;
};

/* Read-only configuration, written by user space before load. */
struct httpflow_config {
	__u32 include_loopback;
	__u32 wakeup_bytes; /* wake user space once this much is queued */
	__u32 per_request;  /* 1: every exchange to user space (DataKit 1.4.0's points) */
	__u32 max_series;   /* series per interval before exchanges go to overflow series */
	/* Go: from a *tls.Conn to its socket's fd (src/plugins/httpflow/tls/go.ts) */
	__u32 go_conn_data; /* the data word of the Conn's net.Conn interface */
	__u32 go_netfd;     /* the *netFD in the net.TCPConn */
	__u32 go_sysfd;     /* the fd in the netFD */
	__u32 udp_peers;    /* 1: stash the peers of UDP datagrams sent, for netflow (udp_stash is netflow's) */
	__u32 udp_locals;   /* 1: note the local address of wildcard-bound sockets' datagrams, for netflow (udp_locals is netflow's) */
};

#endif
