// A measurement point as every plugin produces it and every output consumes it.

/** A float field; plain `number` fields are integers (line protocol `i` suffix). */
export interface FloatValue {
  float: number;
}

export type FieldValue = number | bigint | string | boolean | FloatValue;

export interface Point {
  measurement: string;
  /** Tags with an empty or undefined value are left out when encoded. */
  tags: Record<string, string | undefined>;
  fields: Record<string, FieldValue>;
  /** Unix time in nanoseconds, or as seconds and nanoseconds (cheaper to make for a point per event). */
  time: bigint | WallTime;
}

/** A Unix time as whole seconds and the nanoseconds within the second (0 to 999,999,999). */
export interface WallTime {
  sec: number;
  nsec: number;
}

/** A point's time as one integer of nanoseconds. */
export function unixNs(t: Point['time']): bigint {
  return typeof t === 'bigint' ? t : BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

/** DataKit data category: decides the HTTP endpoint a point goes to. */
export type Category = 'network' | 'logging';

export interface Output {
  /** Queue points (encoded with the common tags); never throws for transport errors (they are counted). */
  write(category: Category, points: Point[]): void;
  /** Send what is queued now. */
  flush(): Promise<void>;
  /** Flush and release resources. */
  close(): Promise<void>;
  /** What became of the points so far. */
  stats(): OutputStats;
}

/** Counters of an output; those that do not apply to it are 0. */
export interface OutputStats {
  /** Points written to stdout, or accepted by DataKit. */
  sent: number;
  /** Posts to DataKit that failed (unreachable, timeout, 5xx, 408, 429): their points wait and are retried. */
  failed: number;
  /** Points lost because stdout was closed. */
  dropped: number;
  /** Points dropped, oldest first, because the buffer reached --buffer-max-size (or could not be written). */
  dropped_full: number;
  /** Points in batches DataKit refused (4xx other than 408 and 429): dropped, never retried. */
  rejected: number;
  /** Damaged stretches of the buffer dir skipped (each one batch or more; their points are not known). */
  corrupt: number;
  /** Points line protocol cannot carry (an encoder refusal): each skipped alone. */
  unencodable: number;
  /** Points waiting for DataKit now, in memory or in the buffer dir (a gauge). */
  buffered: number;
}
