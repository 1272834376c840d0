// DataKit's HTTP API (SPEC §3): network points to /v1/write/network,
// logging points to /v1/write/logging, fatal start-up errors to /v1/lasterror.
//
// Delivery: each category is a line of batches, posted one at a time, in order.
// While DataKit takes them promptly they stay in memory. When a post fails
// (unreachable, timeout, 5xx, 408, 429) the category's batches move to the
// buffer dir (spool.ts), so do new ones until a post succeeds, and the first
// is retried with exponential backoff; a batch DataKit refuses (another 4xx)
// is dropped and counted, and the next goes. At shutdown what was not delivered
// within a short grace goes to the buffer dir; at start what is there goes first.
import type { Config } from '../config';
import { log } from '../log';
import { LineEncoder } from './lineprotocol';
import type { Category, Output, OutputStats, Point } from './point';
import { Spool } from './spool';
import { StdoutOutput } from './stdout';

const ENDPOINTS: Record<Category, string> = {
  network: '/v1/write/network?input=ebpf-net',
  logging: '/v1/write/logging?input=ebpf-bash',
};
const CATEGORIES = Object.keys(ENDPOINTS) as Category[];

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;
/** DataKit's answer to a refused batch, as much as the log shows. */
const ANSWER_CHARS = 300;

export interface DataKitOptions {
  bufferDir: string;
  /** Bound of the buffer dir; past it the oldest batches are dropped. */
  bufferMaxBytes: number;
  /** Points per post at most; a full batch is posted at once. */
  batchPoints?: number;
  /** Points waiting in memory, per category, past which they move to the buffer dir. */
  memoryPoints?: number;
  timeoutMs?: number;
  /** Longest wait between retries (60 s; tests shorten it). */
  maxRetryMs?: number;
  /** How long close() keeps posting before it leaves the rest in the buffer dir. */
  closeGraceMs?: number;
}

interface Batch {
  body: string | Uint8Array;
  points: number;
}

type Outcome = { kind: 'sent' } | { kind: 'rejected'; why: string } | { kind: 'retry'; why: string };

/** One category's line of batches: the buffer dir's (older), then memory's. */
interface Lane {
  category: Category;
  /** Lines not yet cut into a batch. */
  pending: string[];
  memory: Batch[];
  memoryPoints: number;
  inflight?: { batch: Batch; fromSpool: boolean };
  /** The last post failed: new batches go straight to the buffer dir until one succeeds. */
  outage: boolean;
  /** Failed posts in a row, for the backoff. */
  failures: number;
  retry?: NodeJS.Timeout;
  draining?: Promise<void>;
}

export class DataKitOutput implements Output {
  private readonly spool: Spool;
  private readonly lanes: Record<Category, Lane>;
  private readonly batchLines: number;
  private readonly memoryPoints: number;
  private readonly timeoutMs: number;
  private readonly maxRetryMs: number;
  private readonly closeGraceMs: number;
  /** Ends posts in flight when close() gives up waiting. */
  private readonly abort = new AbortController();
  private closing?: Promise<void>;
  private stopped = false;
  /** The buffer dir failed: warned about once until it works again. */
  private spoolBroken = false;
  private sent = 0;
  private failed = 0;
  private rejected = 0;
  private droppedInMemory = 0;

  constructor(
    private readonly apiServer: string,
    opts: DataKitOptions,
    private readonly encoder: LineEncoder = new LineEncoder({}),
  ) {
    this.batchLines = opts.batchPoints ?? 10_000;
    this.memoryPoints = opts.memoryPoints ?? 100_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxRetryMs = opts.maxRetryMs ?? MAX_RETRY_MS;
    this.closeGraceMs = opts.closeGraceMs ?? 3000;
    const lane = (category: Category): Lane => ({ category, pending: [], memory: [], memoryPoints: 0, outage: false, failures: 0 });
    this.lanes = { network: lane('network'), logging: lane('logging') };
    this.spool = new Spool(opts.bufferDir, { maxBytes: opts.bufferMaxBytes });
    // what an earlier run left goes first
    for (const c of CATEGORIES) {
      const waiting = this.spool.points(c);
      if (waiting) {
        log.info(`datakit: ${waiting} ${c} points left in ${opts.bufferDir} by an earlier run: sending them first`);
        this.drain(this.lanes[c]);
      }
    }
  }

  write(category: Category, points: Point[]): void {
    const lane = this.lanes[category];
    for (const p of points) {
      const line = this.encoder.tryEncode(p);
      if (line !== undefined) lane.pending.push(line);
    }
    // under load, post as soon as a batch is ready rather than once a second
    if (lane.pending.length >= this.batchLines) {
      this.cut(lane, true);
      this.drain(lane);
    }
  }

