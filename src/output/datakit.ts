// DataKit's HTTP API (SPEC §3): network points to /v1/write/network,
// logging points to /v1/write/logging, fatal start-up errors to /v1/lasterror.
import { log } from '../log';
import { LineEncoder } from './lineprotocol';
import type { Category, Output, OutputStats, Point } from './point';
import { StdoutOutput } from './stdout';

const ENDPOINTS: Record<Category, string> = {
  network: '/v1/write/network?input=ebpf-net',
  logging: '/v1/write/logging?input=ebpf-bash',
};

export interface DataKitOptions {
  /** Points kept for retry while DataKit is unreachable; the oldest go first. */
  maxQueuedPoints?: number;
  /** Points per post at most; a full batch is posted at once. */
  batchPoints?: number;
  timeoutMs?: number;
}

export class DataKitOutput implements Output {
  private queues: Record<Category, string[]> = { network: [], logging: [] };
  private readonly maxQueued: number;
  private readonly batchLines: number;
  private readonly timeoutMs: number;
  private failing = false;
  sent = 0;
  failed = 0;
  dropped = 0;

  constructor(
    private readonly apiServer: string,
    opts: DataKitOptions = {},
    private readonly encoder: LineEncoder = new LineEncoder({}),
  ) {
    this.maxQueued = opts.maxQueuedPoints ?? 100_000;
    this.batchLines = opts.batchPoints ?? 10_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  write(category: Category, points: Point[]): void {
    const q = this.queues[category];
    for (const p of points) q.push(this.encoder.encode(p));
    this.trim(category);
    // under load, post as soon as a batch is ready rather than once a second
    if (q.length >= this.batchLines && !this.failing) void this.flush();
  }

  private inflight?: Promise<void>;

  /** One flush at a time: a second caller waits for the one in flight. */
  flush(): Promise<void> {
    this.inflight ??= this.post().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Posts what is queued, a batch at a time, until the queues are empty or a post fails. */
  private async post(): Promise<void> {
    for (const category of Object.keys(ENDPOINTS) as Category[]) {
      while (this.queues[category].length) {
        // the batch leaves the queue while in flight: drops meanwhile take only unsent points
        const batch = this.queues[category].splice(0, this.batchLines);
        try {
          const res = await fetch(`http://${this.apiServer}${ENDPOINTS[category]}`, {
            method: 'POST',
            body: batch.join('\n'),
            signal: AbortSignal.timeout(this.timeoutMs),
          });
          await res.arrayBuffer(); // drain so the connection is reused
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          this.sent += batch.length;
          if (this.failing) log.info(`datakit: ${this.apiServer} reachable again`);
          this.failing = false;
        } catch (err) {
          // back to the front, for the next flush, within the bound; warn once per failure streak
          this.failed += batch.length;
          this.queues[category] = batch.concat(this.queues[category]);
          this.trim(category);
          if (!this.failing) log.warn(`datakit: post to ${this.apiServer} failed: ${(err as Error).message}; will retry`);
          this.failing = true;
          break;
        }
      }
    }
  }

  /** Drops the oldest points beyond the bound, counting them. */
  private trim(category: Category): void {
    const q = this.queues[category];
    const excess = q.length - this.maxQueued;
    if (excess > 0) {
      q.splice(0, excess);
      this.dropped += excess;
    }
  }

  close(): Promise<void> {
    return this.flush();
  }

  stats(): OutputStats {
    return { sent: this.sent, failed: this.failed, dropped: this.dropped };
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

/** Where points go: DataKit, or stdout; every line carries `commonTags`. */
export function createOutput(apiServer: string | undefined, commonTags: Readonly<Record<string, string>>): Output {
  const encoder = new LineEncoder(commonTags);
  return apiServer ? new DataKitOutput(apiServer, {}, encoder) : new StdoutOutput(encoder);
}
