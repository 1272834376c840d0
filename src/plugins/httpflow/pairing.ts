// Pairs each HTTP response with the oldest unanswered request on the same
// connection and side (keep-alive: many in turn; pipelining: several queued).

/** A request, and once answered, its status and latency: one object per exchange. */
export class Exchange {
  status = 0;
  latencyNs = 0;
  constructor(
    readonly method: string,
    readonly path: string,
    readonly version: '1.0' | '1.1',
    /** When the request was seen (EventClock ns). */
    readonly seenNs: number,
    public pid: number,
    public processName: string,
  ) {}

  /**
   * Answered with `status` at `answeredNs`. Latency runs from `lastDataNs`, when
   * the request's last data passed, if that is later than its start.
   */
  answer(status: number, answeredNs: number, lastDataNs: number): void {
    const end = lastDataNs > this.seenNs ? lastDataNs : this.seenNs;
    this.status = status;
    this.latencyNs = answeredNs > end ? answeredNs - end : 0;
  }
}

/** Requests waiting per connection beyond this are dropped (counted): nobody pipelines deeper. */
const MAX_QUEUE = 64;

/**
 * Only pipelined requests wait here (the kernel pairs one request at a time
 * itself). Bounded in all: at most `maxPending` requests, each with a path of
 * at most 1 KiB, so 64 MiB at the default; beyond it requests are counted as
 * queue_overflow.
 */
export class HttpPairer {
  private readonly waiting = new Map<number, Exchange[]>();
  private waitingTotal = 0;
  /** kernel_paired: exchanges the kernel sent as one record (one request waiting at a time). */
  readonly counts = {
    requests: 0,
    responses: 0,
    kernel_paired: 0,
    unmatched_responses: 0,
    expired_requests: 0,
    queue_overflow: 0,
    closed_unanswered: 0,
  };

  constructor(private readonly maxPending = 65536) {}

  request(conn: number, r: Exchange): void {
    this.counts.requests++;
    if (this.waitingTotal >= this.maxPending) {
      this.counts.queue_overflow++;
      return;
    }
    let q = this.waiting.get(conn);
    if (!q) {
      q = [];
      this.waiting.set(conn, q);
    }
    if (q.length >= MAX_QUEUE) {
      this.counts.queue_overflow++;
      return;
    }
    q.push(r);
    this.waitingTotal++;
  }

  /** The connection ended: what still waits will never be answered. */
  closed(conn: number): void {
    const q = this.waiting.get(conn);
    if (!q) return;
    this.counts.closed_unanswered += q.length;
    this.waitingTotal -= q.length;
    this.waiting.delete(conn);
  }

  /**
   * The exchange a response completes. `reqEndNs` is when the connection's
   * latest request data was seen: the end of the request being answered when
   * only one is waiting (its start otherwise, for pipelined requests).
   */
  response(conn: number, status: number, seenNs: number, reqEndNs: number, pid: number): Exchange | undefined {
    const q = this.waiting.get(conn);
    const r = q?.shift();
    if (!r) {
      this.counts.unmatched_responses++;
      return undefined;
    }
    this.waitingTotal--;
    if (!q!.length) this.waiting.delete(conn); // closed connections must not hold slots
    this.counts.responses++;
    if (!r.pid) r.pid = pid;
    // the connection's last request data belongs to this request only if no other waits behind it
    r.answer(status, seenNs, q!.length ? r.seenNs : reqEndNs);
    return r;
  }

  /** Completes an exchange the kernel paired itself (one request waiting, then its response). */
  exchanged(x: Exchange, status: number, seenNs: number, reqEndNs: number): void {
    this.counts.requests++;
    this.counts.responses++;
    this.counts.kernel_paired++;
    x.answer(status, seenNs, reqEndNs);
  }

  /** Drops requests unanswered for `timeoutNs`. */
  expire(nowNs: number, timeoutNs: number): void {
    for (const [conn, q] of this.waiting) {
      while (q.length && nowNs - q[0].seenNs >= timeoutNs) {
        q.shift();
        this.waitingTotal--;
        this.counts.expired_requests++;
      }
      if (!q.length) this.waiting.delete(conn);
    }
  }

  get pending(): number {
    return this.waitingTotal;
  }
}