  /** Posts what is queued; resolves when each category is through, or waits for a retry. */
  flush(): Promise<void> {
    for (const lane of Object.values(this.lanes)) {
      this.cut(lane);
      this.drain(lane);
    }
    return Promise.all(Object.values(this.lanes).map((l) => l.draining)).then(() => {});
  }

  /**
   * Posts for at most the grace period, then leaves what is left in the buffer dir
   * for the next start (a post still in flight then is cut off: it may arrive twice).
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.closeGraceMs)));
    await Promise.race([this.flush(), grace]);
    clearTimeout(timer);
    this.stopped = true;
    this.abort.abort();
    await Promise.all(Object.values(this.lanes).map((l) => l.draining));
    for (const lane of Object.values(this.lanes)) {
      clearTimeout(lane.retry);
      this.spill(lane);
    }
    this.spool.close();
    const left = this.spool.points();
    if (left) log.info(`datakit: ${left} points kept in ${this.spool.dir} for the next start`);
    const lost = Object.values(this.lanes).reduce((n, l) => n + l.memoryPoints, 0);
    if (lost) log.warn(`datakit: ${lost} points lost at shutdown: the buffer dir cannot be written`);
    this.droppedInMemory += lost;
  }

  stats(): OutputStats {
    let buffered = this.spool.points();
    for (const l of Object.values(this.lanes)) {
      buffered += l.pending.length + l.memoryPoints + (l.inflight && !l.inflight.fromSpool ? l.inflight.batch.points : 0);
    }
    return {
      sent: this.sent,
      failed: this.failed,
      dropped: 0,
      dropped_full: this.spool.droppedFull + this.droppedInMemory,
      rejected: this.rejected,
      corrupt: this.spool.corrupt,
      unencodable: this.encoder.refused,
      buffered,
    };
  }

  /** Cuts the pending lines into batches and queues them; `fullOnly`: a partial last batch stays pending. */
  private cut(lane: Lane, fullOnly = false): void {
    let i = 0;
    for (; i < lane.pending.length; i += this.batchLines) {
      if (fullOnly && lane.pending.length - i < this.batchLines) break;
      const lines = lane.pending.slice(i, i + this.batchLines);
      this.queue(lane, { body: lines.join('\n'), points: lines.length });
    }
    lane.pending = lane.pending.slice(i);
  }

  private queue(lane: Lane, batch: Batch): void {
    // during an outage each batch goes to disk at once, so a SIGKILL loses none of it;
    // nothing from memory is in flight then, so the order holds
    const memoryInFlight = lane.inflight && !lane.inflight.fromSpool;
    if (lane.outage && !lane.memory.length && !memoryInFlight && this.toSpool(lane, batch)) return;
    lane.memory.push(batch);
    lane.memoryPoints += batch.points;
    if (lane.memoryPoints > this.memoryPoints) this.spill(lane);
  }

  /** Moves the batches in memory to the buffer dir, oldest first (not while one of them is being posted). */
  private spill(lane: Lane): void {
    if (lane.inflight && !lane.inflight.fromSpool) return; // spilled once that post is over
    while (lane.memory.length && this.toSpool(lane, lane.memory[0])) {
      lane.memoryPoints -= lane.memory.shift()!.points;
    }
    // the buffer dir cannot take them: memory keeps the newest within its bound
    while (lane.memoryPoints > this.memoryPoints && lane.memory.length > 1) {
      const dropped = lane.memory.shift()!;
      lane.memoryPoints -= dropped.points;
      this.droppedInMemory += dropped.points;
    }
  }

  private toSpool(lane: Lane, batch: Batch): boolean {
    try {
      this.spool.append(lane.category, batch.body, batch.points);
      if (this.spoolBroken) log.info(`datakit: buffer dir ${this.spool.dir} writable again`);
      this.spoolBroken = false;
      return true;
    } catch (err) {
      if (!this.spoolBroken) log.warn(`datakit: cannot write to buffer dir ${this.spool.dir}: ${(err as Error).message}; points wait in memory only`);
      this.spoolBroken = true;
      return false;
    }
  }

  /** Starts posting a category's batches unless that is under way or waiting for a retry. */
  private drain(lane: Lane): void {
    if (lane.draining || lane.retry || this.stopped) return;
    lane.draining = this.postAll(lane)
      .catch((err: Error) => log.error(`datakit: ${lane.category}: ${err.stack ?? err}`))
      .finally(() => (lane.draining = undefined));
  }

