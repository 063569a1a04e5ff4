/**
 * Which addresses the host refuses to dial for a sandbox, whatever name led there: loopback (the host's own
 * services), private and shared ranges (the host's network), link-local (cloud metadata lives at 169.254.169.254),
 * the metadata addresses outside it, and what is not unicast. An address the allowlist names exactly is the only
 * way past (a private registry at 10.1.2.3). The check is on the address the host then dials, never on a name, so a
 * name that resolves to a refused address (DNS rebinding, `localtest.me`) is refused too.
 */
import { BlockList, isIP } from 'node:net';

const RANGES: Array<{ what: string; v4?: Array<[string, number]>; v6?: Array<[string, number]> }> = [
  // First, so a reader sees what it is: the metadata services outside link-local: AWS's IPv6 one, Alibaba's, Azure's wire server.
  {
    what: 'cloud metadata',
    v4: [
      ['100.100.100.200', 32],
      ['168.63.129.16', 32],
    ],
    v6: [['fd00:ec2::254', 128]],
  },
  { what: 'loopback', v4: [['127.0.0.0', 8]], v6: [['::1', 128]] },
  { what: 'unspecified', v4: [['0.0.0.0', 8]], v6: [['::', 128]] },
  {
    what: 'private',
    v4: [
      ['10.0.0.0', 8],
      ['172.16.0.0', 12],
      ['192.168.0.0', 16],
      ['100.64.0.0', 10],
      ['192.0.0.0', 24],
      ['198.18.0.0', 15],
    ],
    v6: [['fc00::', 7]],
  },
  { what: 'link-local', v4: [['169.254.0.0', 16]], v6: [['fe80::', 10]] },
  // Deprecated site-local IPv6, private in all but name.
  { what: 'private (site-local)', v6: [['fec0::', 10]] },
  {
    what: 'multicast or reserved',
    v4: [
      ['224.0.0.0', 4],
      ['240.0.0.0', 4],
    ],
    v6: [['ff00::', 8]],
  },
  // Addresses that carry an IPv4 address inside (NAT64, 6to4, Teredo) could reach a refused one through a gateway.
  {
    what: 'IPv4-embedding (NAT64, 6to4, Teredo)',
    v6: [
      ['64:ff9b::', 96],
      ['64:ff9b:1::', 48],
      ['2002::', 16],
      ['2001::', 32],
      // IPv4-compatible (::a.b.c.d) and SIIT-translated (::ffff:0:a.b.c.d) forms.
      ['::', 96],
      ['::ffff:0:0:0', 96],
    ],
  },
];

const lists = RANGES.map(({ what, v4, v6 }) => {
  const list = new BlockList();
  for (const [net, prefix] of v4 ?? []) list.addSubnet(net, prefix, 'ipv4');
  for (const [net, prefix] of v6 ?? []) list.addSubnet(net, prefix, 'ipv6');
  return { what, list };
});

/** Kinds never dialed even when the allowlist names the address: 0.0.0.0 is the host itself, multicast no one host. */
export const NEVER_DIALED: ReadonlySet<string> = new Set(['unspecified', 'multicast or reserved']);

/** Why asp refuses to dial `address`, or undefined when it is an ordinary public unicast address. */
export function refusedAddressKind(address: string): string | undefined {
  const version = isIP(address);
  if (version === 0) return 'not an IP address';
  const type = version === 4 ? 'ipv4' : 'ipv6';
  // BlockList checks an IPv4-mapped IPv6 address (::ffff:127.0.0.1) against the IPv4 ranges too.
  return lists.find(({ list }) => list.check(address, type))?.what;
}
