import { describe, expect, it } from 'vitest';
import { refusedAddressKind } from '../../src/egress/address-policy.js';
import { Allowlist, canonicalAddress, formatAllowEntry, parseAllowEntry } from '../../src/config/allowlist.js';
import { parseTaskSpec } from '../../src/config/task-spec.js';
import { AspError } from '../../src/core/asp-error.js';
import { parseProtocolLine } from '../../src/protocol/parse.js';

const entry = (text: string) => {
  const parsed = parseAllowEntry(text);
  if (typeof parsed === 'string') throw new Error(parsed);
  return formatAllowEntry(parsed);
};

describe('--allow-host entries', () => {
  it('takes names, one-label wildcards and addresses, in one normal form, port 443 unless given', () => {
    expect(entry('registry.npmjs.org')).toBe('registry.npmjs.org:443');
    expect(entry('Registry.NPMJS.org.:8443')).toBe('registry.npmjs.org:8443');
    expect(entry('*.pythonhosted.org')).toBe('*.pythonhosted.org:443');
    expect(entry('127.0.0.1:8080')).toBe('127.0.0.1:8080');
    expect(entry('[::1]:8080')).toBe('[::1]:8080');
    expect(entry('[0:0::1]')).toBe('[::1]:443');
    expect(entry('[FD00:EC2::254]')).toBe('[fd00:ec2::254]:443');
    expect(entry('localhost')).toBe('localhost:443');
    // Parsing the normal form again changes nothing.
    for (const text of ['registry.npmjs.org:443', '*.pythonhosted.org:443', '[::1]:8080']) expect(entry(text)).toBe(text);
  });

  it('refuses what is not NAME[:PORT], each with what to write instead', () => {
    const refused: Array<[string, RegExp]> = [
      ['', /is empty/],
      ['https://registry.npmjs.org', /is a URL: give the host name alone/],
      ['git+ssh://github.com', /is a URL/],
      ['registry.npmjs.org/simple', /has a path/],
      ['user@registry.npmjs.org', /credentials/],
      ['registry.npmjs.org?x=1', /a query/],
      ['registry.npmjs.org:0', /a port is a number from 1 to 65535/],
      ['registry.npmjs.org:65536', /a port is a number from 1 to 65535/],
      ['registry.npmjs.org:-1', /a port is a number from 1 to 65535/],
      ['registry.npmjs.org:http', /a port is a number from 1 to 65535/],
      ['registry.npmjs.org:', /a port is a number/],
      ['*', /not a host name|wildcard/],
      ['*.org', /whole top-level domain/],
      ['a.*.org', /a wildcard is "\*\." before a name/],
      ['*.*.org', /a wildcard is "\*\." before a name/],
      ['*example.org', /a wildcard is "\*\." before a name/],
      ['bad_name.org', /is not a host name/],
      ['-bad.org', /is not a host name/],
      ['a..b', /is not a host name/],
      [`${'a'.repeat(64)}.org`, /is not a host name/],
      ['::1', /put it in brackets/],
      ['[::1', /opens "\[" without closing it/],
      ['[::1]x', /text after "\]"/],
      ['[not-v6]:80', /is not an IPv6 address/],
      ['exa mple.org', /spaces/],
      ['[fe80::1%eth0]', /zone/],
      ['fe80::1%25eth0', /zone/],
      ['127.1', /short or numeric form/],
      ['2130706433', /short or numeric form/],
      ['0x7f.1', /short or numeric form/],
      ['1.2.3.4.', /short or numeric form/],
    ];
    for (const [text, message] of refused) {
      const parsed = parseAllowEntry(text);
      expect(typeof parsed, text).toBe('string');
      expect(parsed, text).toMatch(message);
    }
  });

  it('in a task spec and a batch line: normalised, and a bad entry names its index', () => {
    const spec = parseTaskSpec({ repo: '.', network: { allow: ['Pypi.org', '*.pythonhosted.org:443'] } });
    expect(spec.network).toEqual({ allow: ['pypi.org:443', '*.pythonhosted.org:443'], maxBytes: 2 * 1024 ** 3, maxConnections: 32, connectionTimeout: 600_000 });
    expect(parseTaskSpec({ repo: '.', network: { allow: spec.network?.allow } }).network?.allow).toEqual(spec.network?.allow);
    expect(() => parseTaskSpec({ repo: '.', network: { allow: ['pypi.org', 'https://files.pythonhosted.org'] } }, 'tasks.jsonl:3')).toThrow(
      /^tasks\.jsonl:3: network\.allow\.1 "https:\/\/files\.pythonhosted\.org" is a URL/,
    );
    expect(() => parseTaskSpec({ repo: '.', network: { allow: ['pypi.org'], maxConnections: 0 } })).toThrow(AspError);
    expect(() => parseTaskSpec({ repo: '.', network: { allow: ['pypi.org'], maxBytes: 'lots' } })).toThrow(/network\.maxBytes "lots" is not a size/);
    expect(() => parseTaskSpec({ repo: '.', network: { allow: ['pypi.org'], open: true } })).toThrow(/unknown field\(s\) "open"/);
    expect(() => parseTaskSpec({ repo: '.', network: { allow: Array.from({ length: 257 }, (_, index) => `h${index}.org`) } })).toThrow(/at most 256 hosts/);
  });
});

