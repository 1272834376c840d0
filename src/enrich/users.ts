// uid → login name from /etc/passwd, cached and re-read when the file changes.
import * as fs from 'node:fs';
import { hostPath } from '../paths';

export class UserNames {
  private names = new Map<number, string>();
  private mtimeMs = -1;
  private checkedAt = 0;

  /** @param recheckMs how often at most the file's mtime is looked at */
  constructor(
    private readonly passwd = hostPath('/etc/passwd'),
    private readonly recheckMs = 1000,
  ) {}

  private refresh(nowMs: number, passwd: string): void {
    if (nowMs - this.checkedAt < this.recheckMs && this.mtimeMs >= 0) return;
    this.checkedAt = nowMs;
    let mtimeMs: number;
    let text: string;
    try {
      mtimeMs = fs.statSync(passwd).mtimeMs;
      if (mtimeMs === this.mtimeMs) return;
      text = fs.readFileSync(passwd, 'utf8');
    } catch {
      return; // keep what we had
    }
    this.mtimeMs = mtimeMs;
    const names = new Map<number, string>();
    for (const line of text.split('\n')) {
      const [name, , uid] = line.split(':');
      if (!name || name.startsWith('#') || uid === undefined || !/^\d+$/.test(uid)) continue;
      if (!names.has(Number(uid))) names.set(Number(uid), name); // the first entry wins, as getpwuid does
    }
    this.names = names;
  }

  /**
   * The login name of `uid`, or the number itself when it has none.
   * @param passwd where the file is now, if not where it was first (another process's /proc/PID/root)
   */
  nameOf(uid: number, nowMs = Date.now(), passwd = this.passwd): string {
    this.refresh(nowMs, passwd);
    return this.names.get(uid) ?? String(uid);
  }
}

interface ProcessIdentity {
  /** device:inode of the process's root directory: one passwd file per root. */
  root: string;
  /** uid_map ranges [inside, outside, count], when the process is in a user namespace. */
  uidMap?: [number, number, number][];
}

const MAX_PROCESSES = 16_384;

/**
 * The login name of a process's uid as the process itself knows it: from the
 * passwd file of its own root (a container's /etc/passwd for a shell in a
 * container), the uid first mapped back into its user namespace. What is
 * known of a process is remembered until it is forgotten, so that the line
 * that ends it (`exit`) still gets its user.
 */
export class ProcessUsers {
  private readonly byRoot = new Map<string, UserNames>();
  private readonly processes = new Map<number, ProcessIdentity>();
  private readonly host: UserNames;

  constructor(
    private readonly procRoot = '/proc',
    hostPasswd = hostPath('/etc/passwd'),
  ) {
    this.host = new UserNames(hostPasswd);
  }

  /** Reads what is needed of `pid` now, while it runs. */
  remember(pid: number): ProcessIdentity | undefined {
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.statSync(`${this.procRoot}/${pid}/root`, { bigint: true, throwIfNoEntry: false });
    } catch {
      st = undefined; // not ours to see
    }
    if (!st) return undefined;
    const id: ProcessIdentity = { root: `${st.dev}:${st.ino}` };
    try {
      const ranges = fs
        .readFileSync(`${this.procRoot}/${pid}/uid_map`, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/).map(Number) as [number, number, number]);
      const identity = ranges.length === 1 && ranges[0][0] === 0 && ranges[0][1] === 0 && ranges[0][2] === 4294967295;
      if (!identity) id.uidMap = ranges;
    } catch {
      /* gone: no mapping */
    }
    if (this.processes.size >= MAX_PROCESSES) this.processes.clear();
    this.processes.set(pid, id);
    if (!this.byRoot.has(id.root)) this.byRoot.set(id.root, new UserNames(`${this.procRoot}/${pid}/root/etc/passwd`));
    return id;
  }

  forget(pid: number): void {
    this.processes.delete(pid);
  }

  nameOf(pid: number, uid: number, nowMs = Date.now()): string {
    const id = this.processes.get(pid) ?? this.remember(pid);
    if (!id) return this.host.nameOf(uid, nowMs); // gone before it was ever seen
    let inside = uid;
    if (id.uidMap) {
      const r = id.uidMap.find(([, outside, count]) => uid >= outside && uid < outside + count);
      if (!r) return String(uid); // no name inside its namespace: the number, as getpwuid fails
      inside = r[0] + (uid - r[1]);
    }
    // the file through this process's root while it runs; else as last read
    return this.byRoot.get(id.root)!.nameOf(inside, nowMs, `${this.procRoot}/${pid}/root/etc/passwd`);
  }
}