  private async postAll(lane: Lane): Promise<void> {
    while (!this.stopped) {
      const batch = this.take(lane);
      if (!batch) return;
      const outcome = await this.post(lane.category, batch);
      if (outcome.kind === 'retry') {
        this.putBack(lane);
        // cut off by close(): the batch waits in the buffer dir, nothing failed
        if (this.stopped) return;
        this.failed++;
        if (!lane.outage) {
          log.warn(
            `datakit: ${lane.category} post to ${this.apiServer} failed: ${outcome.why}; ` +
              `points wait in ${this.spool.dir} and are retried`,
          );
        } else {
          log.debug(`datakit: ${lane.category} retry failed: ${outcome.why}`);
        }
        lane.outage = true;
        lane.failures++;
        this.spill(lane);
        this.retryLater(lane);
        return;
      }
      if (outcome.kind === 'sent') {
        this.sent += batch.points;
      } else {
        this.rejected += batch.points;
        log.warn(`datakit: ${lane.category} batch of ${batch.points} points refused, dropped: ${outcome.why}`);
      }
      this.done(lane);
      if (lane.outage) log.info(`datakit: ${this.apiServer} takes ${lane.category} points again`);
      lane.outage = false;
      lane.failures = 0;
      // more came in meanwhile than memory should hold (DataKit slower than us)
      if (lane.memoryPoints > this.memoryPoints) this.spill(lane);
    }
  }

  /** The oldest batch: the buffer dir's first, then memory's. */
  private take(lane: Lane): Batch | undefined {
    const spooled = this.spool.next(lane.category);
    if (spooled) {
      lane.inflight = { batch: spooled, fromSpool: true };
      return spooled;
    }
    const batch = lane.memory.shift();
    if (!batch) return undefined;
    lane.memoryPoints -= batch.points;
    lane.inflight = { batch, fromSpool: false };
    return batch;
  }

  private done(lane: Lane): void {
    if (lane.inflight?.fromSpool) this.spool.ack(lane.category);
    lane.inflight = undefined;
  }

  private putBack(lane: Lane): void {
    const f = lane.inflight;
    lane.inflight = undefined;
    if (!f) return;
    if (f.fromSpool) {
      this.spool.release(lane.category);
    } else {
      lane.memory.unshift(f.batch);
      lane.memoryPoints += f.batch.points;
    }
  }

  /** Exponential backoff with jitter: 1 s doubling to 60 s, each wait between half and all of that. */
  private retryLater(lane: Lane): void {
    const ceiling = Math.min(this.maxRetryMs, FIRST_RETRY_MS * 2 ** Math.min(lane.failures - 1, 16));
    const ms = ceiling / 2 + (Math.random() * ceiling) / 2;
    lane.retry = setTimeout(() => {
      lane.retry = undefined;
      this.cut(lane);
      this.drain(lane);
    }, ms);
    lane.retry.unref();
  }

  private async post(category: Category, batch: Batch): Promise<Outcome> {
    try {
      const res = await fetch(`http://${this.apiServer}${ENDPOINTS[category]}`, {
        method: 'POST',
        body: batch.body,
        signal: AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.abort.signal]),
      });
      const answer = await res.text(); // read whole so the connection is reused
      if (res.ok) return { kind: 'sent' };
      const why = `HTTP ${res.status}`;
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        const text = answer.replace(/\s+/g, ' ').trim();
        return { kind: 'rejected', why: `${why}: ${text.length > ANSWER_CHARS ? `${text.slice(0, ANSWER_CHARS)}...` : text}` };
      }
      return { kind: 'retry', why };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      return { kind: 'retry', why: e.cause ? `${e.message}: ${e.cause.code ?? e.cause.message}` : e.message };
    }
  }
}

/** Tells DataKit why we could not start; never throws. */
export async function reportLastError(apiServer: string, message: string, timeoutMs = 3000): Promise<void> {
  // fetch's sockets and AbortSignal.timeout do not keep the process alive:
  // without this timer a slow DataKit would let the process exit mid-request.
  const keepAlive = setTimeout(() => {}, timeoutMs + 100);
  try {
    const res = await fetch(`http://${apiServer}/v1/lasterror`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'ebpf', err_content: message }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
  } catch {
    /* nothing more we can do: the error is in our own log already */
  } finally {
    clearTimeout(keepAlive);
  }
}

/**
 * The longest wait between retries, from DATAKIT_EBPF_RETRY_MAX_MS: a knob for
 * tests, which cannot wait a minute for DataKit's return to be noticed.
 */
function retryMaxFromEnv(env: Record<string, string | undefined>): number | undefined {
  const v = env.DATAKIT_EBPF_RETRY_MAX_MS;
  return v && /^\d+$/.test(v) && Number(v) > 0 ? Number(v) : undefined;
}

/** Where points go: DataKit, or stdout; every line carries `commonTags`. */
export function createOutput(
  config: Pick<Config, 'apiServer' | 'bufferDir' | 'bufferMaxBytes'>,
  commonTags: Readonly<Record<string, string>>,
  env: Record<string, string | undefined> = process.env,
): Output {
  const encoder = new LineEncoder(commonTags);
  if (!config.apiServer) return new StdoutOutput(encoder);
  return new DataKitOutput(
    config.apiServer,
    { bufferDir: config.bufferDir, bufferMaxBytes: config.bufferMaxBytes, maxRetryMs: retryMaxFromEnv(env) },
    encoder,
  );
}
