// netflow (SPEC §4.1): TCP connection statistics per interval.
import { NetflowAggregator, Flow } from '../../aggregate/netflow';
import { InProgress } from '../../aggregate/in-progress';
import { BpfObject, BpfMap, Link, RingBuffer, forEachRecord } from '../../bpf/native';
import type { ContainerLookup } from '../../enrich/containers';
import type { DomainLookup } from '../../enrich/dns-cache';
import type { FlowTagger } from '../../enrich/k8s';
import { ipType } from '../../enrich/iptype';
import type { Point } from '../../output/point';
import type { Plugin, PluginOptions } from '../plugin';
import {
  CLOSE_EVENT,
  CONN_STATS,
  COUNTER_NAMES,
  decodeClosedSum,
  decodeConnStats,
  NETFLOW_CONTROL,
  encodeNetflowConfig,
  LOSS_COUNTERS,
  readU53,
  UDP_KEY,
} from './decode';
import { log } from '../../log';
import { StartupError } from '../../runtime';
import { LossWarnings } from '../loss';
import { attachByteHooks, BYTE_HOOKS, ByteHooks, HooksMode, missingFor, selectByteHooks, startCounting } from './hooks';
import { DRAIN_TICK_MS, every } from '../../ticker';

export interface NetflowOptions extends PluginOptions {
  /** Connections (and, separately, UDP flows) tracked at once in the kernel. */
  maxConnections: number;
  /** The cgroup v2 root: the UDP peer hooks attach there to see every process. */
  cgroup2?: () => string;
  /** Which hooks count bytes: `auto` takes the cheapest the kernel has. */
  hooks?: HooksMode;
  /** Names for dst_domain, learnt from DNS answers. */
  domains?: DomainLookup;
  /** Kubernetes tags for each end. */
  k8s?: FlowTagger;
}

/** A flow that goes on across a sweep holds two entries until the next one (its generations). */
const MAX_UDP_FLOWS = 131_072;

/** Map entries read per batch: a bounded buffer however many connections there are. */
const READ_CHUNK = 4096;

/**
 * UDP has no close: a flow leaves the kernel map at the first read after a
 * whole generation without a datagram (sweepUdp). Reads come once an interval,
 * and every 200 ms while the map is more than a quarter full, so that a churn of
 * one-off peers (a socket per DNS lookup, spoofed sources) never fills it.
 */
const UDP_SWEEP_FILL = 0.25;
/** The ring holds 4 MiB and a chunk is 1 MiB: this empties it even while it fills. */
const RING_CHUNKS_PER_REPORT = 64;
/** The kernel wakes us early once this much is queued. */
const WAKEUP_BYTES = 512 * 1024;


export function flowToPoint(f: Flow, time: bigint, domains?: DomainLookup, k8s?: FlowTagger, containers?: ContainerLookup): Point {
  const p: Point = {
    measurement: 'netflow',
    tags: {
      source: 'netflow',
      direction: f.direction,
      transport: f.transport,
      family: f.family,
      pid: String(f.pid),
      process_name: f.processName,
      src_ip: f.srcIp,
      src_port: f.srcPort,
      src_ip_type: ipType(f.srcIp),
      dst_ip: f.dstIp,
      dst_port: f.dstPort,
      dst_ip_type: ipType(f.dstIp),
      dst_domain: domains?.domainOf(f.dstIp),
      container_id: containers?.containerOf(f.pid, f.cgroupId),
    },
    fields: {
      bytes_read: f.bytesRead,
      bytes_written: f.bytesWritten,
      retransmits: f.retransmits,
      rtt: f.rtt,
      rtt_var: f.rttVar,
      tcp_established: f.tcpEstablished,
      tcp_closed: f.tcpClosed,
    },
    time,
  };
  k8s?.enrich(p.tags, f);
  return p;
}

