// Keeps a local copy of one resource: list once, then watch from the list's
// resourceVersion, and watch again from the last version seen when the server
// ends the stream. Only an expired version (410 Gone) costs a new list; errors
// are retried with exponential backoff. Nothing is polled.
import { log } from '../../log';
import { KubeApi, KubeApiError, KubeObject } from './api';

/** Where a reflector puts what it learns. */
export interface ReflectorStore {
  /** The whole collection, after a (re)list: replaces everything held before. */
  replace(items: KubeObject[]): void;
  upsert(obj: KubeObject): void;
  remove(obj: KubeObject): void;
}

export interface ReflectorOptions {
  /** Page size of lists: bounds the memory a big cluster costs at once. */
  pageSize?: number;
  /** Server-side length of one watch, in seconds; randomised so watches do not renew in step. */
  watchSeconds?: () => number;
  /** Backoff after an error: first and largest delay, in ms. */
  backoffMs?: [number, number];
}

/** client-go's range: each watch lasts 5–10 minutes. */
const defaultWatchSeconds = (): number => 300 + Math.floor(Math.random() * 300);

export class Reflector {
  private resourceVersion = '';
  private stopped = false;
  private abort?: AbortController;
  private wake?: () => void;
  private running?: Promise<void>;
  private lastError?: string;
  /** True once the first list is in the store. */
  synced = false;
  readonly counts = { lists: 0, relists_gone: 0, watches: 0, events: 0, bookmarks: 0, errors: 0 };

  constructor(
    private readonly api: KubeApi,
    readonly path: string,
    private readonly store: ReflectorStore,
    private readonly opts: ReflectorOptions = {},
    private readonly onSynced: () => void = () => {},
  ) {}

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    await this.running;
  }

  private async run(): Promise<void> {
    const [firstBackoff, maxBackoff] = this.opts.backoffMs ?? [1000, 30_000];
    let backoff = firstBackoff;
    while (!this.stopped) {
      const began = Date.now();
      try {
        if (!this.resourceVersion) await this.list();
        if (this.stopped) break;
        await this.watch();
        // a stream the server ended at once (or that carried nothing) is not progress
        if (Date.now() - began < 1000) throw new KubeApiError(`watch ${this.path}: ended at once`, 0);
        backoff = firstBackoff;
      } catch (err) {
        if (this.stopped) break;
        if (err instanceof KubeApiError && err.gone) {
          // the version we hold was compacted away: start over with a fresh list
          this.counts.relists_gone++;
          this.resourceVersion = '';
          log.debug(`k8s: ${this.path}: resourceVersion expired, listing again`);
          continue;
        }
        this.counts.errors++;
        const delay = Math.round(backoff * (0.5 + Math.random() * 0.5));
        // an outage is said once (and when its cause changes), not at every retry
        const message = (err as Error).message;
        if (message !== this.lastError) log.warn(`k8s: ${this.path}: ${message}; retrying with backoff`);
        else log.debug(`k8s: ${this.path}: ${message}; retrying in ${delay} ms`);
        this.lastError = message;
        await this.sleep(delay);
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
  }

  private async list(): Promise<void> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let version = '';
    do {
      const page = await this.api.list(this.path, { limit: this.opts.pageSize ?? 500, continue: cont });
      for (const item of page.items) items.push(item);
      cont = page.continue;
      version = page.resourceVersion;
    } while (cont && !this.stopped);
    this.counts.lists++;
    this.recovered();
    this.store.replace(items);
    this.resourceVersion = version;
    if (!this.synced) {
      this.synced = true;
      this.onSynced();
    }
  }

  private async watch(): Promise<void> {
    this.abort = new AbortController();
    this.counts.watches++;
    try {
      await this.api.watch(
        this.path,
        {
          resourceVersion: this.resourceVersion,
          timeoutSeconds: (this.opts.watchSeconds ?? defaultWatchSeconds)(),
          signal: this.abort.signal,
        },
        (ev) => {
          this.recovered();
          if (ev.type === 'BOOKMARK') this.counts.bookmarks++;
          else {
            this.counts.events++;
            if (ev.type === 'DELETED') this.store.remove(ev.object);
            else this.store.upsert(ev.object);
          }
          // every event, bookmarks included, moves the point a new watch resumes from
          const rv = ev.object.metadata?.resourceVersion;
          if (typeof rv === 'string' && rv) this.resourceVersion = rv;
        },
      );
    } finally {
      this.abort = undefined;
    }
  }

  /** The API answered again after an error: say so once. */
  private recovered(): void {
    if (this.lastError === undefined) return;
    log.info(`k8s: ${this.path}: following again`);
    this.lastError = undefined;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }
}
