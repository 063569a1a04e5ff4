import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { checkEntry, DEFAULT_EXTRACT_LIMITS, extractChecked } from '../../src/workspace/workspace-tar.js';

const limits = DEFAULT_EXTRACT_LIMITS;

describe('tar entry checks', () => {
  it('accepts plain files and directories under the root', () => {
    expect(checkEntry({ name: '.asp/plan.json', type: 'file', size: 10 }, '.asp', limits)).toEqual({ ok: true, relativePath: 'plan.json' });
    expect(checkEntry({ name: '.asp/sub/', type: 'directory' }, '.asp', limits)).toEqual({ ok: true, relativePath: 'sub' });
  });

  it.each([
    [{ name: '/etc/passwd', type: 'file' }, 'absolute path'],
    [{ name: '.asp/../../etc/passwd', type: 'file' }, '".." in path'],
    [{ name: '.asp/link', type: 'symlink' }, 'symlink entries are not allowed'],
    [{ name: '.asp/hard', type: 'link' }, 'link entries are not allowed'],
    [{ name: '.asp/dev', type: 'character-device' }, 'character-device entries are not allowed'],
    [{ name: '.asp/fifo', type: 'fifo' }, 'fifo entries are not allowed'],
    [{ name: 'repo/x', type: 'file' }, 'outside .asp/'],
    [{ name: '.asp/a\0b', type: 'file' }, 'NUL in name'],
  ])('rejects %o', (header, reason) => {
    expect(checkEntry(header, '.asp', limits)).toEqual({ ok: false, reason });
  });

  it('rejects files over the size cap and trees nested too deep', () => {
    expect(checkEntry({ name: '.asp/big', type: 'file', size: limits.maxFileBytes + 1 }, '.asp', limits).ok).toBe(false);
    expect(checkEntry({ name: `.asp/${'d/'.repeat(40)}f`, type: 'file', size: 1 }, '.asp', limits)).toEqual({ ok: false, reason: 'nested too deep' });
  });
});

function archive(entries: Array<{ name: string; type?: tarStream.Header['type']; content?: string; linkname?: string }>): Readable {
  const pack = tarStream.pack();
  for (const entry of entries) {
    if (entry.type === 'file' || entry.type === undefined) pack.entry({ name: entry.name, type: 'file' }, entry.content ?? '');
    else pack.entry({ name: entry.name, type: entry.type, ...(entry.linkname ? { linkname: entry.linkname } : {}) });
  }
  pack.finalize();
  return pack as unknown as Readable;
}

describe('checked extraction', () => {
  it("writes good entries and never writes the bad ones; a name of asp's own files is data like any other", async () => {
    const destination = mkdtempSync(path.join(os.tmpdir(), 'asp-extract-'));
    const result = await extractChecked(
      archive([
        { name: '.asp/', type: 'directory' },
        { name: '.asp/planning.json', content: '{"ok":true}' },
        { name: '.asp/nested/', type: 'directory' },
        { name: '.asp/nested/notes.txt', content: 'hi' },
        { name: '.asp/escape', type: 'symlink', linkname: '/etc/passwd' },
        { name: '.asp/../../outside.txt', content: 'pwned' },
        { name: '.asp/trace.json', content: '{"forged":true}' },
      ]),
      destination,
      { root: '.asp' },
    );
    // asp's own state lives outside the destination (.asp-host/), so nothing is refused for its name alone.
    expect(result.files.map((file) => file.path).sort()).toEqual(['nested/notes.txt', 'planning.json', 'trace.json']);
    expect(result.rejected.map((entry) => entry.reason).sort()).toEqual(['".." in path', 'symlink entries are not allowed']);
    expect(readFileSync(path.join(destination, 'planning.json'), 'utf8')).toBe('{"ok":true}');
    expect(existsSync(path.join(destination, 'escape'))).toBe(false);
    expect(readFileSync(path.join(destination, 'trace.json'), 'utf8')).toBe('{"forged":true}');
    expect(existsSync(path.join(path.dirname(destination), 'outside.txt'))).toBe(false);
    expect(readdirSync(destination).sort()).toEqual(['nested', 'planning.json', 'trace.json']);
  });

  it('writes artifacts as plain data, never executable', async () => {
    const destination = mkdtempSync(path.join(os.tmpdir(), 'asp-extract-'));
    const pack = tarStream.pack();
    pack.entry({ name: '.asp/run.sh', mode: 0o4755 }, '#!/bin/sh\n');
    pack.finalize();
    await extractChecked(pack as unknown as Readable, destination, { root: '.asp' });
    expect(statSync(path.join(destination, 'run.sh')).mode & 0o7777).toBe(0o644);
  });

  it('stops writing when the total size cap is reached', async () => {
    const destination = mkdtempSync(path.join(os.tmpdir(), 'asp-extract-'));
    const result = await extractChecked(
      archive([
        { name: '.asp/a', content: 'x'.repeat(600) },
        { name: '.asp/b', content: 'y'.repeat(600) },
      ]),
      destination,
      { root: '.asp', limits: { ...limits, maxTotalBytes: 1000 } },
    );
    expect(result.files.map((file) => file.path)).toEqual(['a']);
    expect(result.rejected).toEqual([{ name: '.asp/b', reason: 'total output over 1000 bytes' }]);
  });
});
