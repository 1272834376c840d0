// bash (SPEC §4.4): every line typed into an interactive bash, as a log point.
import { BpfMap, BpfObject, RingBuffer, forEachRecord } from '../../bpf/native';
import { UserNames } from '../../enrich/users';
import { log } from '../../log';
import type { Point } from '../../output/point';
import { rfc3339, wallClock } from '../../timefmt';
import { LossWarnings } from '../loss';
import type { Sink, Plugin } from '../plugin';
import { readlineTargets } from './binaries';
import { BASH_CONFIG, BASH_COUNTER_NAMES, BASH_EVENT, decodeBashEvent, BashLine } from './decode';

const DRAIN_MS = 250;

export function bashPoint(l: BashLine, user: string, wallNs: bigint): Point {
  const cmd = l.line;
  const pid = String(l.pid);
  const point: Point = {
    measurement: 'bash',
    tags: { source: 'bash' },
    fields: {
      cmd,
      pid,
      user,
      message: `${rfc3339(Number(wallNs / 1_000_000n))} pid:\`${pid}\` user:\`${user}\` cmd:\`${cmd}\``,
    },
    time: wallNs,
  };
  // a line longer than the capture size keeps its start and says so
  if (l.truncated) point.fields.truncated = true;
  return point;
}

export class BashPlugin implements Plugin {
  readonly name = 'bash';
  readonly category = 'logging' as const;
  private obj?: BpfObject;
  private ring?: RingBuffer;
  private counters?: BpfMap;
  private timer?: NodeJS.Timeout;
  private readonly users = new UserNames();
  private emit: (points: Point[]) => void = () => {};
  private reported = 0;
  private truncated = 0;
  readonly losses = new LossWarnings('bash', {
    ringbuf_full: 'command lines lost: ring buffer full',
    read_failed: 'command lines that could not be read from bash',
  });
  attached: string[] = [];

  start(sink: Sink): void {
    this.emit = (points) => sink.points(points);
    const targets = readlineTargets();
    if (!targets.length) throw new Error('no bash binary with readline found');
    const obj = BpfObject.open('bash');
    this.obj = obj;
    try {
      const cfg = Buffer.alloc(BASH_CONFIG.size);
      cfg.writeUInt32LE(targets.some((t) => t.shared) ? 1 : 0, BASH_CONFIG.only_bash);
      obj.setConfig(cfg);
      obj.load();
      this.counters = obj.map('counters');
      this.ring = new RingBuffer(obj.map('lines'), (buf, bytes) => this.onLines(buf, bytes), 256 * 1024);
      for (const t of targets) {
        try {
          // by inode: bash processes started before us are covered too
          obj.attachUprobe('on_readline_return', { binary: t.path, func: 'readline', retprobe: true });
          this.attached.push(t.path);
        } catch (err) {
          log.warn(`bash: cannot attach to readline in ${t.path}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      if (!this.attached.length) throw new Error('could not attach to readline in any bash');
    } catch (err) {
      this.stop();
      throw err;
    }
    log.info(`bash: watching readline in ${this.attached.join(', ')}`);
    this.timer = setInterval(() => this.ring?.drain(), DRAIN_MS);
    this.timer.unref();
  }

  private onLines(buf: Buffer, bytes: number): void {
    const points: Point[] = [];
    forEachRecord(buf, bytes, (off, len) => {
      if (len < BASH_EVENT.line) return;
      const l = decodeBashEvent(buf, off);
      if (!l.line) return; // empty lines are not reported
      if (l.truncated) this.truncated++;
      points.push(bashPoint(l, this.users.nameOf(l.uid), wallClock.toWallNs(l.monotonicNs)));
    });
    this.reported += points.length;
    if (points.length) this.emit(points);
  }

  collect(): Point[] {
    this.ring?.drain();
    return [];
  }

  stats(): Record<string, number> {
    return { ...(this.counters?.namedCounters(BASH_COUNTER_NAMES) ?? {}), reported: this.reported, truncated: this.truncated };
  }

  hooks(): Record<string, string> {
    return { bash: 'uretprobe' };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.ring?.close();
    this.ring = undefined;
    this.obj?.close();
    this.obj = undefined;
  }
}
