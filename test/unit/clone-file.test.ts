import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AspError, exitCodeFor } from '../../src/core/asp-error.js';
import { readCloneFile } from '../../src/config/clone-file.js';
import { readPipelineFile, resolveSteps } from '../../src/config/pipeline.js';
import { parseTaskSpec } from '../../src/config/task-spec.js';

const SECRET = 'root:$y$j9T$s3cr3t-hash-never-printed:19000:0:99999:7:::';
const scratch = () => mkdtempSync(path.join(os.tmpdir(), 'asp-clone-file-'));
const spec = parseTaskSpec({ repo: '.' });

/** A clone dir (as the host made it) and, beside it, files outside it. */
function layout(): { clone: string; outside: string } {
  const base = scratch();
  const clone = path.join(base, 'repo');
  mkdirSync(clone);
  const outside = path.join(base, 'outside');
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'shadow'), `${SECRET}\n`);
  writeFileSync(path.join(outside, 'other.pipeline.json'), JSON.stringify({ steps: [{ name: 'elsewhere', run: 'echo steps of another file' }] }));
  return { clone, outside };
}

async function refusal(action: () => Promise<unknown>): Promise<AspError> {
  const error = await action().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AspError);
  return error as AspError;
}

describe('files the host reads from a clone are read without following links (issue 14, item 5)', () => {
  it("reads the repository's own asp.pipeline.json when it is a regular file", async () => {
    const { clone } = layout();
    writeFileSync(path.join(clone, 'asp.pipeline.json'), JSON.stringify({ steps: [{ name: 'own', run: 'true' }] }));
    expect(await resolveSteps(spec, clone, clone)).toEqual([{ name: 'own', run: 'true', timeoutMs: spec.limits.timeout }]);
  });

  it.each([
    ['a file holding a secret', 'shadow'],
    ['another valid pipeline', 'other.pipeline.json'],
  ])('refuses an asp.pipeline.json linked to %s outside the clone, in one line that echoes nothing of it', async (_what, name) => {
    const { clone, outside } = layout();
    symlinkSync(path.join(outside, name), path.join(clone, 'asp.pipeline.json'));
    const error = await refusal(() => resolveSteps(spec, clone, clone));
    expect(error.code).toBe('BAD_INPUT');
    expect(exitCodeFor(error.code)).toBe(2);
    expect(error.message).toBe('asp.pipeline.json in the repository is a symbolic link: asp reads files of the repository only as regular files inside the clone');
    const said = `${error.message} ${error.hint}`;
    expect(said).not.toContain(SECRET.slice(0, 10));
    expect(said).not.toContain(outside);
    expect(said).not.toContain('elsewhere');
  });

  it('refuses a link that stays inside the clone too: a link is never followed', async () => {
    const { clone } = layout();
    writeFileSync(path.join(clone, 'real.json'), JSON.stringify({ steps: [{ name: 'a', run: 'true' }] }));
    symlinkSync('real.json', path.join(clone, 'asp.pipeline.json'));
    expect((await refusal(() => resolveSteps(spec, clone, clone))).message).toContain('is a symbolic link');
  });

  it('refuses a dangling link as a link, not as a missing file', async () => {
    const { clone } = layout();
    symlinkSync('/nonexistent/pipeline.json', path.join(clone, 'asp.pipeline.json'));
    expect((await refusal(() => resolveSteps(spec, clone, clone))).message).toContain('is a symbolic link');
  });

  it('refuses a file reached through a linked directory, as resolving outside the clone', async () => {
    const { clone, outside } = layout();
    symlinkSync(outside, path.join(clone, 'config'));
    const error = await refusal(() => readCloneFile(clone, 'config/shadow', { maxBytes: 1024, hint: 'h' }));
    expect(error.message).toBe('config/shadow in the repository resolves outside the clone (through a linked directory)');
  });

  it('refuses a FIFO without hanging, and a directory, as not regular files', async () => {
    const { clone } = layout();
    execFileSync('mkfifo', [path.join(clone, 'asp.pipeline.json')]);
    expect((await refusal(() => resolveSteps(spec, clone, clone))).message).toBe('asp.pipeline.json in the repository is not a regular file');
    const other = layout().clone;
    mkdirSync(path.join(other, 'asp.pipeline.json'));
    expect((await refusal(() => resolveSteps(spec, other, other))).message).toBe('asp.pipeline.json in the repository is not a regular file');
  });

  it('refuses a file past the size limit, and says there are no steps when there is no file', async () => {
    const { clone } = layout();
    writeFileSync(path.join(clone, 'big.json'), 'x'.repeat(2048));
    expect((await refusal(() => readCloneFile(clone, 'big.json', { maxBytes: 1024, hint: 'h' }))).message).toBe('big.json in the repository is larger than 1024 bytes');
    expect(await readCloneFile(clone, 'absent.json', { maxBytes: 1024, hint: 'h' })).toBeUndefined();
    expect((await refusal(() => resolveSteps(spec, clone, clone))).message).toContain('no steps to run');
  });

  it("never quotes a pipeline file's text in a JSON syntax error (V8 quotes the start of it)", async () => {
    const { outside } = layout();
    const error = await refusal(() => readPipelineFile(path.join(outside, 'shadow')));
    expect(error.message).toBe(`pipeline ${path.join(outside, 'shadow')} is not valid JSON: Unexpected token`);
    expect(error.message).not.toContain('root');
  });
});
