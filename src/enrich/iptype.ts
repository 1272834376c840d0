// Address classification for the *_ip_type tags and the loopback rule (SPEC §4.1).

export type IpType = 'private' | 'multicast' | 'loopback' | 'other';

/** First 16 bits of an IPv6 address written in any valid form. */
function v6FirstHextet(ip: string): number {
  if (ip.startsWith('::')) return 0;
  return parseInt(ip.slice(0, ip.indexOf(':')), 16);
}

/** Addresses as this collector formats them: dotted quads, or IPv6 text (which has a colon). */
export function ipType(ip: string): IpType {
  if (!ip.includes(':')) {
    // this runs for every new connection: read the first two octets without splitting
    const dot = ip.indexOf('.');
    const a = Number(ip.slice(0, dot));
    const b = parseInt(ip.slice(dot + 1), 10);
    if (a === 127) return 'loopback';
    if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
    if (a >= 224 && a <= 239) return 'multicast';
    return 'other';
  }
  if (ip === '::1') return 'loopback';
  const h = v6FirstHextet(ip);
  if ((h & 0xfe00) === 0xfc00) return 'private'; // fc00::/7 unique local
  if ((h & 0xff00) === 0xff00) return 'multicast'; // ff00::/8
  return 'other';
}

export function isLoopback(ip: string): boolean {
  return ipType(ip) === 'loopback';
}

/** Ephemeral (client) ports as the original collector collapses them: 32768–60999. */
export function isEphemeralPort(port: number): boolean {
  return port >= 32768 && port <= 60999;
}
