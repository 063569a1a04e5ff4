import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchJournal } from '../../src/batch/journal.js';
import { readSettings } from '../../src/config/settings.js';
import { writeFileAtomically } from '../../src/core/atomic-write.js';
import { silentLog } from '../../src/core/log.js';
import { publishTrace } from '../../src/tracing/publish-trace.js';
import { parseTraceDocument } from '../../src/tracing/trace-schema.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

/** Root can mount a small tmpfs: a disk that fills, made in the test (issue 21: the host's disk fills). */
const canMount = process.getuid?.() === 0;

describe.skipIf(!canMount)('a full disk on the host', () => {
  let full: string;
  let roomy: string;
  beforeAll(() => {
    full = mkdtempSync(path.join(os.tmpdir(), 'asp-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'asp-full', full]);
    // Filled to the last block: nothing more fits.
    try {
      writeFileSync(path.join(full, 'filler'), Buffer.alloc(128 * 1024));
    } catch {
      // ENOSPC: what it is for.
    }
    roomy = mkdtempSync(path.join(os.tmpdir(), 'asp-roomy-'));
  });
  afterAll(() => {
    execFileSync('umount', [full]);
    rmSync(full, { recursive: true, force: true });
    rmSync(roomy, { recursive: true, force: true });
  });

  it('an atomic write that does not fit leaves neither a partial file nor its temporary one, and the old file whole', async () => {
    rmSync(path.join(full, 'filler'));
    writeFileSync(path.join(full, 'state.json'), '{"old":true}\n');
    try {
      writeFileSync(path.join(full, 'filler'), Buffer.alloc(128 * 1024));
    } catch {
      // full again
    }
    await expect(writeFileAtomically(path.join(full, 'state.json'), JSON.stringify({ big: 'x'.repeat(100_000) }))).rejects.toThrow(/ENOSPC/);
    expect(readFileSync(path.join(full, 'state.json'), 'utf8')).toBe('{"old":true}\n');
    expect(readdirSync(full).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('a task dir with no room: the trace goes to the trace store, and one warning says where it is', async () => {
    const document = await traceFixture({ taskId: 'task-full-dir' });
    const warnings: string[] = [];
    const stateDir = path.join(full, 'state');
    mkdirSync(stateDir, { recursive: true });
    const published = await publishTrace(document, {
      settings: { ...readSettings({}), home: roomy, langfuse: undefined },
      artifactsDir: path.join(full, 'artifacts'),
      stateDir,
      log: silentLog,
      warn: (message) => warnings.push(message),
    });
    expect(published.delivery).toBe('local');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`^the trace could not be written to ${stateDir} \\(.*ENOSPC.*\\): it is in the trace store, ${roomy}/traces/task-full-dir\\.json$`));
    expect(published.tracePath).toBe(path.join(roomy, 'traces', 'task-full-dir.json'));
    expect(parseTraceDocument(readFileSync(published.tracePath, 'utf8')).trace.id).toBe(document.trace.id);
    expect(readdirSync(stateDir)).toEqual([]);
  });

  it('an ASP_HOME with no room: the trace is in the task dir, and one warning says the store was not written', async () => {
    const document = await traceFixture({ taskId: 'task-full-home' });
    const warnings: string[] = [];
    const task = path.join(roomy, 'task');
    mkdirSync(path.join(task, 'state'), { recursive: true });
    mkdirSync(path.join(task, 'artifacts'), { recursive: true });
    const published = await publishTrace(document, {
      settings: { ...readSettings({}), home: full, langfuse: undefined },
      artifactsDir: path.join(task, 'artifacts'),
      stateDir: path.join(task, 'state'),
      log: silentLog,
      warn: (message) => warnings.push(message),
    });
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^the trace store ${full}/traces was not written: .*ENOSPC`))]);
    expect(existsSync(published.tracePath)).toBe(true);
    expect(parseTraceDocument(readFileSync(published.tracePath, 'utf8')).trace.id).toBe(document.trace.id);
    expect(existsSync(path.join(full, 'traces')) ? readdirSync(path.join(full, 'traces')).filter((name) => name.endsWith('.tmp')) : []).toEqual([]);
  });

  it('a batch journal that runs out of room is cut back to its last whole line, and reads and goes on once there is room', () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-journal-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'asp-journal-full', home]);
    try {
      const journal = new BatchJournal(home, 'b-1');
      // Another file on the same disk, to give room back later.
      const filler = path.join(home, 'filler');
      writeFileSync(filler, Buffer.alloc(4096));
      const record = (key: string) => ({ event: 'end' as const, key, at: new Date(0).toISOString(), attempt: 1, status: 'passed' as const, outputTail: 'x'.repeat(1500) });
      let written = 0;
      let failure: unknown;
      for (; written < 100; written += 1) {
        try {
          journal.append(record(`t${written}`));
        } catch (error) {
          failure = error;
          break;
        }
      }
      expect(String(failure)).toMatch(/ENOSPC/);
      expect(written).toBeGreaterThan(0);
      // Nothing torn: every line there is whole, and --resume sees exactly the tasks whose ends were written.
      expect(readFileSync(journal.file, 'utf8').endsWith('\n')).toBe(true);
      expect(journal.finished()).toMatchObject({ damaged: 0 });
      expect(journal.finished().done.size).toBe(written);
      // Room again: the next line lands whole after the last one, and nothing before it is damaged.
      rmSync(filler);
      journal.append(record('after'));
      const after = journal.finished();
      expect(after.damaged).toBe(0);
      expect(after.done.size).toBe(written + 1);
      expect(after.done.has('after')).toBe(true);
    } finally {
      execFileSync('umount', [home]);
      rmSync(home, { recursive: true, force: true });
    }
  });
});
