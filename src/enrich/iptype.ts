// Address classification for the *_ip_type tags and the loopback rule (SPEC §4.1).
import * as net from 'node:net';

export type IpType = 'private' | 'multicast' | 'loopback' | 'other';

function v4Octets(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** First 16 bits of an IPv6 address written in any valid form. */
function v6FirstHextet(ip: string): number {
  if (ip.startsWith('::')) return 0;
  return parseInt(ip.split(':')[0], 16);
}

export function ipType(ip: string): IpType {
  if (net.isIPv4(ip)) {
    const [a, b] = v4Octets(ip);
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
