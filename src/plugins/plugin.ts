import type { Category, Point } from '../output/point';

/** Hands points to the collector as they happen (event plugins: bash, dnsflow, httpflow). */
export type Emit = (points: Point[]) => void;

/** A source of points: loads its eBPF programs on start, reports on collect. */
export interface Plugin {
  readonly name: string;
  readonly category: Category;
  /** Loads and attaches; throws when the kernel lacks what it needs. */
  start(emit: Emit): void;
  /** Points for the interval that just ended (called once per interval); event plugins also emit as they go. */
  collect(now: bigint): Point[];
  /** Counters for the collector's log: events, losses, table sizes. */
  stats(): Record<string, number>;
  /** Detaches everything; safe to call twice. */
  stop(): void;
}

export interface PluginOptions {
  includeLoopback: boolean;
}