export class NetflowPlugin implements Plugin {
  readonly name = 'netflow';
  readonly category = 'network' as const;
  private obj?: BpfObject;
  private conns?: BpfMap;
  private threadSocks?: BpfMap;
  private counters?: BpfMap;
  private orphans?: BpfMap;
  private udpFlows?: BpfMap;
  private control?: BpfMap;
  private closedSums: BpfMap[] = [];
  private summed = 0;
  /** UDP entries removed: their flow went idle, or went on in a newer generation. */
  private udpRemoved = 0;
  readonly losses = new LossWarnings('netflow', LOSS_COUNTERS);
  readonly gauges = new Set(['conns_remembered', 'udp_flows']);
  private ring?: RingBuffer;
  /** Stops the periodic drain of close events and the UDP fill check. */
  private stopTicking?: () => void;
  private udpFlowsMax = MAX_UDP_FLOWS;
  private udpSweeps = 0;
  /** The UDP generation datagrams count in. */
  private udpGen = 0;
  /** UDP byte hooks holding a generation (bpf/netflow.bpf.c, udp_in_progress). */
  private udpInProgress?: InProgress;
  /** Closes holding the epoch and the closed-series index (close_in_progress). */
  private closeInProgress?: InProgress;
  private udpSweepsPutOff = 0;
  private readonly retiredKeys = Buffer.alloc(READ_CHUNK * UDP_KEY.size);
  private readonly agg = new NetflowAggregator();
  private closeEvents = 0;
  private byteHooks?: ByteHooks;
  private udpPeerHooks = false;
  /** netflow's cgroup sendmsg hooks, until httpflow's egress program stashes send peers instead. */
  private udpSendLinks: Link[] = [];
  private udpSendPeersFromPackets = false;

  constructor(private readonly opts: NetflowOptions) {}

  /** The kernel's connection table, for httpflow and dnsflow to name each socket's owner. */
  get connections(): BpfMap | undefined {
    return this.conns;
  }

  /** The TCP socket each thread last used, for httpflow's TLS probes to name a call's connection. */
  get threadSockets(): BpfMap | undefined {
    return this.threadSocks;
  }

  /** Where httpflow's packet programs note the local addresses of wildcard-bound sockets' datagrams (struct udp_local). */
  get udpLocals(): BpfMap | undefined {
    return this.obj?.map('udp_locals');
  }

  /** Where the peers of datagrams wait for the byte hooks (struct udp_peer), for httpflow's egress program. */
  get udpPeerStash(): BpfMap | undefined {
    return this.obj && this.udpPeerHooks ? this.obj.map('udp_stash') : undefined;
  }

  /**
   * httpflow's egress program now stashes the peer of every datagram sent
   * (it runs for every packet anyway): netflow's sendmsg hooks, which lock
   * the socket on each send, go. Both stash the same peer meanwhile.
   */
  sendPeersFromPackets(): void {
    for (const link of this.udpSendLinks) this.obj?.detach(link);
    this.udpSendLinks = [];
    this.udpSendPeersFromPackets = true;
  }

  /** The kernel's UDP flow table, for dnsflow to name a query's owner. */
  get udpFlowTable(): BpfMap | undefined {
    return this.udpFlows;
  }

  /** The control the UDP flow table's keys depend on (their generation), for dnsflow. */
  get controlTable(): BpfMap | undefined {
    return this.control;
  }

  hooks(): Record<string, string> {
    return {
      bytes: this.byteHooks ?? 'none',
      tcp_state: 'tp_btf',
      // sends from httpflow's packet program once it took them over, receives from recvmsg
      udp_peer: !this.udpPeerHooks ? 'none' : this.udpSendPeersFromPackets ? 'cgroup_skb+cgroup_sock_addr' : 'cgroup_sock_addr',
    };
  }

  /**
   * Loads the object with the first set of byte hooks that this kernel runs,
   * in order of cost (or the one --hooks forces).
   */
  start(): void {
    const mode = this.opts.hooks ?? 'auto';
    const rejected: string[] = [];
    for (const hooks of mode === 'auto' ? BYTE_HOOKS : [mode]) {
      const why = missingFor(hooks);
      if (why) {
        rejected.push(`${hooks}: ${why}`);
        continue;
      }
      try {
        this.load(hooks);
        this.byteHooks = hooks;
        break;
      } catch (err) {
        rejected.push(`${hooks}: the kernel refused them (${(err as Error).message.split('\n')[0]})`);
        log.debug(`netflow: ${hooks} hooks: ${(err as Error).message}`);
      }
    }
    if (!this.byteHooks) {
      // a path the user forced and the kernel lacks: not something to run without
      if (mode !== 'auto') throw new StartupError(`--hooks ${rejected[0]}`);
      throw new Error(`no hooks to count bytes with (${rejected.join('; ')})`);
    }
    if (rejected.length) log.info(`netflow: bytes counted by ${this.byteHooks} hooks (not ${rejected.join('; ')})`);
    this.attachUdpPeerHooks(this.obj!);
    startCounting(this.obj!);
    // close events queued below the kernel's wake-up size, and the UDP table's fill
    this.stopTicking = every(DRAIN_TICK_MS, () => {
      this.ring?.drain();
      this.udpInProgress?.quiet();
      this.sweepUdpIfFilling();
    });
  }

