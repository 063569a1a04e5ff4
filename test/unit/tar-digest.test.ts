import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TarDigest } from '../../sandbox/tar-digest.js';

/** A tree with what `.asp/` may hold: long, multi-byte and odd names, empty and big files, a link and a dir. */
function tree(): { dir: string; files: Record<string, Buffer> } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-tar-digest-'));
  const files: Record<string, Buffer> = {
    '.asp/plain.txt': Buffer.from('hello\n'),
    '.asp/empty': Buffer.alloc(0),
    '.asp/big.bin': randomBytes(3 * 1024 * 1024 + 17),
    [`.asp/${'long-name-'.repeat(20)}.json`]: Buffer.from('{"long":true}'),
    [`.asp/${'d'.repeat(90)}/${'e'.repeat(90)}/deep.txt`]: Buffer.from('deep'),
    '.asp/ünïcödé-名前.txt': Buffer.from('utf8'),
    '.asp/line\nbreak': Buffer.from('odd'),
    '.asp/exactly-512': Buffer.alloc(512, 1),
  };
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  symlinkSync('plain.txt', path.join(dir, '.asp', 'link'));
  return { dir, files };
}

const sha = (content: Buffer) => createHash('sha256').update(content).digest('hex');

describe("the runner's tar digest (it lists .asp/ from tar's stdout, never opening a file a step wrote)", () => {
  it.each(['gnu', 'posix', 'ustar'])('digests every regular file of a GNU tar in %s format, fed in odd-sized pieces', (format) => {
    const { dir, files } = tree();
    // ustar cannot hold names past 256 bytes: that format gets the tree without the longest one.
    const wanted = format === 'ustar' ? Object.fromEntries(Object.entries(files).filter(([name]) => Buffer.byteLength(name) < 150)) : files;
    const archive = execFileSync('tar', ['-c', '-f', '-', `--format=${format}`, '-C', dir, ...Object.keys(wanted), '.asp/link'], { maxBuffer: 64 * 1024 * 1024 });
    const digest = new TarDigest();
    for (let offset = 0, size = 1; offset < archive.length; offset += size, size = (size * 7 + 3) % 70_001 || 1) digest.push(archive.subarray(offset, offset + size));
    expect(Object.fromEntries(digest.files.map((file) => [file.name, [file.bytes, file.sha256]]))).toEqual(
      Object.fromEntries(Object.entries(wanted).map(([name, content]) => [name, [content.length, sha(content)]])),
    );
  });

  it('stops at the end-of-archive marker and ignores what follows', () => {
    const { dir } = tree();
    const archive = execFileSync('tar', ['-c', '-f', '-', '-C', dir, '.asp/plain.txt']);
    const digest = new TarDigest();
    digest.push(Buffer.concat([archive, Buffer.from('garbage after the end '.repeat(100))]));
    expect(digest.files).toEqual([{ name: '.asp/plain.txt', bytes: 6, sha256: sha(readFileSync(path.join(dir, '.asp/plain.txt'))) }]);
  });
});
