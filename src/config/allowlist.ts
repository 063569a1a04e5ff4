/**
 * The egress allowlist (src/egress/ enforces it): what `--allow-host NAME[:PORT]` and a task's `"network": {"allow": [...]}` name, parsed and
 * matched on the host. An entry is a DNS name (`registry.npmjs.org`), a one-label wildcard (`*.example.org`: one more
 * label, never two, never the bare `example.org`) or an IP address (`127.0.0.1`, `[::1]`); the port is 443 unless
 * given. The host never dials a name that no entry names, nor an IP literal no entry names exactly.
 */
import { isIP } from 'node:net';

export const DEFAULT_EGRESS_PORT = 443;

export interface AllowEntry {
  kind: 'name' | 'wildcard' | 'address';
  /** Lower case, no trailing dot; for a wildcard the suffix after `*.`; for an address its canonical text. */
  host: string;
  port: number;
}

/** A DNS label: letters, digits and hyphens, not starting or ending with a hyphen, at most 63. */
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * Parses one entry; a string says what is wrong with it (for `--allow-host` and the task spec alike). The entry comes
 * back in its normal form (`name:port`), so an entry parsed twice is the same.
 */
export function parseAllowEntry(text: string): AllowEntry | string {
  const raw = text.trim();
  if (!raw) return 'is empty: give a host name, e.g. registry.npmjs.org or registry.npmjs.org:443';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) return `"${raw}" is a URL: give the host name alone (and a port after ":"), not a scheme`;
  if (/[/?#@\s]/.test(raw)) return `"${raw}" has a path, a query, credentials or spaces: give only NAME[:PORT]`;
  if (raw.includes('%')) return `"${raw}" has a "%": an IPv6 zone (fe80::1%eth0) or an escape has no place in an allowlist`;
  let host = raw;
  let portText: string | undefined;
  if (raw.startsWith('[')) {
    // An IPv6 address is written in brackets, its port after them: [::1]:8443.
    const close = raw.indexOf(']');
    if (close === -1) return `"${raw}" opens "[" without closing it: write an IPv6 address as [::1] or [::1]:443`;
    host = raw.slice(1, close);
    const rest = raw.slice(close + 1);
    if (rest && !rest.startsWith(':')) return `"${raw}" has text after "]": write [ADDRESS]:PORT`;
    portText = rest ? rest.slice(1) : undefined;
    if (isIP(host) !== 6) return `"${host}" in brackets is not an IPv6 address`;
  } else {
    const colons = raw.split(':').length - 1;
    if (colons > 1) return `"${raw}" looks like an IPv6 address: put it in brackets, e.g. [${raw}]:443`;
    if (colons === 1) [host = '', portText] = raw.split(':');
  }
  let port = DEFAULT_EGRESS_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return `"${raw}" has port "${portText}": a port is a number from 1 to 65535`;
    port = Number(portText);
  }
  const address = canonicalAddress(host);
  if (address) return { kind: 'address', host: address, port };
  const name = host.toLowerCase().replace(/\.$/, '');
  const wildcard = name.startsWith('*.');
  const suffix = wildcard ? name.slice(2) : name;
  if (name.includes('*') && (!wildcard || suffix.includes('*'))) return `"${raw}": a wildcard is "*." before a name (*.example.org), standing for exactly one label`;
  const labels = suffix.split('.');
  if (!suffix || !labels.every((label) => LABEL.test(label))) return `"${host}" is not a host name: letters, digits, "-" and "." only (write an IDN in its xn-- form)`;
  // A resolver reads 127.1, 2130706433 or 0x7f.1 as an address: a name never ends in a numeric label.
  if (/^(0x[0-9a-f]*|\d+)$/.test(labels[labels.length - 1] ?? '')) return `"${host}" reads as an IP address in a short or numeric form: write the address in full (e.g. 127.0.0.1), or a host name`;
  // `*.org` would open a whole top-level domain.
  if (wildcard && labels.length < 2) return `"${raw}" would allow a whole top-level domain: name at least two labels after "*."`;
  if (suffix.length > 253) return `"${host}" is longer than a host name may be (253 characters)`;
  return { kind: wildcard ? 'wildcard' : 'name', host: suffix, port };
}

/** The entry as `--allow-host` takes it back: `name:port`, `*.suffix:port`, `[v6]:port`. */
export function formatAllowEntry(entry: AllowEntry): string {
  const host = entry.kind === 'wildcard' ? `*.${entry.host}` : entry.kind === 'address' && entry.host.includes(':') ? `[${entry.host}]` : entry.host;
  return `${host}:${entry.port}`;
}

/** An IP address in one canonical text (IPv6 compressed and lower case), or undefined for anything else. */
export function canonicalAddress(text: string): string | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  // Node's isIP takes an IPv6 zone (fe80::1%eth0), which no URL parser and no allowlist entry does.
  if (bare.includes('%')) return undefined;
  const version = isIP(bare);
  if (version === 4) return bare.split('.').map(Number).join('.');
  if (version === 6) return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  return undefined;
}

/** What the host decides of a connection's target before it resolves anything. */
export type TargetMatch = { allowed: true; entry: AllowEntry } | { allowed: false; reason: string };

/** The allowlist of one task, as the host consults it for every connection. */
export class Allowlist {
  constructor(readonly entries: readonly AllowEntry[]) {}

  static parse(texts: readonly string[]): Allowlist {
    return new Allowlist(
      texts.map((text) => {
        const entry = parseAllowEntry(text);
        if (typeof entry === 'string') throw new Error(`allow-host ${entry}`);
        return entry;
      }),
    );
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  /** Whether a connection to `host:port` may be dialed at all; an IP literal must be named exactly. */
  match(host: string, port: number): TargetMatch {
    const address = canonicalAddress(host);
    if (address) {
      const entry = this.entries.find((candidate) => candidate.kind === 'address' && candidate.host === address && candidate.port === port);
      return entry
        ? { allowed: true, entry }
        : { allowed: false, reason: `${formatHostPort(address, port)} is an IP address not on the allowlist (allow it exactly with --allow-host ${formatHostPort(address, port)})` };
    }
    const name = host.toLowerCase().replace(/\.$/, '');
    const named = this.entries.filter((entry) => (entry.kind === 'name' && entry.host === name) || (entry.kind === 'wildcard' && isOneLabelUnder(name, entry.host)));
    const entry = named.find((candidate) => candidate.port === port);
    if (entry) return { allowed: true, entry };
    // The reason names the host as it was asked for, not lower-cased: a secret in it is then still masked.
    const asked = host.replace(/\.$/, '');
    if (named.length) return { allowed: false, reason: `${asked} is allowed on port ${named.map((candidate) => candidate.port).join(', ')}, not ${port} (--allow-host ${asked}:${port})` };
    return { allowed: false, reason: `${asked}:${port} is not on the allowlist (--allow-host ${asked}${port === DEFAULT_EGRESS_PORT ? '' : `:${port}`})` };
  }

  /** Whether `address` is named exactly for `port`: then it may be dialed even where it is loopback or private. */
  namesAddress(address: string, port: number): boolean {
    const canonical = canonicalAddress(address);
    return this.entries.some((entry) => entry.kind === 'address' && entry.host === canonical && entry.port === port);
  }
}

function isOneLabelUnder(name: string, suffix: string): boolean {
  if (!name.endsWith(`.${suffix}`)) return false;
  const label = name.slice(0, -suffix.length - 1);
  return LABEL.test(label);
}

export function formatHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
