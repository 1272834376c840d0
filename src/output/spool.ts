// The buffer dir (SPEC §3, delivery): batches DataKit could not take yet wait
// here, per category, in order, across restarts.
//
// Layout: DIR/<category>/<seq>.seg, segment files named by a sequence number
// (16 digits, so names sort by age) that all categories share and that only
// grows; DIR/<category>/ack names the first batch still waiting ("<seq> <offset>"):
// what lies before it was delivered, refused or dropped.
//
// A segment: the 8 bytes "DKEBSEG1", then records, one per batch:
//   magic "DKBR" | u32 payload bytes | u32 points | u64 serial | u32 crc32(bytes 4-19 and payload) | payload
// (little-endian; the payload is the batch's lines joined by "\n"; the serial
// orders batches of all categories, for the bound to drop the oldest). Records are
// appended whole and never changed; a segment is fsynced once, when it is
// closed, and deleted once nothing in it waits. A damaged stretch (a record cut
// short by a crash, garbage, a wrong file header) is skipped and counted; reading
// resumes at the next record whose checksum holds.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { log } from '../log';
import type { Category } from './point';

const CATEGORIES: readonly Category[] = ['network', 'logging'];
const SEGMENT_MAGIC = Buffer.from('DKEBSEG1');
const RECORD_MAGIC = Buffer.from('DKBR');
const RECORD_HEADER = 24;
/** The header's bytes the checksum covers, with the payload: length, points, serial. */
const CHECKED = [4, 20] as const;
const SEGMENT_NAME = /^(\d{16})\.seg$/;
/** Default segment size: past it a new file begins (smaller for small bounds, see segmentBytesFor). */
const MAX_SEGMENT_BYTES = 8 * 2 ** 20;
const MIN_SEGMENT_BYTES = 64 * 2 ** 10;