  private load(hooks: ByteHooks): void {
    const obj = BpfObject.open('netflow');
    this.obj = obj;
    try {
      obj.setConfig(encodeNetflowConfig(this.opts.includeLoopback, WAKEUP_BYTES));
      obj.setMaxEntries('conns', this.opts.maxConnections);
      this.udpFlowsMax = Math.min(this.opts.maxConnections, MAX_UDP_FLOWS);
      obj.setMaxEntries('udp_flows', this.udpFlowsMax);
      selectByteHooks(obj, hooks);
      obj.load();
      this.conns = obj.map('conns');
      this.threadSocks = obj.map('thread_socks');
      this.counters = obj.map('counters');
      this.orphans = obj.map('orphans');
      this.udpFlows = obj.map('udp_flows');
      this.udpInProgress = new InProgress(obj.map('udp_in_progress'));
      this.closeInProgress = new InProgress(obj.map('close_in_progress'));
      this.control = obj.map('control');
      this.closedSums = [obj.map('closed_0'), obj.map('closed_1')];
      this.ring = new RingBuffer(obj.map('closed'), (buf, bytes) => this.onCloseEvents(buf, bytes));
      // State changes first, so byte hooks find connections already tracked.
      for (const prog of ['on_state', 'on_destroy', 'on_retransmit']) obj.attachTrace(prog);
      attachByteHooks(obj, hooks);
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  /** Peers of unconnected UDP sockets: without these, only connected UDP sockets are seen. */
  private attachUdpPeerHooks(obj: BpfObject): void {
    try {
      if (!this.opts.cgroup2) throw new Error('no cgroup v2 hierarchy');
      const root = this.opts.cgroup2();
      for (const prog of ['udp_recvmsg4', 'udp_recvmsg6']) obj.attachCgroup(prog, root);
      this.udpSendLinks = ['udp_sendmsg4', 'udp_sendmsg6'].map((prog) => obj.attachCgroup(prog, root));
      this.udpPeerHooks = true;
    } catch (err) {
      log.warn(`netflow: unconnected UDP sockets will not be reported: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  private onCloseEvents(buf: Buffer, bytes: number): void {
    forEachRecord(buf, bytes, (off, len) => {
      if (len < CLOSE_EVENT.size) return;
      this.closeEvents++;
      this.agg.addClosed(decodeConnStats(buf, off + CLOSE_EVENT.c));
    });
  }

  collect(now: bigint): Point[] {
    if (!this.conns || !this.ring) return [];
    // Closed connections queued so far, then every live one, then closes that
    // raced with the read (the kernel removes an entry before queueing its event).
    // Once an interval, a whole ring's worth may be taken at once.
    this.ring.drain(RING_CHUNKS_PER_REPORT);
    const { epoch, summedMap } = this.advance();
    // a close that read the old epoch has summed the connection and removed it
    // from conns by then: it is never both read here and summed
    this.closeInProgress!.waitQuiet();
    // connections made since the epoch moved are left to the next read, or,
    // if they close before it, to the kernel's sums: never counted twice
    this.conns.forEachChunk(READ_CHUNK, ({ count, values }) => {
      for (let i = 0; i < count; i++) {
        if (values.readUInt32LE(i * CONN_STATS.size + CONN_STATS.epoch) === epoch) continue;
        this.addLive(values, i * CONN_STATS.size);
      }
    });
    // closed connections whose event did not fit in the ring buffer
    this.orphans!.forEachChunk(READ_CHUNK, ({ count, values }) => {
      for (let i = 0; i < count; i++) this.agg.addClosed(decodeConnStats(values, i * CONN_STATS.size));
    }, { delete: true });
    this.sweepUdp();
    // connections made and closed since the last read, summed by the kernel in the map it has left
    summedMap.forEachChunk(READ_CHUNK, ({ count, keys, values }) => {
      for (let i = 0; i < count; i++) {
        const c = decodeClosedSum(keys, i * summedMap.keySize, values, i * summedMap.valueSize);
        this.summed += c.conns;
        this.agg.addSummed(c);
      }
    }, { delete: true });
    this.agg.endMapRead();
    this.ring.drain(RING_CHUNKS_PER_REPORT);
    return this.agg.takeFlows().map((f) => flowToPoint(f, now, this.opts.domains, this.opts.k8s, this.opts.containers));
  }

  /**
   * Counts what UDP flows did since the last read, and removes the generation
   * before the current one: its last datagrams came before the last sweep moved
   * the generation on, so its totals are final. Then moves it on again: flows
   * that go on count in new entries (the kernel keeps their direction), those
   * that stopped leave the map at the next sweep. While a hook that read the
   * old generation may still be running, it only reads, and the sweep is put off.
   */
  private sweepUdp(): void {
    const retire = this.udpInProgress!.quiet();
    const gen = this.udpGen & 0xffff;
    this.udpFlows!.forEachChunk(READ_CHUNK, ({ count, keys, values }) => {
      let retired = 0;
      for (let i = 0; i < count; i++) {
        const off = i * CONN_STATS.size;
        this.addLive(values, off);
        if (!retire || keys.readUInt16LE(i * UDP_KEY.size + UDP_KEY.gen) === gen) continue;
        this.agg.forget(readU53(values, off + CONN_STATS.id));
        keys.copy(this.retiredKeys, retired++ * UDP_KEY.size, i * UDP_KEY.size, (i + 1) * UDP_KEY.size);
      }
      if (retired) this.udpRemoved += this.udpFlows!.deleteBatch(this.retiredKeys, retired);
    });
    if (!retire) {
      this.udpSweepsPutOff++;
      return;
    }
    this.moveUdpGeneration();
    this.udpSweeps++;
  }

  private moveUdpGeneration(): void {
    const zero = Buffer.alloc(4);
    const ctl = this.control!.lookup(zero) ?? Buffer.alloc(NETFLOW_CONTROL.size);
    this.udpGen = (this.udpGen + 1) >>> 0;
    ctl.writeUInt32LE(this.udpGen, NETFLOW_CONTROL.udp_gen);
    this.control!.update(zero, ctl);
    // every CPU must now be seen out of the UDP hooks before the old generation goes
    this.udpInProgress!.moved();
  }

  /** Between reports: a sweep when the UDP map is filling up. */
  private sweepUdpIfFilling(): void {
    if (!this.udpFlows || !this.counters) return;
    // in the map: made there, less those removed here
    const inMap = (this.counters.namedCounters(COUNTER_NAMES).udp_flows_made ?? 0) - this.udpRemoved;
    if (inMap >= this.udpFlowsMax * UDP_SWEEP_FILL && this.udpInProgress!.quiet()) this.sweepUdp();
  }

  /**
   * Moves the epoch on (connections made from now on are the kernel's to sum
   * if they close before the next read) and switches the kernel to the other
   * closed-sums map; returns the new epoch and the map it left.
   */
  private advance(): { epoch: number; summedMap: BpfMap } {
    const zero = Buffer.alloc(4);
    const ctl = this.control!.lookup(zero) ?? Buffer.alloc(NETFLOW_CONTROL.size);
    const epoch = (ctl.readUInt32LE(NETFLOW_CONTROL.epoch) + 1) >>> 0;
    const old = ctl.readUInt32LE(NETFLOW_CONTROL.active) & 1;
    ctl.writeUInt32LE(epoch, NETFLOW_CONTROL.epoch);
    ctl.writeUInt32LE(1 - old, NETFLOW_CONTROL.active);
    this.control!.update(zero, ctl);
    this.closeInProgress!.moved();
    return { epoch, summedMap: this.closedSums[old] };
  }

  /** One live connection from a map read; idle ones are not decoded (most of a big table). */
  private addLive(buf: Buffer, base: number): number {
    const idle = this.agg.touchIfIdle(
      readU53(buf, base + CONN_STATS.id),
      readU53(buf, base + CONN_STATS.bytes_sent),
      readU53(buf, base + CONN_STATS.bytes_recv),
      buf.readUInt32LE(base + CONN_STATS.retrans),
      buf[base + CONN_STATS.flags],
    );
    return idle ?? this.agg.addLive(decodeConnStats(buf, base));
  }

  /** Kernel counters summed over CPUs, plus user-space ones. */
  stats(): Record<string, number> {
    const out = this.counters?.namedCounters(COUNTER_NAMES) ?? {};
    out.udp_flows_removed = this.udpRemoved;
    out.udp_flows = (out.udp_flows_made ?? 0) - this.udpRemoved;
    out.udp_sweeps = this.udpSweeps;
    out.udp_sweeps_put_off = this.udpSweepsPutOff;
    out.close_reads_busy = this.closeInProgress?.gaveUp ?? 0;
    out.close_events_read = this.closeEvents;
    out.closed_summed_read = this.summed;
    out.conns_remembered = this.agg.tracked;
    out.conns_vanished = this.agg.vanished;
    return out;
  }

  stop(): void {
    this.stopTicking?.();
    this.stopTicking = undefined;
    this.ring?.close();
    this.ring = undefined;
    this.obj?.close();
    this.obj = undefined;
    this.udpSendLinks = [];
    this.conns = undefined;
    this.threadSocks = undefined;
    this.counters = undefined;
  }
}
