/* httpflow over TLS: the plaintext of HTTP/1.x exchanges, read at the TLS
 * library's calls, goes through the same parsers, queue and series as what
 * the cgroup_skb programs see (part of httpflow.bpf.c, which includes it).
 *
 * OpenSSL (SSL_read, SSL_write and their _ex forms): an entry probe keeps the
 * call's buffer by thread; the return probe reads what the call moved. The
 * connection comes from netflow, which notes the TCP socket each thread last
 * sent or received on (thread_socks): the slot is cleared when a call starts,
 * so a socket found there at its return is the one the call used. It is kept
 * per SSL object, for calls that used no socket (data already decrypted).
 *
 * Go (crypto/tls.(*Conn).Write and Read, register ABI): Write is read whole at
 * its entry; goroutine stacks move, so Read has no return probe but one on
 * each of its return instructions, and its calls are kept by goroutine (R14).
 * The socket is found from the Conn's file descriptor.
 *
 * Every probe hands its call to tls_process (a tail call), the one large
 * program. Uprobe programs are preemptible on 6.x kernels: writes of per-CPU
 * scratch memory are stamped (tls_writes) and checked before use. */
#ifndef DATAKIT_EBPF_TLS_H
#define DATAKIT_EBPF_TLS_H

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* netflow's per-thread sockets (replaced by netflow's map before load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, THREAD_SOCKS);
	__type(key, __u32);
	__type(value, struct thread_sock);
} thread_socks SEC(".maps");

/* OpenSSL calls in progress, by thread: an array slot per thread id's low
 * bits, checked against the whole id (a thread is in one call at a time; two
 * live threads whose calls overlap in one slot lose one of them). An array,
 * not a hash: every SSL call, even one that moves nothing, pays a store and a
 * load. */
struct ssl_call {
	__u32 tid;
	__u32 _pad;
	struct tls_call c;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, THREAD_SOCKS);
	__type(key, __u32);
	__type(value, struct ssl_call);
} tls_calls SEC(".maps");

/* Go calls in progress, by goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_call_key);
	__type(value, struct tls_call);
} go_calls SEC(".maps");

/* TLS connections, by the library's connection object and process (OpenSSL's
 * SSL_free removes its own; Go's age out). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_conn_key);
	__type(value, struct tls_conn);
} tls_conns SEC(".maps");

/* A zeroed connection, to insert new ones from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_conn);
} tls_conn_zero SEC(".maps");

/* Reads the request line in a TLS call's buffer into this CPU's http_parsed,
 * after the `carried` bytes of `carry`. Returns the write's stamp
 * (scratch_intact), or 0 when it is not a request line. */
static __always_inline __u64 tls_parse_request(__u64 buf, __u64 avail, __u32 carry, __u32 carried)
{
	__u32 zero = 0;
	__u64 *w = bpf_map_lookup_elem(&tls_writes, &zero);
	struct http_parsed *p = scratch(&http_parse);
	if (!w || !p)
		return 0;
	/* the adds' results unused: 5.10 has no atomic fetch; the stamp is read after */
	__sync_fetch_and_add(w, 1);
	__u64 stamp = *w + 1;
	p->ok = 0;
	__u32 k = carried & 3;
	*(__u32 *)p->event.data = carry; /* the call's bytes go over what is not carried */
	__u64 n = capture_len(avail, HTTP_CAPTURE - 4);
	int ok = n && !bpf_probe_read_user(p->event.data + k, n, (void *)buf) && parse_captured(n + k);
	__sync_fetch_and_add(w, 1);
	return ok ? stamp : 0;
}

/* The first 12 bytes of a message: `carried` bytes of `carry`, then the buffer's. */
static __always_inline bool tls_head(__u8 *b, __u64 buf, __u64 n, __u32 carry, __u32 carried)
{
	*(__u32 *)b = carry;
	/* constant offsets: older verifiers refuse a variable one into the stack */
	switch (carried) {
	case 0: return n >= 12 && !bpf_probe_read_user(b, 12, (void *)buf);
	case 1: return n >= 11 && !bpf_probe_read_user(b + 1, 11, (void *)buf);
	case 2: return n >= 10 && !bpf_probe_read_user(b + 2, 10, (void *)buf);
	case 3: return n >= 9 && !bpf_probe_read_user(b + 3, 9, (void *)buf);
	}
	return false;
}

/* A byte that can begin a message start (a method, "HTTP"): a capital letter. */
static __always_inline bool capital(__u32 c)
{
	return c - 'A' <= 'Z' - 'A';
}

