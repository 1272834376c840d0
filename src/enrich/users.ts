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

  private refresh(nowMs: number): void {
    if (nowMs - this.checkedAt < this.recheckMs && this.mtimeMs >= 0) return;
    this.checkedAt = nowMs;
    let mtimeMs: number;
    try {
      mtimeMs = fs.statSync(this.passwd).mtimeMs;
    } catch {
      return; // keep what we had
    }
    if (mtimeMs === this.mtimeMs) return;
    this.mtimeMs = mtimeMs;
    const names = new Map<number, string>();
    for (const line of fs.readFileSync(this.passwd, 'utf8').split('\n')) {
      const [name, , uid] = line.split(':');
      if (!name || name.startsWith('#') || uid === undefined || !/^\d+$/.test(uid)) continue;
      if (!names.has(Number(uid))) names.set(Number(uid), name); // the first entry wins, as getpwuid does
    }
    this.names = names;
  }

  /** The login name of `uid`, or the number itself when it has none. */
  nameOf(uid: number, nowMs = Date.now()): string {
    this.refresh(nowMs);
    return this.names.get(uid) ?? String(uid);
  }
}