/** zlib's crc32 (Node 20.15 and later), else the same function in a few lines. */
const crc32: (data: Uint8Array, value?: number) => number =
  (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32 ?? tableCrc32;

let crcTable: Uint32Array | undefined;
function tableCrc32(data: Uint8Array, value = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~value >>> 0;
  for (const byte of data) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function recordHeader(payload: Uint8Array, points: number, serial: number): Buffer {
  const h = Buffer.alloc(RECORD_HEADER);
  RECORD_MAGIC.copy(h, 0);
  h.writeUInt32LE(payload.length, 4);
  h.writeUInt32LE(points, 8);
  h.writeBigUInt64LE(BigInt(serial), 12);
  h.writeUInt32LE(crc32(payload, crc32(h.subarray(...CHECKED))), 20);
  return h;
}

/** Points and serial of the record header at `pos`. */
function headerFields(buf: Buffer, pos: number): { size: number; points: number; serial: number } {
  return { size: RECORD_HEADER + buf.readUInt32LE(pos + 4), points: buf.readUInt32LE(pos + 8), serial: Number(buf.readBigUInt64LE(pos + 12)) };
}

/** Why the bytes at `pos` are not a whole, intact record; undefined if they are. */
function recordProblem(buf: Buffer, pos: number): string | undefined {
  if (buf.length - pos < RECORD_HEADER) return 'record cut short';
  if (!buf.subarray(pos, pos + 4).equals(RECORD_MAGIC)) return 'not a record';
  const len = buf.readUInt32LE(pos + 4);
  if (len > buf.length - pos - RECORD_HEADER) return 'record cut short';
  const payload = buf.subarray(pos + RECORD_HEADER, pos + RECORD_HEADER + len);
  if (crc32(payload, crc32(buf.subarray(pos + CHECKED[0], pos + CHECKED[1]))) !== buf.readUInt32LE(pos + 20)) return 'bad checksum';
  return undefined;
}

/** The size of segment files for a bound: small enough that the bound is kept closely on disk too. */
export function segmentBytesFor(maxBytes: number): number {
  return Math.max(MIN_SEGMENT_BYTES, Math.min(MAX_SEGMENT_BYTES, Math.floor(maxBytes / 16)));
}

/** A batch waiting on disk. */
interface RecordRef {
  seq: number;
  offset: number;
  /** Header and payload. */
  size: number;
  points: number;
  /** Append order across categories. */
  serial: number;
}

interface Lane {
  category: Category;
  dir: string;
  /** Waiting records, oldest first. */
  records: RecordRef[];
  points: number;
  /** Segment numbers of this category's files on disk, oldest first. */
  segments: number[];
  /** The segment being appended to. */
  writing?: { seq: number; fd: number; size: number };
  /** records[0] was handed out by next() and is being posted: it must not be dropped meanwhile. */
  inflight: boolean;
  /** The head last written to the ack file, to skip rewriting it unchanged. */
  ackWritten?: string;
}

export interface SpoolOptions {
  /** Bytes of waiting batches at most, all categories together; past it the oldest are dropped. */
  maxBytes: number;
  /** Size past which a new segment file begins (default: segmentBytesFor(maxBytes)). */
  segmentBytes?: number;
}

/** A batch read back from the buffer. */
export interface SpooledBatch {
  body: Buffer;
  points: number;
}

export class Spool {
  private readonly lanes: Record<Category, Lane>;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private nextSeq = 1;
  private nextSerial = 1;
  private bytes = 0;
  /** Points dropped because the bound was reached (oldest first). */
  droppedFull = 0;
  /** Damaged stretches skipped (each a record or more; their points are unknown). */
  corrupt = 0;

  /** Reads what earlier runs left in `dir`; never throws: damage is skipped, counted and logged. */
  constructor(
    readonly dir: string,
    opts: SpoolOptions,
  ) {
    this.maxBytes = opts.maxBytes;
    this.segmentBytes = opts.segmentBytes ?? segmentBytesFor(opts.maxBytes);
    const lane = (category: Category): Lane => ({
      category,
      dir: path.join(dir, category),
      records: [],
      points: 0,
      segments: [],
      inflight: false,
    });
    this.lanes = { network: lane('network'), logging: lane('logging') };
    for (const c of CATEGORIES) this.load(this.lanes[c]);
    // a lower bound than the last run's: the oldest go now
    if (this.bytes > this.maxBytes) {
      const before = this.droppedFull;
      this.makeRoom();
      log.warn(`buffer: ${this.droppedFull - before} points dropped at start-up: ${this.dir} holds more than the bound`);
    }
  }

  /** Points waiting in `category`, or in all. */
  points(category?: Category): number {
    return category ? this.lanes[category].points : this.lanes.network.points + this.lanes.logging.points;
  }

  /** Bytes of waiting records (headers included), all categories. */
  get size(): number {
    return this.bytes;
  }

  /**
   * Appends one batch. The oldest waiting batches are dropped (and counted) to stay
   * within the bound; a batch larger than the bound on its own is dropped itself.
   * Throws if the file cannot be written (the batch is then not in the buffer).
   */
  append(category: Category, body: string | Uint8Array, points: number): void {
    const payload = typeof body === 'string' ? Buffer.from(body) : body;
    const size = RECORD_HEADER + payload.length;
    if (size > this.maxBytes) {
      this.droppedFull += points;
      return;
    }
    const lane = this.lanes[category];
    const w = this.segmentFor(lane, size);
    try {
      writeAll(w.fd, Buffer.concat([recordHeader(payload, points, this.nextSerial), payload]));
    } catch (err) {
      // keep the file whole for the records before; a later append starts a new file
      try {
        fs.ftruncateSync(w.fd, w.size);
      } catch {
        /* the scan at the next start skips what is left */
      }
      this.closeSegment(lane);
      throw err;
    }
    lane.records.push({ seq: w.seq, offset: w.size, size, points, serial: this.nextSerial++ });
    lane.points += points;
    this.bytes += size;
    w.size += size;
    // the batch is the newest: it is dropped last, and fits once the others are gone
    this.makeRoom();
  }

  /**
   * The oldest waiting batch of `category`, marked in flight until ack() or release().
   * Records damaged since start-up are skipped and counted here.
   */
  next(category: Category): SpooledBatch | undefined {
    const lane = this.lanes[category];
    for (;;) {
      const rec = lane.records[0];
      if (!rec) return undefined;
      const buf = Buffer.alloc(rec.size);
      let problem: string | undefined;
      try {
        const fd = fs.openSync(this.segmentPath(lane, rec.seq), 'r');
        try {
          if (fs.readSync(fd, buf, 0, rec.size, rec.offset) < rec.size) problem = 'record cut short';
        } finally {
          fs.closeSync(fd);
        }
        problem ??= recordProblem(buf, 0);
      } catch (err) {
        problem = (err as Error).message;
      }
      if (problem === undefined) {
        lane.inflight = true;
        return { body: buf.subarray(RECORD_HEADER), points: rec.points };
      }
      this.corrupt++;
      log.warn(`buffer: ${category} batch at ${this.segmentName(rec.seq)}:${rec.offset} skipped: ${problem}`);
      this.removeHead(lane);
    }
  }

  /** The batch next() handed out is done with (delivered, or refused for good). */
  ack(category: Category): void {
    const lane = this.lanes[category];
    if (!lane.inflight) throw new Error(`buffer: ack without a ${category} batch in flight`);
    lane.inflight = false;
    this.removeHead(lane);
  }

  /** The batch next() handed out stays first in line (its post failed). */
  release(category: Category): void {
    this.lanes[category].inflight = false;
  }

  /** Syncs and closes the segments being written. */
  close(): void {
    for (const c of CATEGORIES) this.closeSegment(this.lanes[c]);
  }

  private segmentName(seq: number): string {
    return `${String(seq).padStart(16, '0')}.seg`;
  }

  private segmentPath(lane: Lane, seq: number): string {
    return path.join(lane.dir, this.segmentName(seq));
  }

  /** The segment to append `size` bytes to: the current one, or a new one past the segment size. */
  private segmentFor(lane: Lane, size: number): { seq: number; fd: number; size: number } {
    const w = lane.writing;
    if (w && (w.size + size <= this.segmentBytes || w.size === SEGMENT_MAGIC.length)) return w;
    this.closeSegment(lane);
    fs.mkdirSync(lane.dir, { recursive: true, mode: 0o700 });
    const seq = this.nextSeq++;
    const fd = fs.openSync(this.segmentPath(lane, seq), 'wx', 0o600);
    try {
      writeAll(fd, SEGMENT_MAGIC);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(this.segmentPath(lane, seq), { force: true });
      throw err;
    }
    lane.segments.push(seq);
    lane.writing = { seq, fd, size: SEGMENT_MAGIC.length };
    return lane.writing;
  }

  private closeSegment(lane: Lane): void {
    const w = lane.writing;
    if (!w) return;
    lane.writing = undefined;
    try {
      fs.fdatasyncSync(w.fd);
    } catch (err) {
      log.warn(`buffer: ${lane.category}: sync failed: ${(err as Error).message}`);
    }
    fs.closeSync(w.fd);
  }

  /** Drops the oldest waiting batches, whichever category they are in, until the rest fit the bound. */
  private makeRoom(): void {
    // a batch in flight is about to leave: it does not count against the bound
    const leaving = () => CATEGORIES.reduce((n, c) => n + (this.lanes[c].inflight ? this.lanes[c].records[0].size : 0), 0);
    while (this.bytes - leaving() > this.maxBytes) {
      // the oldest of all categories, skipping a batch in flight
      let oldest: { lane: Lane; index: number } | undefined;
      for (const c of CATEGORIES) {
        const lane = this.lanes[c];
        const index = lane.inflight ? 1 : 0;
        const rec = lane.records[index];
        if (rec && (!oldest || rec.serial < oldest.lane.records[oldest.index].serial)) oldest = { lane, index };
      }
      if (!oldest) return;
      const { lane, index } = oldest;
      this.droppedFull += lane.records[index].points;
      if (index === 0) this.removeHead(lane);
      else this.forget(lane, lane.records.splice(index, 1)[0]);
    }
  }

  private forget(lane: Lane, rec: RecordRef): void {
    lane.points -= rec.points;
    this.bytes -= rec.size;
  }

  /** Removes the first waiting record; records the new head, deletes segments with nothing left. */
  private removeHead(lane: Lane): void {
    const rec = lane.records.shift();
    if (rec) this.forget(lane, rec);
    const head = lane.records[0];
    try {
      if (head) this.writeAck(lane, `${head.seq} ${head.offset}\n`);
      // nothing waits: every file of the category goes, the one being written too
      if (!head) this.closeSegment(lane);
      while (lane.segments.length && (!head || lane.segments[0] < head.seq)) {
        fs.rmSync(this.segmentPath(lane, lane.segments.shift()!), { force: true });
      }
      if (!head) {
        fs.rmSync(path.join(lane.dir, 'ack'), { force: true });
        lane.ackWritten = undefined;
      }
    } catch (err) {
      // at worst the next start sends a batch again
      log.warn(`buffer: ${lane.category}: cannot record progress: ${(err as Error).message}`);
    }
  }

  /** Atomically replaces the ack file: a crash leaves the old head or the new one. */
  private writeAck(lane: Lane, text: string): void {
    if (lane.ackWritten === text) return;
    const tmp = path.join(lane.dir, 'ack.tmp');
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, path.join(lane.dir, 'ack'));
    lane.ackWritten = text;
  }

  /** Reads a category's segments: intact records from the ack on wait; damage is skipped. */
  private load(lane: Lane): void {
    let names: string[];
    try {
      names = fs.readdirSync(lane.dir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'ENOENT') log.warn(`buffer: cannot read ${lane.dir}: ${e.message}`);
      return;
    }
    const ack = readAck(lane.dir);
    if (ack) {
      this.nextSeq = Math.max(this.nextSeq, ack.seq + 1);
      lane.ackWritten = `${ack.seq} ${ack.offset}\n`;
    }
    const seqs = names
      .map((n) => SEGMENT_NAME.exec(n)?.[1])
      .filter((s): s is string => s !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    for (const seq of seqs) {
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
      const file = this.segmentPath(lane, seq);
      if (ack && seq < ack.seq) {
        fs.rmSync(file, { force: true }); // delivered: its deletion was cut short
        continue;
      }
      const skipBefore = ack && seq === ack.seq ? ack.offset : 0;
      const found = this.readSegment(lane, seq, file, skipBefore);
      if (found.length) {
        lane.segments.push(seq);
        for (const rec of found) {
          this.nextSerial = Math.max(this.nextSerial, rec.serial + 1);
          lane.records.push(rec);
          lane.points += rec.points;
          this.bytes += rec.size;
        }
      } else {
        fs.rmSync(file, { force: true });
      }
    }
    // a segment rewritten without its damage moved its records: the ack names the head anew
    const head = lane.records[0];
    try {
      if (head) this.writeAck(lane, `${head.seq} ${head.offset}\n`);
      else fs.rmSync(path.join(lane.dir, 'ack'), { force: true });
    } catch (err) {
      log.warn(`buffer: ${lane.category}: cannot record progress: ${(err as Error).message}`);
    }
  }

  /** The intact records of one segment at or after `skipBefore`; a damaged file is rewritten without its damage. */
  private readSegment(lane: Lane, seq: number, file: string, skipBefore: number): RecordRef[] {
    const where = `${lane.category}/${this.segmentName(seq)}`;
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (err) {
      this.corrupt++;
      log.warn(`buffer: ${where} skipped: ${(err as Error).message}`);
      return [];
    }
    if (buf.length < SEGMENT_MAGIC.length || !buf.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) {
      this.corrupt++;
      log.warn(`buffer: ${where} skipped: not a buffer segment (wrong header)`);
      return [];
    }
    const records: RecordRef[] = [];
    const damage: string[] = [];
    let pos = SEGMENT_MAGIC.length;
    while (pos < buf.length) {
      const problem = recordProblem(buf, pos);
      if (problem === undefined) {
        const fields = headerFields(buf, pos);
        if (pos >= skipBefore) records.push({ seq, offset: pos, ...fields });
        pos += fields.size;
        continue;
      }
      // resume at the next intact record, if any; damage wholly in the delivered part does not count
      let next = buf.indexOf(RECORD_MAGIC, pos + 1);
      while (next >= 0 && recordProblem(buf, next) !== undefined) next = buf.indexOf(RECORD_MAGIC, next + 1);
      const resume = next >= 0 ? next : buf.length;
      if (resume > skipBefore) damage.push(`${problem} at byte ${pos}`);
      pos = resume;
    }
    if (!damage.length) return records;
    this.corrupt += damage.length;
    log.warn(`buffer: ${where}: ${damage.length} damaged stretch(es) skipped: ${damage.join(', ')}`);
    // rewritten with its intact records only, so the damage is counted once
    return this.rewrite(file, seq, buf, records);
  }

  /** Replaces a segment by its intact `records`; on failure the file stays as it was (and so do the offsets). */
  private rewrite(file: string, seq: number, buf: Buffer, records: RecordRef[]): RecordRef[] {
    const out: RecordRef[] = [];
    let pos = SEGMENT_MAGIC.length;
    for (const r of records) {
      out.push({ ...r, offset: pos });
      pos += r.size;
    }
    const tmp = `${file}.tmp`;
    try {
      fs.writeFileSync(tmp, Buffer.concat([SEGMENT_MAGIC, ...records.map((r) => buf.subarray(r.offset, r.offset + r.size))]), { mode: 0o600 });
      fs.renameSync(tmp, file);
      return out;
    } catch (err) {
      log.warn(`buffer: cannot rewrite ${file} without its damage: ${(err as Error).message}`);
      fs.rmSync(tmp, { force: true });
      return records;
    }
  }
}

function readAck(dir: string): { seq: number; offset: number } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'ack'), 'utf8');
  } catch {
    return undefined;
  }
  const m = /^(\d+) (\d+)\n$/.exec(text);
  if (!m) {
    log.warn(`buffer: ${dir}/ack unreadable (${JSON.stringify(text.slice(0, 40))}): everything there is sent again`);
    return undefined;
  }
  return { seq: Number(m[1]), offset: Number(m[2]) };
}

function writeAll(fd: number, buf: Uint8Array): void {
  for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off);
}