/* Per request: the message start goes to user space, which pairs it by socket. */
static __always_inline void tls_event(struct tls_conn *tc, __u64 buf, __u64 n, int kind, bool write, __u64 start, __u64 now, __u32 carry, __u32 carried)
{
	struct http_queue *q = &tc->q;
	__u32 zero = 0;
	__u64 *w = bpf_map_lookup_elem(&tls_writes, &zero);
	struct http_event *e = scratch(&http_scratch);
	if (!e || !w)
		return;
	__sync_fetch_and_add(w, 1);
	__u64 stamp = *w;
	if (kind == HTTP_REQUEST) {
		q->request_egress = write;
		q->in_request = 1;
		q->req_end_ts = now;
		e->req_end_ts = 0;
	} else {
		__u32 head[3] = {}; /* words: the carried bytes are stored as one */
		if (tls_head((__u8 *)head, buf, n, carry, carried)) {
			__u16 status = status_of((__u8 *)head);
			if (status && status < 200 && status != 101)
				return; /* an interim answer (100 Continue): the final one follows */
		}
		e->req_end_ts = q->req_end_ts;
		q->in_request = 0;
	}
	e->t = tc->t;
	e->t.netns = 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	process_comm(&e->comm);
	e->sk = tc->sk;
	e->egress = write;
	e->req_ts = 0;
	e->ts = start;
	e->kind = kind | HTTP_TLS;
	__u32 k = carried & 3;
	*(__u32 *)e->data = carry;
	__u64 len = capture_len(n, kind == HTTP_REQUEST ? HTTP_CAPTURE - 4 : HTTP_STATUS_CAPTURE - 4);
	if (!len || bpf_probe_read_user(e->data + k, len, (void *)buf))
		return;
	e->len = len + k;
	/* not if another TLS probe wrote over it meanwhile (this one preempted) */
	if (!scratch_intact(stamp)) {
		http_count(HTTP_CNT_TLS_PREEMPTED);
		return;
	}
	http_output(e, len + k);
}

/* n bytes of plaintext moved by a call on connection tc (one netflow reports:
 * loopback only when asked, so no filter here). */
static __always_inline void tls_data(struct tls_conn *tc, const struct tls_call *c, __u64 n, bool write)
{
	__u64 now = bpf_ktime_get_ns();
	/* a write's data leaves from the call's start; a read's is there at its return */
	__u64 start = write ? c->ts : now;
	/* A message start may come in pieces: Go's HTTP server reads one byte
	 * ahead to notice a client leaving. Up to three capital letters that came
	 * alone are kept and put before the next call's bytes. */
	__u32 d = write ? 1 : 0;
	__u32 carried = tc->carry_len[d] & 3;
	__u32 carry = carried ? tc->carry[d] & ((1U << (carried * 8)) - 1) : 0;
	tc->carry_len[d] = 0;
	__u32 ahead = 0;
	bpf_probe_read_user(&ahead, n < 4 ? n & 3 : 4, (void *)c->buf);
	__u32 word = carry | ahead << (carried * 8);
	if (carried + n < 4) {
		bool all = capital(word & 0xff) && (carried + n < 2 || capital((word >> 8) & 0xff)) && (carried + n < 3 || capital((word >> 16) & 0xff));
		if (all) {
			tc->carry[d] = word;
			tc->carry_len[d] = carried + n;
			return;
		}
		word = 0;
	}
	int kind = http_kind(word);
	struct http_queue *q = &tc->q;
	if (!kind) {
		/* more of a request: its end moves on */
		if (q->in_request && q->request_egress == write)
			q->req_end_ts = now;
		return;
	}
	if (cfg.per_request) {
		tls_event(tc, c->buf, n, kind, write, start, now, carry, carried);
		return;
	}
	if (kind == HTTP_REQUEST) {
		__u64 stamp = tls_parse_request(c->buf, n, carry, carried);
		if (!stamp) {
			http_count(HTTP_CNT_NOT_HTTP);
			return;
		}
		/* what was parsed is used only if no other TLS probe wrote over it
		 * since (this one was preempted): read, then checked */
		struct http_parsed *p = scratch(&http_parse);
		if (!p || !p->ok)
			return;
		__u64 path = p->path;
		__u8 method = p->method, version = p->version;
		if (!scratch_intact(stamp)) {
			http_count(HTTP_CNT_TLS_PREEMPTED);
			return;
		}
		queue_request(q, p, path, method, version, stamp, write, start, now);
		return;
	}
	__u32 head[3] = {}; /* words: the carried bytes are stored as one */
	__u16 status = 0;
	if (tls_head((__u8 *)head, c->buf, n, carry, carried))
		status = status_of((__u8 *)head);
	if (!status) {
		http_count(HTTP_CNT_NOT_HTTP);
		return;
	}
	if (status < 200 && status != 101)
		return; /* an interim answer (100 Continue): the final one follows */
	struct http_series_key k = {};
	__u64 latency;
	if (!queue_answer(q, start, &k, &latency))
		return;
	key_ends(&k, &tc->t, write); /* the response leaves the side that serves */
	k.status = status;
	k.tls = 1;
	k.pid = bpf_get_current_pid_tgid() >> 32;
	process_comm(&k.comm);
	add_exchange(&k, latency);
}

