// cgroup v2 ids (the inode numbers of cgroup directories) of the cgroups a
// classifier names (a pod, a container), and of everything below them, found
// by walking the hierarchy. The kernel records the id with each connection, so
// a process that is gone by the report still leads to what it ran in.
import * as fs from 'node:fs';

export class CgroupIndex {
  private byId = new Map<number, string>();
  /** Ids a walk made after they existed did not find named: ids are never reused. */
  private unnamed = new Set<number>();
  private scannedAt = -Infinity;

  /**
   * @param classify the name of a cgroup from its path below the root, if it has one
   * @param minRescanMs a new unknown id triggers a walk at most this often
   */
  constructor(
    private readonly root: string,
    private readonly classify: (cgroupPath: string) => string | undefined,
    private readonly minRescanMs = 500,
    private readonly maxDirs = 50_000,
  ) {}

  find(cgroupId: number): string | undefined {
    const name = this.byId.get(cgroupId);
    if (name !== undefined || this.unnamed.has(cgroupId)) return name;
    if (performance.now() - this.scannedAt < this.minRescanMs) return undefined; // asked again next time
    this.scan();
    const found = this.byId.get(cgroupId);
    if (found === undefined) {
      if (this.unnamed.size >= 100_000) this.unnamed.clear();
      this.unnamed.add(cgroupId);
    }
    return found;
  }

  private scan(): void {
    this.scannedAt = performance.now();
    const found = new Map<number, string>();
    const stack: [string, string | undefined][] = [[this.root, undefined]];
    let dirs = 0;
    while (stack.length && dirs < this.maxDirs) {
      const [dir, inherited] = stack.pop()!;
      dirs++;
      // a cgroup's own name wins over its parent's (a container inside a container)
      const name = (dir.length > this.root.length ? this.classify(dir.slice(this.root.length)) : undefined) ?? inherited;
      if (name) {
        try {
          found.set(Number(fs.statSync(dir, { bigint: true }).ino), name);
        } catch {
          continue; // removed meanwhile
        }
      }
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) if (e.isDirectory()) stack.push([`${dir}/${e.name}`, name]);
    }
    this.byId = found;
  }
}