describe('matching a connection against the allowlist', () => {
  const list = Allowlist.parse(['registry.npmjs.org', '*.pythonhosted.org', 'git.internal:8080', '10.1.2.3:443', '[::1]:9000']);

  it('allows a listed name on its port, and a wildcard one label deep only', () => {
    expect(list.match('registry.npmjs.org', 443).allowed).toBe(true);
    expect(list.match('REGISTRY.npmjs.org.', 443).allowed).toBe(true);
    expect(list.match('files.pythonhosted.org', 443).allowed).toBe(true);
    expect(list.match('a.b.pythonhosted.org', 443)).toMatchObject({ allowed: false, reason: expect.stringContaining('not on the allowlist') });
    expect(list.match('pythonhosted.org', 443).allowed).toBe(false);
    expect(list.match('evilpythonhosted.org', 443).allowed).toBe(false);
    expect(list.match('registry.npmjs.org.evil.com', 443).allowed).toBe(false);
    expect(list.match('git.internal', 8080).allowed).toBe(true);
    expect(list.match('git.internal', 443)).toMatchObject({ allowed: false, reason: 'git.internal is allowed on port 8080, not 443 (--allow-host git.internal:443)' });
  });

  it('allows an IP literal only when that exact address and port are listed; a name never covers an address', () => {
    expect(list.match('10.1.2.3', 443).allowed).toBe(true);
    expect(list.match('10.1.2.3', 80).allowed).toBe(false);
    expect(list.match('10.1.2.4', 443)).toMatchObject({ allowed: false, reason: '10.1.2.4:443 is an IP address not on the allowlist (allow it exactly with --allow-host 10.1.2.4:443)' });
    expect(list.match('::1', 9000).allowed).toBe(true);
    expect(list.match('0:0:0:0:0:0:0:1', 9000).allowed).toBe(true);
    expect(list.match('::ffff:10.1.2.3', 443).allowed).toBe(false);
    expect(list.namesAddress('10.1.2.3', 443)).toBe(true);
    expect(list.namesAddress('10.1.2.3', 8080)).toBe(false);
    expect(Allowlist.parse(['*.example.org']).match('1.2.3.4', 443).allowed).toBe(false);
    // A zone id is no address and no name: refused, never thrown (Node's isIP takes it, URL does not).
    expect(list.match('fe80::1%eth0', 443).allowed).toBe(false);
    expect(canonicalAddress('fe80::1%eth0')).toBeUndefined();
  });
});

describe('addresses the host refuses to dial', () => {
  it('refuses loopback, private, shared, link-local, metadata, multicast and IPv4-embedding addresses, IPv4-mapped ones too', () => {
    const refused: Array<[string, string]> = [
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['::1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['10.0.0.7', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['192.168.1.1', 'private'],
      ['100.64.0.1', 'private'],
      ['fd12:3456::1', 'private'],
      ['::ffff:10.0.0.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['fe80::1', 'link-local'],
      ['100.100.100.200', 'cloud metadata'],
      ['168.63.129.16', 'cloud metadata'],
      ['fd00:ec2::254', 'cloud metadata'],
      ['224.0.0.1', 'multicast or reserved'],
      ['255.255.255.255', 'multicast or reserved'],
      ['ff02::1', 'multicast or reserved'],
      ['64:ff9b::7f00:1', 'IPv4-embedding (NAT64, 6to4, Teredo)'],
      ['2002:7f00:1::', 'IPv4-embedding (NAT64, 6to4, Teredo)'],
      ['::7f00:1', 'IPv4-embedding (NAT64, 6to4, Teredo)'],
      ['::ffff:0:7f00:1', 'IPv4-embedding (NAT64, 6to4, Teredo)'],
      ['fec0::1', 'private (site-local)'],
    ];
    for (const [address, kind] of refused) expect(refusedAddressKind(address), address).toBe(kind);
  });

  it('lets ordinary public addresses through', () => {
    for (const address of ['1.1.1.1', '8.8.8.8', '172.32.0.1', '104.16.0.1', '2606:4700::1111', '2a00:1450:4001::200e']) expect(refusedAddressKind(address), address).toBeUndefined();
  });
});

describe('the protocol line that opens a channel', () => {
  const line = (host: string) => JSON.stringify({ asp: 1, type: 'net.open', id: 'c1', step: 's', host, port: 443, via: 'connect' });
  it('takes a name or an address, and nothing with a zone, brackets, spaces or escapes', () => {
    expect(parseProtocolLine(line('registry.npmjs.org')).kind).toBe('message');
    expect(parseProtocolLine(line('2001:db8::1')).kind).toBe('message');
    for (const host of ['fe80::1%eth0', '[::1]', 'a b', 'a%2eb', 'x\ny', '']) expect(parseProtocolLine(line(host)).kind, host).toBe('invalid');
  });
});