/* What a probe hands to tls_process: one call and what it moved. */
struct tls_staged {
	struct tls_call c;
	__u64 sk;    /* the socket the call used; 0 when unknown */
	__u64 n;     /* bytes moved (maybe 0) */
	__u64 stamp; /* tls_writes when written (scratch_intact) */
};

/* Per CPU: the probe and tls_process run back to back (uprobe programs do
 * not nest), but may be preempted in between: the stamp tells. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_staged);
} tls_stage SEC(".maps");

int tls_process(struct pt_regs *ctx);

/* The one program that parses and counts what every TLS probe saw: each
 * probe tail-calls it, so its large body is verified once, not per probe. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(struct pt_regs *));
} tls_jump SEC(".maps") = {
	.values = {[0] = (void *)&tls_process},
};

/* A call on `conn` moved n bytes (maybe 0); `sk` is the socket it used, 0 when unknown. */
static __always_inline void tls_moved(const struct tls_call *c, __u64 sk, __u64 n, bool write)
{
	struct tls_conn_key key = {.conn = c->conn, .tgid = bpf_get_current_pid_tgid() >> 32};
	struct tls_conn *tc = bpf_map_lookup_elem(&tls_conns, &key);
	if (sk && (!tc || tc->sk != sk)) {
		/* a new connection, or the library's object now serves another:
		 * netflow knows the TCP connections reported (not loopback unless asked) */
		struct conn_stats *cs = bpf_map_lookup_elem(&conns, &sk);
		if (!cs)
			return;
		__u32 zero = 0;
		struct tls_conn *fresh = bpf_map_lookup_elem(&tls_conn_zero, &zero);
		if (!fresh || bpf_map_update_elem(&tls_conns, &key, fresh, BPF_ANY)) {
			http_count(HTTP_CNT_STATE_FULL);
			return;
		}
		tc = bpf_map_lookup_elem(&tls_conns, &key);
		if (!tc)
			return;
		tc->t = cs->t;
		tc->sk = sk;
	}
	if (!n)
		return;
	if (!tc) {
		http_count(HTTP_CNT_TLS_NO_SOCKET);
		return;
	}
	__u32 *depth = nest_enter();
	tls_data(tc, c, n, write);
	nest_leave(depth);
}

/* Hands a call to tls_process. */
static __always_inline void tls_hand_over(struct pt_regs *ctx, const struct tls_call *c, __u64 sk, __u64 n)
{
	__u32 zero = 0;
	struct tls_staged *st = bpf_map_lookup_elem(&tls_stage, &zero);
	__u64 *w = bpf_map_lookup_elem(&tls_writes, &zero);
	if (!st || !w)
		return;
	__sync_fetch_and_add(w, 1);
	st->stamp = *w;
	st->c = *c;
	st->sk = sk;
	st->n = n;
	bpf_tail_call(ctx, &tls_jump, 0);
}

SEC("uprobe")
int tls_process(struct pt_regs *ctx)
{
	__u32 zero = 0;
	struct tls_staged *st = bpf_map_lookup_elem(&tls_stage, &zero);
	if (!st)
		return 0;
	struct tls_call c = st->c;
	__u64 sk = st->sk, n = st->n;
	if (!scratch_intact(st->stamp)) {
		http_count(HTTP_CNT_TLS_PREEMPTED);
		return 0;
	}
	tls_moved(&c, sk, n, c.write);
	return 0;
}

/* ---- OpenSSL ---- */

static __always_inline void ssl_enter(void *ssl, const void *buf, void *out, bool write)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), slot = tid & (THREAD_SOCKS - 1);
	struct ssl_call *call = bpf_map_lookup_elem(&tls_calls, &slot);
	if (!call)
		return;
	call->tid = tid;
	call->c.conn = (__u64)ssl;
	call->c.buf = (__u64)buf;
	call->c.out = (__u64)out;
	call->c.ts = bpf_ktime_get_ns();
	call->c.write = write;
	call->c.ex = !!out;
	struct thread_sock *ts = bpf_map_lookup_elem(&thread_socks, &slot);
	if (ts && ts->tid == tid)
		ts->sk = 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf)
{
	ssl_enter(ssl, buf, NULL, true);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf)
{
	ssl_enter(ssl, buf, NULL, false);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, __u64 num, void *written)
{
	ssl_enter(ssl, buf, written, true);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, __u64 num, void *readbytes)
{
	ssl_enter(ssl, buf, readbytes, false);
	return 0;
}

