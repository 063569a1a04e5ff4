import { createHash, type Hash } from 'node:crypto';

/** A regular file of a tar: its name in the archive, size and SHA-256. */
export interface TarFile {
  name: string;
  bytes: number;
  sha256: string;
}

const BLOCK = 512;

/**
 * Reads a tar as it streams (ustar, with PAX `x` records and GNU `L` long names, as GNU tar writes them) and
 * digests every regular file in it, holding no more than one header at a time. The runner lists `.asp/` this way:
 * tar, run as the step user, reads the files steps wrote; the runner only reads tar's stdout.
 */
export class TarDigest {
  readonly files: TarFile[] = [];
  private held = Buffer.alloc(0);
  /** Bytes of the current entry's data still to come, then its padding. */
  private dataLeft = 0;
  private padLeft = 0;
  /** Where the current entry's data goes: a file's hash, or a PAX / long-name record being read. */
  private sink: { kind: 'file'; name: string; size: number; hash: Hash } | { kind: 'record'; type: 'x' | 'L'; parts: Buffer[] } | { kind: 'skip' } = { kind: 'skip' };
  private nextName: string | undefined;
  private nextSize: number | undefined;
  private done = false;

  push(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length && !this.done) {
      if (this.dataLeft > 0) {
        const piece = rest.subarray(0, this.dataLeft);
        this.dataLeft -= piece.length;
        rest = rest.subarray(piece.length);
        if (this.sink.kind === 'file') this.sink.hash.update(piece);
        else if (this.sink.kind === 'record') this.sink.parts.push(piece);
        if (this.dataLeft === 0) this.finishEntry();
        continue;
      }
      if (this.padLeft > 0) {
        const skipped = Math.min(this.padLeft, rest.length);
        this.padLeft -= skipped;
        rest = rest.subarray(skipped);
        continue;
      }
      const need = BLOCK - this.held.length;
      this.held = Buffer.concat([this.held, rest.subarray(0, need)]);
      rest = rest.subarray(need);
      if (this.held.length === BLOCK) {
        const header = this.held;
        this.held = Buffer.alloc(0);
        this.onHeader(header);
      }
    }
  }

  private onHeader(header: Buffer): void {
    if (header.every((byte) => byte === 0)) {
      this.done = true; // the end-of-archive marker
      return;
    }
    const type = String.fromCharCode(header[156] ?? 0);
    const size = this.nextSize ?? sizeField(header.subarray(124, 136));
    const ustar = header.subarray(257, 262).toString('latin1') === 'ustar';
    const prefix = ustar ? cString(header.subarray(345, 500)) : '';
    const name = this.nextName ?? (prefix ? `${prefix}/${cString(header.subarray(0, 100))}` : cString(header.subarray(0, 100)));
    if (type === 'x' || type === 'L') this.sink = { kind: 'record', type, parts: [] };
    else {
      this.nextName = undefined;
      this.nextSize = undefined;
      this.sink = type === '0' || type === '\0' || type === '7' ? { kind: 'file', name, size, hash: createHash('sha256') } : { kind: 'skip' };
    }
    // A PAX record's own size is in its header, never in the record before it.
    const dataSize = type === 'x' || type === 'L' ? sizeField(header.subarray(124, 136)) : size;
    this.dataLeft = dataSize;
    this.padLeft = (BLOCK - (dataSize % BLOCK)) % BLOCK;
    if (dataSize === 0) this.finishEntry();
  }

  private finishEntry(): void {
    const sink = this.sink;
    if (sink.kind === 'file') this.files.push({ name: sink.name, bytes: sink.size, sha256: sink.hash.digest('hex') });
    else if (sink.kind === 'record' && sink.type === 'L') this.nextName = cString(Buffer.concat(sink.parts));
    else if (sink.kind === 'record') {
      const record = parsePax(Buffer.concat(sink.parts));
      if (record.path !== undefined) this.nextName = record.path;
      if (record.size !== undefined && /^\d+$/.test(record.size)) this.nextSize = Number(record.size);
    }
    this.sink = { kind: 'skip' };
  }
}

/** A NUL-terminated field. */
function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/** An octal size field, or GNU's base-256 form (high bit set) for sizes past 8 GiB. */
function sizeField(field: Buffer): number {
  if ((field[0] ?? 0) & 0x80) {
    let value = 0;
    for (const byte of field.subarray(1)) value = value * 256 + byte;
    return value;
  }
  const text = cString(field).trim();
  return text ? parseInt(text, 8) : 0;
}

/** PAX extended header records: `<length> <key>=<value>\n`, the length in bytes (names may be multi-byte). */
function parsePax(data: Buffer): Record<string, string> {
  const record: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    const length = Number(data.subarray(offset, space).toString('latin1'));
    if (space <= offset || !Number.isInteger(length) || length <= space - offset + 1 || offset + length > data.length) break;
    const line = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const equals = line.indexOf('=');
    if (equals > 0) record[line.slice(0, equals)] = line.slice(equals + 1);
    offset += length;
  }
  return record;
}
