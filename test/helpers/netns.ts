// Test hosts: two network namespaces joined by a veth pair, with documentation
// addresses (198.51.100.0/24, 2001:db8::/64). Test traffic goes only between them.
import { execFileSync } from 'node:child_process';

export interface HostPair {
  client: string; // namespace names
  server: string;
  clientV4: string;
  serverV4: string;
  clientV6: string;
  serverV6: string;
  /** Runs a command inside a namespace; returns stdout. */
  exec(ns: string, cmd: string[]): string;
  destroy(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

const created = new Set<string>();
process.on('exit', () => {
  // last resort if a test forgot: namespaces must not outlive the run
  for (const ns of created) {
    try {
      ip('netns', 'del', ns);
    } catch {
      /* already gone */
    }
  }
});

/** A counter of the kernel's own statistics in namespace `ns` (`nstat -a`: its whole count since the namespace was made, not since the last call). */
export function nstat(ns: string, name: string): number {
  const out = execFileSync('ip', ['netns', 'exec', ns, 'nstat', '-asz', name], { encoding: 'utf8' });
  const m = new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(out);
  if (!m) throw new Error(`nstat in ${ns}: no ${name} in ${JSON.stringify(out)}`);
  return Number(m[1]);
}

let counter = 0;

export function createHostPair(subnet = 1): HostPair {
  const tag = `dkeb${process.pid % 100000}x${counter++}`;
  const client = `${tag}c`;
  const server = `${tag}s`;
  const v4 = (h: number) => `198.51.100.${subnet * 10 + h}`;
  const v6 = (h: number) => `2001:db8:${subnet}::${h}`;
  const pair: HostPair = {
    client,
    server,
    clientV4: v4(1),
    serverV4: v4(2),
    clientV6: v6(1),
    serverV6: v6(2),
    exec(ns, cmd) {
      return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8' });
    },
    destroy() {
      for (const ns of [client, server]) {
        try {
          ip('netns', 'del', ns);
        } catch {
          /* already gone */
        }
        created.delete(ns);
      }
    },
  };
  try {
    for (const ns of [client, server]) {
      ip('netns', 'add', ns);
      created.add(ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('link', 'add', `${tag}a`, 'netns', client, 'type', 'veth', 'peer', 'name', `${tag}b`, 'netns', server);
    const setup = (ns: string, dev: string, h: number) => {
      ip('-n', ns, 'addr', 'add', `${v4(h)}/24`, 'dev', dev);
      ip('-n', ns, 'addr', 'add', `${v6(h)}/64`, 'dev', dev, 'nodad');
      ip('-n', ns, 'link', 'set', dev, 'up');
    };
    setup(client, `${tag}a`, 1);
    setup(server, `${tag}b`, 2);
  } catch (err) {
    pair.destroy();
    throw err;
  }
  return pair;
}
