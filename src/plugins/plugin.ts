import type { Category, Point } from '../output/point';

/** A source of points: loads its eBPF programs on start, reports on collect. */
export interface Plugin {
  readonly name: string;
  readonly category: Category;
  /** Loads and attaches; throws when the kernel lacks what it needs. */
  start(): void;
  /** Points for the interval that just ended (called once per interval). */
  collect(now: bigint): Point[];
  /** Counters for the collector's log: events, losses, table sizes. */
  stats(): Record<string, number>;
  /** Detaches everything; safe to call twice. */
  stop(): void;
}

export interface PluginOptions {
  includeLoopback: boolean;
}
