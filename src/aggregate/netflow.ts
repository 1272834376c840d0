// Turns per-connection counter samples into per-interval netflow points.
//
// The kernel keeps running totals per connection. Each interval we see every
// live connection once (from the map) and every connection that closed (from
// the ring buffer, or from the map when the ring buffer was full); the
// difference to what we saw last time is that interval's share. Connections
// that differ only in their ephemeral port are merged into one flow.
import { isEphemeralPort } from '../enrich/iptype';
import {
  ClosedSum,
  CONN_F_ESTABLISHED,
  CONN_F_PREEXISTING,
  ConnSample,
  DIR_INCOMING,
  DIR_OUTGOING,
} from '../plugins/netflow/decode';

export interface Flow {
  direction: 'incoming' | 'outgoing';
  transport: 'tcp' | 'udp';
  family: 'IPv4' | 'IPv6';
  pid: number;
  processName: string;
  srcIp: string;
  srcPort: string; // a number, or '*' for a collapsed ephemeral port
  dstIp: string;
  dstPort: string;
  bytesRead: number;
  bytesWritten: number;
  retransmits: number;
  tcpEstablished: number;
  tcpClosed: number;
  rtt: number; // µs, averaged over merged connections
  rttVar: number;
  /** The owner's cgroup v2 id (0: unknown): finds the pod of a host-network process. */
  cgroupId: number;
}

interface Seen {
  sent: number;
  recv: number;
  retrans: number;
  establishedCounted: boolean;
  generation: number; // last map read that contained the connection
  idleReads: number; // consecutive map reads without activity
}

interface Acc {
  flow: Flow;
  rttSum: number;
  rttVarSum: number;
  rttCount: number;
}

/** A connection missing from this many consecutive map reads is forgotten. */
const FORGET_AFTER_READS = 2;

/**
 * Direction of a connection first seen already open (we missed its handshake):
 * a client's side is the one on an ephemeral port.
 */
export function guessDirection(s: ConnSample): 'incoming' | 'outgoing' {
  const srcEph = isEphemeralPort(s.srcPort);
  const dstEph = isEphemeralPort(s.dstPort);
  if (srcEph !== dstEph) return srcEph ? 'outgoing' : 'incoming';
  return s.srcPort < s.dstPort ? 'incoming' : 'outgoing';
}

export class NetflowAggregator {
  private readonly seen = new Map<number, Seen>();
  private flows = new Map<string, Acc>();
  private generation = 0;
  /** Connections forgotten without a close event (e.g. a close event was lost). */
  vanished = 0;

  /** A live connection from this interval's map read; returns how many reads in a row it was idle. */
  addLive(s: ConnSample): number {
    return this.add(s, false);
  }

  /**
   * The fast path for a live connection: when it is known and its counters did
   * not move, notes that and returns how many reads in a row it was idle, so
   * that its addresses need not be decoded at all. Undefined: call addLive().
   */
  touchIfIdle(id: number, sent: number, recv: number, retrans: number, flags: number): number | undefined {
    const prev = this.seen.get(id);
    if (!prev || prev.sent !== sent || prev.recv !== recv || prev.retrans !== retrans) return undefined;
    // became established since the last read: that is news
    if (flags & (CONN_F_ESTABLISHED | CONN_F_PREEXISTING) && !prev.establishedCounted) return undefined;
    prev.generation = this.generation;
    return ++prev.idleReads;
  }

  /** Forgets a connection whose kernel entry user space removed (idle UDP flows). */
  forget(id: number): void {
    this.seen.delete(id);
  }

  /** A connection that closed: its final totals. */
  addClosed(s: ConnSample): void {
    this.add(s, true);
  }

  /**
   * Connections the kernel summed (made and closed between two map reads, so
   * never seen here): their totals, each established and closed once.
   * Port 0 is a client's ephemeral port the kernel collapsed already.
   */
  addSummed(c: ClosedSum): void {
    const s = c.sample;
    const direction = s.direction === DIR_OUTGOING ? 'outgoing' : 'incoming';
    const acc = this.accumulator(s, direction, s.srcPort === 0 ? '*' : String(s.srcPort), s.dstPort === 0 ? '*' : String(s.dstPort));
    const f = acc.flow;
    f.bytesWritten += s.bytesSent;
    f.bytesRead += s.bytesRecv;
    f.retransmits += s.retransmits;
    f.tcpEstablished += c.conns;
    f.tcpClosed += c.conns;
    acc.rttSum += c.rttSumUs;
    acc.rttVarSum += c.rttVarSumUs;
    acc.rttCount += c.conns;
  }

