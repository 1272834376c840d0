// The collector: runs the enabled plugins, reports once per interval, flushes
// outputs, and shuts down cleanly on SIGINT/SIGTERM.
import type { Config } from './config';
import { recordFailures } from './bpf/native';
import { log } from './log';
import type { Output, Point } from './output/point';
import { LossWarnings } from './plugins/loss';
import type { Plugin } from './plugins/plugin';
import { StartupError } from './runtime';
import { WallClock, wallClock } from './timefmt';
import { every, SECOND_TICK_MS } from './ticker';

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** The tags every point carries: the user's, then host and service. */
export function commonTags(config: Config): Record<string, string> {
  return { ...config.tags, host: config.hostname, service: config.service };
}

/** The output's counters that mean lost points, and what a unit of each means. */
const OUTPUT_LOSSES: Record<string, string> = {
  dropped: 'points lost: stdout closed',
  dropped_full: 'oldest waiting points dropped: buffer full (--buffer-max-size)',
  rejected: 'points in batches DataKit refused',
  corrupt: 'damaged stretches of the buffer dir skipped',
  unencodable: 'points line protocol cannot carry (a name or value it refuses): skipped',
};

export class Collector {
  private timer?: NodeJS.Timeout;
  private stopFlushing?: () => void;
  private pending = false;
  private readonly started: Plugin[] = [];
  private stopping?: Promise<void>;
  private recordFailuresSeen = 0;
  private readonly outputLosses = new LossWarnings('output', OUTPUT_LOSSES);

  constructor(
    private readonly config: Config,
    private readonly plugins: Plugin[],
    private readonly output: Output,
    private readonly clock: WallClock = wallClock,
  ) {}

  /** Starts every plugin it can; a plugin whose hooks are missing is disabled with a warning. */
  start(): void {
    for (const p of this.plugins) {
      try {
        p.start({ points: (points) => this.emit(p, points) });
        this.started.push(p);
        log.info(`${p.name}: started`);
      } catch (err) {
        if (err instanceof StartupError) {
          this.stopStarted();
          throw err;
        }
        log.warn(`${p.name}: disabled: ${(err as Error).message.split('\n')[0]}`);
        log.debug(`${p.name}: ${(err as Error).message}`);
      }
    }
    if (!this.started.length) throw new Error('no plugin could start');
    const hooks = this.started.flatMap((p) => Object.entries(p.hooks?.() ?? {}));
    log.info(`hooks: ${hooks.map(([what, how]) => `${what}=${how}`).join(', ')}`);
    this.timer = setInterval(() => void this.report(), this.config.intervalMs);
    // points emitted between intervals (bash, dnsflow, httpflow) go out within a second
    this.stopFlushing = every(SECOND_TICK_MS, () => {
      this.followWallClock();
      if (!this.pending) return;
      this.pending = false;
      void this.output.flush();
    });
  }

  private emit(p: Plugin, points: Point[]): void {
    this.output.write(p.category, points);
    this.pending = true;
  }

  get running(): string[] {
    return this.started.map((p) => p.name);
  }

  /** The plugins that started. */
  get startedPlugins(): Plugin[] {
    return this.started;
  }

  /** Event timestamps follow a wall clock that was set (an NTP step) from the next points on. */
  private followWallClock(): void {
    const step = this.clock.refresh();
    if (step) log.info(`wall clock stepped by ${(Number(step) / 1e6).toFixed(0)} ms: timestamps follow it`);
  }

  /** Collects every plugin's interval, logs the counters and sends what is queued. */
  async report(): Promise<void> {
    this.collectAll();
    await this.output.flush();
  }

  private collectAll(): void {
    this.followWallClock();
    const now = nowNs();
    for (const p of this.started) {
      try {
        const points = p.collect(now);
        if (points.length) this.output.write(p.category, points);
        const stats = p.stats();
        p.losses?.check(stats);
        log.info(`${p.name}: ${points.length} points; ${Object.entries(stats).map(([k, v]) => `${k}=${v}`).join(' ')}`);
      } catch (err) {
        log.error(`${p.name}: collect failed: ${(err as Error).stack ?? err}`);
      }
    }
    const failed = recordFailures();
    if (failed.count > this.recordFailuresSeen) {
      log.warn(`${failed.count - this.recordFailuresSeen} kernel records lost since the last report: their handler failed (latest: ${failed.last})`);
    }
    this.recordFailuresSeen = failed.count;
    // what became of the points: sent, waiting, or lost (each loss a warning)
    const o = this.output.stats();
    this.outputLosses.check({ ...o });
    log.info(`output: ${Object.entries(o).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    const m = process.memoryUsage();
    const mb = (n: number) => (n / 2 ** 20).toFixed(0);
    log.info(`memory: rss=${mb(m.rss)}MB heap=${mb(m.heapUsed)}/${mb(m.heapTotal)}MB external=${mb(m.external)}MB buffers=${mb(m.arrayBuffers)}MB`);
  }

  /**
   * Reports what was collected, detaches everything and closes the output (which
   * sends what it can within its grace; DataKit's keeps the rest in its buffer dir).
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.timer) clearInterval(this.timer);
      this.stopFlushing?.();
      this.collectAll();
      this.stopStarted();
      await this.output.close();
    })();
    return this.stopping;
  }

  /**
   * After an error that leaves the state in doubt: detaches without
   * collecting again and flushes only what the output holds already.
   */
  abandon(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.stopFlushing?.();
    for (const p of this.started.reverse()) {
      try {
        p.stop();
      } catch (err) {
        log.error(`${p.name}: stop failed: ${(err as Error).message}`);
      }
    }
    this.started.length = 0;
    return this.output.flush();
  }

  /** Last started, first stopped: httpflow uses netflow's connection table. */
  private stopStarted(): void {
    for (const p of this.started.reverse()) p.stop();
    this.started.length = 0;
  }
}