/* The return of any of the four (one program: each is a large one to verify). */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_return, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), slot = tid & (THREAD_SOCKS - 1);
	struct ssl_call *call = bpf_map_lookup_elem(&tls_calls, &slot);
	if (!call || call->tid != tid)
		return 0;
	struct tls_call c = call->c;
	call->tid = 0;
	__u64 n = 0;
	if (c.ex) {
		/* 1 on success, the byte count written to *out */
		if (ret == 1 && bpf_probe_read_user(&n, sizeof(n), (void *)c.out))
			n = 0;
	} else if (ret > 0) {
		n = ret;
	}
	struct thread_sock *ts = bpf_map_lookup_elem(&thread_socks, &slot);
	__u64 sk = ts && ts->tid == tid ? ts->sk : 0;
	if (!n && !sk)
		return 0; /* nothing moved, no socket learnt (a read that would block) */
	tls_hand_over(ctx, &c, sk, n);
	return 0;
}

/* The SSL object's memory may serve another connection next. */
SEC("uprobe")
int BPF_KPROBE(ssl_free_enter, void *ssl)
{
	struct tls_conn_key key = {.conn = (__u64)ssl, .tgid = bpf_get_current_pid_tgid() >> 32};
	bpf_map_delete_elem(&tls_conns, &key);
	return 0;
}

/* ---- new programs ---- */

/* Processes that exec'd, for user space to look at at once: a short-lived
 * client may be done before its next /proc scan. The ring's own wake-up
 * rule: only a record that finds user space caught up wakes it, so an idle
 * host costs no polling and a burst of execs one wake-up. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} tls_execs SEC(".maps");

SEC("raw_tp/sched_process_exec")
int tls_exec(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&tls_execs, &pid, sizeof(pid), 0))
		http_count(HTTP_CNT_TLS_EXECS_LOST);
	return 0;
}

/* ---- Go crypto/tls ---- */

/* The socket behind a file descriptor of the current process; 0 when it is none. */
static __always_inline __u64 sock_of_fd(__s64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return (__u64)BPF_CORE_READ(sock, sk);
}

/* The socket of a *tls.Conn over a *net.TCPConn: conn.data → fd → pfd.Sysfd. */
static __always_inline __u64 go_conn_sock(__u64 conn)
{
	__u64 tcp = 0, netfd = 0;
	__s64 fd = -1;
	if (bpf_probe_read_user(&tcp, 8, (void *)(conn + cfg.go_conn_data)) || !tcp)
		return 0;
	if (bpf_probe_read_user(&netfd, 8, (void *)(tcp + cfg.go_netfd)) || !netfd)
		return 0;
	if (bpf_probe_read_user(&fd, 8, (void *)(netfd + cfg.go_sysfd)))
		return 0;
	return sock_of_fd(fd);
}

/* Entry of Write or Read: receiver in RAX, the slice in RBX (pointer) and
 * RCX (length), the goroutine in R14. */
static __always_inline struct tls_call go_call(struct pt_regs *ctx)
{
	struct tls_call c = {.conn = ctx->ax, .buf = ctx->bx, .ts = bpf_ktime_get_ns()};
	c.sk = go_conn_sock(c.conn);
	return c;
}

/* Write is read at its entry, whole: its bytes are in the buffer already,
 * and Go's HTTP client writes from one goroutine while another reads the
 * answer, which may come before the writer returns. */
SEC("uprobe")
int go_write_enter(struct pt_regs *ctx)
{
	struct tls_call c = go_call(ctx);
	c.write = 1;
	__s64 n = ctx->cx;
	tls_hand_over(ctx, &c, c.sk, n > 0 ? n : 0);
	return 0;
}

/* Read is read at its return instructions: n in RAX. */
SEC("uprobe")
int go_read_enter(struct pt_regs *ctx)
{
	struct go_call_key key = {.g = ctx->r14, .tgid = bpf_get_current_pid_tgid() >> 32};
	struct tls_call c = go_call(ctx);
	bpf_map_update_elem(&go_calls, &key, &c, BPF_ANY);
	return 0;
}

SEC("uprobe")
int go_read_return(struct pt_regs *ctx)
{
	struct go_call_key key = {.g = ctx->r14, .tgid = bpf_get_current_pid_tgid() >> 32};
	struct tls_call *cp = bpf_map_lookup_elem(&go_calls, &key);
	if (!cp)
		return 0;
	struct tls_call c = *cp;
	bpf_map_delete_elem(&go_calls, &key);
	__s64 n = ctx->ax;
	tls_hand_over(ctx, &c, c.sk, n > 0 ? n : 0);
	return 0;
}

#endif
