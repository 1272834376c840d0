// Lost events must never be silent: a counter of losses that grew since the
// last interval is logged as a warning, naming what was lost.
import { log } from '../log';

export class LossWarnings {
  private readonly seen = new Map<string, number>();

  /** @param losses counter name → what a unit of it means ("DNS packets lost: ring buffer full") */
  constructor(
    private readonly plugin: string,
    private readonly losses: Record<string, string>,
  ) {}

  check(counts: Record<string, number>): void {
    for (const [name, meaning] of Object.entries(this.losses)) {
      const now = counts[name] ?? 0;
      const grew = now - (this.seen.get(name) ?? 0);
      if (grew > 0) log.warn(`${this.plugin}: ${name} +${grew} (${meaning})`);
      this.seen.set(name, now);
    }
  }
}