  private add(s: ConnSample, closed: boolean): number {
    const prev = this.seen.get(s.id);
    const dWritten = s.bytesSent - (prev?.sent ?? 0);
    const dRead = s.bytesRecv - (prev?.recv ?? 0);
    const dRetrans = s.retransmits - (prev?.retrans ?? 0);
    const establishedNow = (s.flags & (CONN_F_ESTABLISHED | CONN_F_PREEXISTING)) !== 0 && !prev?.establishedCounted;
    const isTcp = s.transport === 'tcp';
    const closedNow = closed && isTcp;
    const active = dWritten > 0 || dRead > 0 || dRetrans > 0 || establishedNow || closedNow;
    let idleReads = 0;
    if (closed) {
      this.seen.delete(s.id);
    } else if (prev) {
      prev.sent = s.bytesSent;
      prev.recv = s.bytesRecv;
      prev.retrans = s.retransmits;
      prev.establishedCounted ||= establishedNow;
      prev.generation = this.generation;
      prev.idleReads = active ? 0 : prev.idleReads + 1;
      idleReads = prev.idleReads;
    } else {
      this.seen.set(s.id, {
        sent: s.bytesSent,
        recv: s.bytesRecv,
        retrans: s.retransmits,
        establishedCounted: establishedNow,
        generation: this.generation,
        idleReads: 0,
      });
    }
    // No bytes, no open or close, no retransmit: nothing to report (SPEC §4.1).
    if (!active) return idleReads;

    const direction =
      s.direction === DIR_OUTGOING ? 'outgoing' : s.direction === DIR_INCOMING ? 'incoming' : guessDirection(s);
    // The client's ephemeral port is collapsed: ours when outgoing, the peer's when incoming.
    const srcPort = direction === 'outgoing' && isEphemeralPort(s.srcPort) ? '*' : String(s.srcPort);
    const dstPort = direction === 'incoming' && isEphemeralPort(s.dstPort) ? '*' : String(s.dstPort);
    const acc = this.accumulator(s, direction, srcPort, dstPort);
    const f = acc.flow;
    f.bytesWritten += Math.max(0, dWritten);
    f.bytesRead += Math.max(0, dRead);
    f.retransmits += Math.max(0, dRetrans);
    if (establishedNow && isTcp) f.tcpEstablished++;
    if (closedNow) f.tcpClosed++;
    if (isTcp) {
      acc.rttSum += s.rttUs;
      acc.rttVarSum += s.rttVarUs;
      acc.rttCount++;
    }
    return 0;
  }

  /** The flow `s` belongs to in this interval (connections that differ only in the collapsed port share one). */
  private accumulator(s: ConnSample, direction: 'incoming' | 'outgoing', srcPort: string, dstPort: string): Acc {
    const key = `${s.pid}|${direction}|${s.transport}|${s.srcIp}|${srcPort}|${s.dstIp}|${dstPort}`;
    let acc = this.flows.get(key);
    if (!acc) {
      acc = {
        flow: {
          direction,
          transport: s.transport,
          family: s.family,
          pid: s.pid,
          processName: s.processName,
          srcIp: s.srcIp,
          srcPort,
          dstIp: s.dstIp,
          dstPort,
          bytesRead: 0,
          bytesWritten: 0,
          retransmits: 0,
          tcpEstablished: 0,
          tcpClosed: 0,
          rtt: 0,
          rttVar: 0,
          cgroupId: s.cgroupId,
        },
        rttSum: 0,
        rttVarSum: 0,
        rttCount: 0,
      };
      this.flows.set(key, acc);
    }
    if (!acc.flow.processName && s.processName) acc.flow.processName = s.processName;
    if (!acc.flow.cgroupId && s.cgroupId) acc.flow.cgroupId = s.cgroupId;
    return acc;
  }

  /** Call after every full map read: forgets connections that disappeared without a close event. */
  endMapRead(): void {
    for (const [id, seen] of this.seen) {
      if (this.generation - seen.generation >= FORGET_AFTER_READS) {
        this.seen.delete(id);
        this.vanished++;
      }
    }
    this.generation++;
  }

  /** Flows accumulated since the last call. */
  takeFlows(): Flow[] {
    const out: Flow[] = [];
    for (const acc of this.flows.values()) {
      if (acc.rttCount) {
        acc.flow.rtt = Math.round(acc.rttSum / acc.rttCount);
        acc.flow.rttVar = Math.round(acc.rttVarSum / acc.rttCount);
      }
      out.push(acc.flow);
    }
    this.flows = new Map();
    return out;
  }

  /** Connections currently remembered between intervals. */
  get tracked(): number {
    return this.seen.size;
  }
}
