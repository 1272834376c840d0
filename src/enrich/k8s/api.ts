// A small Kubernetes API client: paginated lists and watch streams, nothing else.
//
// Hand-written on node:https rather than @kubernetes/client-node: measured here,
// loading that library adds ~70 MB of resident memory and ~0.4 s of start-up
// (its generated API models), its current major needs Node 22, and its
// informer stops for good on the first network error. The collector only
// needs GET with a bearer token over verified TLS.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

export interface KubeApiOptions {
  /** https://host:port of the API server (http:// for e.g. `kubectl proxy`). */
  url: string;
  /** File holding the bearer token, re-read so rotated service-account tokens keep working. */
  tokenPath?: string;
  /** The token itself; used when no tokenPath is set. */
  token?: string;
  /** PEM CA bundle the server's certificate must chain to (default: the system's). */
  ca?: string | Buffer;
  /** Accept any server certificate. Off unless explicitly asked for. */
  insecureSkipTlsVerify?: boolean;
  /** A watch still open this long after its timeout is a dead connection (default 60 s). */
  stallGraceSeconds?: number;
  /** Longest line a watch stream may send (default MAX_WATCH_LINE_BYTES). */
  maxWatchLineBytes?: number;
}

/** An object as the API sends it; only metadata is looked at here. */
export interface KubeObject {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
  [k: string]: unknown;
}

export interface KubeList {
  items: KubeObject[];
  resourceVersion: string;
  continue?: string;
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; reason?: string; message?: string };
}

/** A failed request: HTTP status (or the code of a watch ERROR event) and the server's reason. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    // server texts and stream excerpts may hold newlines: a log line stays one line
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
  }
  /** 410 Gone: the resourceVersion asked for is too old; only a fresh list helps. */
  get gone(): boolean {
    return this.status === 410;
  }
}

/** A watch stream's line past this without a newline is dropped, and the watch with it. */
export class WatchLineTooLongError extends KubeApiError {}

/**
 * Longest watch event accepted: etcd refuses objects over 1.5 MiB, so a line
 * ten times that is a broken stream, and holding more would cost unbounded memory.
 */
export const MAX_WATCH_LINE_BYTES = 16 * 1024 * 1024;

const WATCH_TYPES = new Set(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']);

/**
 * One watch event from one line of the stream. Anything but an event object
 * (bad JSON, another shape) is a KubeApiError, as is an ERROR event (with the
 * code of its Status, 410 for an expired resourceVersion).
 */
export function decodeWatchEvent(line: string, path: string): WatchEvent {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch (err) {
    throw new KubeApiError(`watch ${path}: not JSON: ${(err as Error).message}`, 0);
  }
  const type = isObject(ev) ? ev.type : undefined;
  const object = isObject(ev) ? ev.object : undefined;
  if (typeof type !== 'string' || !WATCH_TYPES.has(type) || !isObject(object)) {
    throw new KubeApiError(`watch ${path}: not a watch event: ${line.slice(0, 80)}`, 0);
  }
  if (type === 'ERROR') {
    const text = (v: unknown, otherwise: string) => (typeof v === 'string' ? v : otherwise);
    const code = Number.isInteger(object.code) ? (object.code as number) : 0;
    throw new KubeApiError(`watch ${path}: ${text(object.reason, 'error')} ${text(object.message, '')}`.trim(), code);
  }
  return ev as WatchEvent;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A line's bytes kept past this size are let go once the line ends, not kept for the next. */
const KEEP_LINE_BUFFER = 64 * 1024;

/**
 * Splits a watch stream (newline-delimited JSON, in chunks cut anywhere) into
 * events. Bytes are kept only until their line ends, in one buffer however
 * small the chunks, and a line longer than `maxLineBytes` is an error rather
 * than unbounded memory.
 */
export class WatchStreamDecoder {
  /** The start of the unfinished line: heldBytes of it. */
  private held = Buffer.alloc(0);
  private heldBytes = 0;

  constructor(
    private readonly path: string,
    private readonly maxLineBytes = MAX_WATCH_LINE_BYTES,
  ) {}

  /**
   * Hands `onEvent` the events of the lines `chunk` completes, in order; throws
   * a KubeApiError at the first line decodeWatchEvent refuses (after the events
   * before it), or when a line passes maxLineBytes.
   */
  push(chunk: Buffer, onEvent: (ev: WatchEvent) => void): void {
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf(0x0a, start)) >= 0) {
      const rest = chunk.subarray(start, nl);
      start = nl + 1;
      let bytes = rest;
      if (this.heldBytes) {
        this.append(rest);
        bytes = this.held.subarray(0, this.heldBytes);
      } else {
        this.check(rest.length);
      }
      const line = bytes.toString('utf8').trim();
      this.heldBytes = 0;
      if (this.held.length > KEEP_LINE_BUFFER) this.held = Buffer.alloc(0);
      if (line) onEvent(decodeWatchEvent(line, this.path));
    }
    if (start < chunk.length) this.append(chunk.subarray(start));
  }

  /** Adds to the unfinished line, growing its buffer by doubling. */
  private append(part: Buffer): void {
    const total = this.heldBytes + part.length;
    this.check(total);
    if (total > this.held.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(total, this.held.length * 2, 4096), this.maxLineBytes));
      this.held.copy(grown, 0, 0, this.heldBytes);
      this.held = grown;
    }
    part.copy(this.held, this.heldBytes);
    this.heldBytes = total;
  }

  /** Refuses a line of `bytes` past the bound, letting go of what was kept of it. */
  private check(bytes: number): void {
    if (bytes <= this.maxLineBytes) return;
    this.held = Buffer.alloc(0);
    this.heldBytes = 0;
    throw new WatchLineTooLongError(`watch ${this.path}: a line passed ${this.maxLineBytes} bytes without ending: watch dropped`, 0);
  }
}

