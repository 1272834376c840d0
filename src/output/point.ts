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
  /** Unix time in nanoseconds. */
  time: bigint;
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
  /** Points handed on, points whose sending failed (and will be retried), points given up on. */
  stats(): OutputStats;
}

export interface OutputStats {
  sent: number;
  failed: number;
  dropped: number;
}
