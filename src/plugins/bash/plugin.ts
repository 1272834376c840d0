// bash (SPEC §4.4): every line typed into an interactive bash, as a log point.
import { BpfMap, BpfObject, Link, RingBuffer, forEachRecord } from '../../bpf/native';
import { Containers } from '../../enrich/containers';
import { ProcessUsers } from '../../enrich/users';
import { log } from '../../log';
import type { Point } from '../../output/point';
import { rfc3339, wallClock } from '../../timefmt';
import { LossWarnings } from '../loss';
import { followExecs } from '../process-scan';
import type { Sink, Plugin } from '../plugin';
import { DRAIN_TICK_MS, every, SECOND_TICK_MS } from '../../ticker';
import { BashDiscovery, ProbeTarget } from './discovery';
import { BASH_CONFIG, BASH_COUNTER_NAMES, BASH_EVENT, decodeBashEvent, BashLine } from './decode';

export function bashPoint(l: BashLine, user: string, wallNs: bigint, containerId?: string): Point {
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
  // a shell in a container (extension tag, as on flows)
  if (containerId) point.tags.container_id = containerId;
  return point;
}

export class BashPlugin implements Plugin {
  readonly name = 'bash';
  readonly category = 'logging' as const;
  private obj?: BpfObject;
  private ring?: RingBuffer;
  private execs?: RingBuffer;
  private counters?: BpfMap;
  /** Stop the periodic drain of lines and the scan of processes. */
  private stopTicking: (() => void)[] = [];
  private discovery?: BashDiscovery;
  private readonly links = new Map<string, Link>();
  /** The kernel keeps only lines of processes named bash: needed once a shared libreadline is probed. */
  private kernelFilter = false;
  private readonly users = new ProcessUsers();
  private readonly containers = new Containers();
  private notBash = 0;
  private emit: (points: Point[]) => void = () => {};
  private reported = 0;
  private truncated = 0;
  readonly losses = new LossWarnings('bash', {
    ringbuf_full: 'command lines lost: ring buffer full',
    read_failed: 'command lines that could not be read from bash',
  });
  readonly gauges = new Set(['files_probed']);
  attached: string[] = [];

  start(sink: Sink): void {
    this.emit = (points) => sink.points(points);
    const host = BashDiscovery.hostTargets();
    const obj = BpfObject.open('bash');
    this.obj = obj;
    try {
      const cfg = Buffer.alloc(BASH_CONFIG.size);
      // fixed at load: a libreadline probed later (in a container) is filtered here instead
      this.kernelFilter = host.some((t) => t.shared);
      cfg.writeUInt32LE(this.kernelFilter ? 1 : 0, BASH_CONFIG.only_bash);
      obj.setConfig(cfg);
      obj.load();
      this.counters = obj.map('counters');
      this.ring = new RingBuffer(obj.map('lines'), (buf, bytes) => this.onLines(buf, bytes), 256 * 1024);
      let started = false;
      this.discovery = new BashDiscovery(
        {
          attach: (t) => this.attach(t, started),
          detach: (t) => this.detach(t),
        },
        { onBash: (pid) => this.users.remember(pid), onGone: (pid) => this.users.forget(pid) },
      );
      this.discovery.scan();
      // told of each bash exec: probed before it reads its first line
      this.execs = followExecs(obj, 'on_exec', 'bash_execs', 16 * 1024, () => this.discovery);
      if (!this.attached.length) {
        throw new Error(host.length ? 'could not attach to readline in any bash' : 'no bash binary with readline found');
      }
      started = true;
    } catch (err) {
      this.stop();
      throw err;
    }
    log.info(`bash: watching readline in ${this.attached.join(', ')}`);
    this.stopTicking = [
      every(DRAIN_TICK_MS, () => {
        this.ring?.drain();
        this.execs?.drain();
      }),
      // running processes looked at for bash (in containers too), and the host's bash for a new file
      every(SECOND_TICK_MS, () => this.discovery?.scan()),
    ];
  }

  private attach(t: ProbeTarget, log1: boolean): boolean {
    try {
      // by inode: bash processes started before us are covered too
      this.links.set(t.key, this.obj!.attachUprobe('on_readline_return', { binary: t.path, func: 'readline', retprobe: true }));
    } catch (err) {
      log.warn(`bash: cannot attach to readline in ${t.label}: ${(err as Error).message.split('\n')[0]}`);
      return false;
    }
    this.attached.push(t.label);
    if (log1) log.info(`bash: watching readline in ${t.label}`);
    return true;
  }

  private detach(t: ProbeTarget): void {
    this.obj?.detach(this.links.get(t.key));
    this.links.delete(t.key);
    const i = this.attached.indexOf(t.label); // an upgraded file and its successor may share a label
    if (i >= 0) this.attached.splice(i, 1);
    log.info(`bash: no longer watching ${t.label}: no process uses it`);
  }

  private onLines(buf: Buffer, bytes: number): void {
    const points: Point[] = [];
    forEachRecord(buf, bytes, (off, len) => {
      if (len < BASH_EVENT.line) return;
      const l = decodeBashEvent(buf, off);
      if (!l.line) return; // empty lines are not reported
      // a shared libreadline serves other programs too (python, gdb…): only bash's lines count
      if (!this.kernelFilter && this.discovery?.anyShared() && !this.discovery.isBash(l.pid)) {
        this.notBash++;
        return;
      }
      if (l.truncated) this.truncated++;
      points.push(bashPoint(l, this.users.nameOf(l.pid, l.uid), wallClock.toWallNs(l.monotonicNs), this.containers.ofPid(l.pid)));
    });
    this.reported += points.length;
    if (points.length) this.emit(points);
  }

  collect(): Point[] {
    this.ring?.drain();
    return [];
  }

  stats(): Record<string, number> {
    return {
      ...(this.counters?.namedCounters(BASH_COUNTER_NAMES) ?? {}),
      reported: this.reported,
      truncated: this.truncated,
      not_bash: this.notBash,
      files_probed: this.links.size,
      ...(this.discovery?.counts ?? {}),
    };
  }

  hooks(): Record<string, string> {
    return { bash: 'uretprobe' };
  }

  stop(): void {
    for (const stop of this.stopTicking) stop();
    this.stopTicking = [];
    this.discovery = undefined;
    this.links.clear();
    this.ring?.close();
    this.ring = undefined;
    this.execs?.close();
    this.execs = undefined;
    this.obj?.close();
    this.obj = undefined;
  }
}
