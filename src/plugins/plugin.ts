import type { ContainerLookup } from '../enrich/containers';
import type { Category, Point } from '../output/point';
import type { LossWarnings } from './loss';

/**
 * Where event plugins (bash, and httpflow and dnsflow a point per request)
 * hand over what they see, as it happens. The output adds host, service and
 * the user's tags; a tags object is not changed once handed over (a series
 * may reuse one).
 */
export interface Sink {
  points(points: Point[]): void;
}

/** A source of points: loads its eBPF programs on start, reports on collect. */
export interface Plugin {
  readonly name: string;
  readonly category: Category;
  /** Loads and attaches; throws when the kernel lacks what it needs. */
  start(sink: Sink): void;
  /** Points for the interval that just ended (called once per interval); event plugins also emit as they go. */
  collect(now: bigint): Point[];
  /** Counters for the collector's log and metrics: events, losses, table sizes. No side effects. */
  stats(): Record<string, number>;
  /** Which of stats() mean lost data: warned about by the collector when they grow. */
  readonly losses?: LossWarnings;
  /** Names in stats() that are current sizes, not running totals. */
  readonly gauges?: ReadonlySet<string>;
  /** The kernel hooks it runs on, by what they observe (e.g. bytes: 'fentry'); for the start-up log. */
  hooks?(): Record<string, string>;
  /** Detaches everything; safe to call twice. */
  stop(): void;
}

export interface PluginOptions {
  includeLoopback: boolean;
  /** container_id of a flow's process (absent for host processes). */
  containers?: ContainerLookup;
}

/**
 * Points an event plugin hands to the output at a time while it reads a
 * drained chunk: points held until the end of a large chunk would outlive the
 * young generation's collections, which then copy them.
 */
export const EMIT_GROUP = 256;

/** Points handed to `emit` EMIT_GROUP at a time as they are made; the rest at end(). */
export class PointGroups {
  private points: Point[] = [];

  constructor(private readonly emit: (points: Point[]) => void) {}

  push(p: Point): void {
    this.points.push(p);
    if (this.points.length >= EMIT_GROUP) this.end();
  }

  end(): void {
    if (!this.points.length) return;
    this.emit(this.points);
    this.points = [];
  }
}