/** Tokens are re-read at most this often (kubelet rotates them hourly or so). */
const TOKEN_REREAD_MS = 60_000;
/** A list or the headers of a watch taking longer than this is abandoned. */
const REQUEST_TIMEOUT_MS = 30_000;

export class KubeApi {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private token?: string;
  private tokenReadAt = -Infinity;
  /** Requests made, by kind: what the API server sees from us. */
  readonly requests = { list: 0, watch: 0 };
  readonly failures = { list: 0, watch: 0 };
  /** Watches dropped because a line passed maxWatchLineBytes. */
  watchLinesTooLong = 0;

  constructor(private readonly opts: KubeApiOptions) {
    this.base = new URL(opts.url);
    const tls = this.base.protocol === 'https:';
    this.transport = tls ? https : http;
    this.agent = tls
      ? new https.Agent({ keepAlive: true, ca: opts.ca, rejectUnauthorized: !opts.insecureSkipTlsVerify })
      : new http.Agent({ keepAlive: true });
  }

  private bearer(): string | undefined {
    if (!this.opts.tokenPath) return this.opts.token;
    const now = Date.now();
    if (now - this.tokenReadAt > TOKEN_REREAD_MS) {
      try {
        this.token = fs.readFileSync(this.opts.tokenPath, 'utf8').trim();
        this.tokenReadAt = now;
      } catch (err) {
        // keep the last good token; say why the file could not be read
        if (this.token === undefined) throw new KubeApiError(`cannot read token ${this.opts.tokenPath}: ${(err as Error).message}`, 0);
      }
    }
    return this.token;
  }

  private request(path: string, query: Record<string, string | number | boolean | undefined>, signal?: AbortSignal) {
    const url = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    const token = this.bearer();
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'datakit-ebpf' };
    if (token) headers.authorization = `Bearer ${token}`;
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = this.transport.request(url, { agent: this.agent, headers, signal }, resolve);
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${url.host} in ${REQUEST_TIMEOUT_MS / 1000} s`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Reads a non-2xx answer into an error carrying the API's Status message. */
  private static async failure(res: http.IncomingMessage, what: string): Promise<KubeApiError> {
    let body = '';
    res.setEncoding('utf8');
    try {
      for await (const chunk of res) if (body.length < 4096) body += chunk;
    } catch {
      /* the status code says enough */
    }
    let detail = res.statusMessage ?? '';
    try {
      const status = JSON.parse(body) as { message?: string };
      if (status.message) detail = status.message;
    } catch {
      /* not a Status object */
    }
    return new KubeApiError(`${what}: HTTP ${res.statusCode} ${detail}`.trim(), res.statusCode ?? 0);
  }

  /** One page of a list. */
  async list(path: string, opts: { limit?: number; continue?: string } = {}): Promise<KubeList> {
    this.requests.list++;
    try {
      const res = await this.request(path, { limit: opts.limit, continue: opts.continue });
      if (res.statusCode !== 200) throw await KubeApi.failure(res, `list ${path}`);
      res.setEncoding('utf8');
      let body = '';
      for await (const chunk of res) body += chunk;
      const parsed = JSON.parse(body) as { items?: KubeObject[]; metadata?: { resourceVersion?: string; continue?: string } };
      return {
        items: parsed.items ?? [],
        resourceVersion: parsed.metadata?.resourceVersion ?? '',
        continue: parsed.metadata?.continue || undefined,
      };
    } catch (err) {
      this.failures.list++;
      throw err;
    }
  }

  /**
   * Watches from `resourceVersion` until the server ends the stream (after
   * `timeoutSeconds`), `signal` aborts it, or `onEvent` throws. ERROR events
   * become a KubeApiError (410 for an expired resourceVersion).
   */
  async watch(
    path: string,
    opts: { resourceVersion: string; timeoutSeconds: number; signal?: AbortSignal },
    onEvent: (ev: WatchEvent) => void,
  ): Promise<void> {
    this.requests.watch++;
    try {
      const res = await this.request(
        path,
        { watch: 1, resourceVersion: opts.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: opts.timeoutSeconds },
        opts.signal,
      );
      if (res.statusCode !== 200) throw await KubeApi.failure(res, `watch ${path}`);
      // events may go quiet for minutes: only the server's timeout ends a healthy stream, and
      // a stream that outlives it by a minute is a dead connection nobody told us about
      res.socket.setTimeout(0);
      const grace = this.opts.stallGraceSeconds ?? 60;
      const stalled = setTimeout(() => res.destroy(new Error('no end from the server: connection lost')), (opts.timeoutSeconds + grace) * 1000);
      stalled.unref();
      res.on('close', () => clearTimeout(stalled));
      const decoder = new WatchStreamDecoder(path, this.opts.maxWatchLineBytes);
      for await (const chunk of res as AsyncIterable<Buffer>) decoder.push(chunk, onEvent);
      if (!res.complete) throw new KubeApiError(`watch ${path}: connection lost`, 0);
    } catch (err) {
      if (!opts.signal?.aborted) this.failures.watch++;
      // leaving the loop destroyed the response: the reflector watches again
      if (err instanceof WatchLineTooLongError) this.watchLinesTooLong++;
      throw err;
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
