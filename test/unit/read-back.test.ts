import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tarStream from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { AspError } from '../../src/core/asp-error.js';
import { parseJournalLine, BatchJournal } from '../../src/batch/journal.js';
import { readSettings } from '../../src/config/settings.js';
import { approveTask } from '../../src/delivery/approve-task.js';
import { loadDeliveries, parseDeliveries, saveDeliveries } from '../../src/delivery/delivery-plan.js';
import { packForSandbox } from '../../src/workspace/workspace-tar.js';
import { silentLog } from '../../src/core/log.js';
import { readProbeInputs } from '../../src/tracing/probe-inputs.js';
import { parseTraceDocument } from '../../src/tracing/trace-schema.js';
import { parseExportRecord, TraceStore } from '../../src/tracing/trace-store.js';
import { plantedHostNames } from '../../src/workspace/host-state.js';
import { OWNER_FILE, readOwnerFile, workspacePaths } from '../../src/workspace/host-workspace.js';
import { parseResultFile } from '../../src/workspace/result-file.js';
import { deliveryEntry } from '../helpers/delivery-fixtures.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

const scratch = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), prefix));
const TASK = 'task-1';
const good = () => {
  const { repoDir: _repoDir, ...entry } = deliveryEntry(TASK, { hitlStatus: 'not_required', error: 'push rejected' });
  return { schema: 'asp.delivery/v1', taskId: TASK, entries: [entry] };
};
type Saved = ReturnType<typeof good>;

/** The saved plan with one change made to it, as text. */
function plan(change: (saved: Saved) => unknown): string {
  const saved = good();
  const changed = change(saved) ?? saved;
  return JSON.stringify(changed);
}

describe('reading back what asp saved: every file is checked at the edge, a bad one is reported and never acted on', () => {
  describe('the delivery plan', () => {
    it('takes the plan asp wrote', () => {
      expect(
        parseDeliveries(
          plan(() => undefined),
          TASK,
        ),
      ).toMatchObject({ entries: [{ repo: null, plan: { remote: 'git://127.0.0.1:9/org/app.git' } }] });
    });

    it.each([
      ['truncated', () => '{"schema":"asp.delivery/v1","entries":[', /not JSON/],
      ['an array', () => '[]', /not an asp.delivery\/v1 document/],
      ['another schema', () => plan((saved) => ({ ...saved, schema: 'asp.delivery/v2' })), /schema/],
      ['without entries', () => plan((saved) => ({ ...saved, entries: [] })), /entries/],
      ['of another task', () => plan((saved) => ({ ...saved, taskId: 'other' })), /another task/],
      ['a plan of another task inside', () => plan((saved) => void (saved.entries[0]!.plan.taskId = 'other')), /another task/],
    ])('refuses a damaged plan: %s', (_what, content, reason) => {
      expect(parseDeliveries(content(), TASK)).toEqual({ reason: expect.stringMatching(reason) });
    });

    it.each([
      ['a clone path of its choosing', (saved: Saved) => void Object.assign(saved.entries[0]!, { repoDir: '/home/me/private-repo' }), /unknown field.*repoDir/],
      ['a repository name that is a path', (saved: Saved) => void saved.entries.push({ ...saved.entries[0]!, repo: '../../home/me/x' as never }), /repo/],
      ['a remote that is an option of git push', (saved: Saved) => void (saved.entries[0]!.plan.remote = '--receive-pack=touch /tmp/pwned'), /remote/],
      ['a remote with a line break', (saved: Saved) => void (saved.entries[0]!.plan.remote = 'git://a\nb'), /remote/],
      ['a branch that is an option', (saved: Saved) => void (saved.entries[0]!.plan.change.branch = '-f'), /branch/],
      ['a branch that is a range', (saved: Saved) => void (saved.entries[0]!.plan.change.branch = 'main..x'), /branch/],
      ['a ref other than the fetched changes', (saved: Saved) => void (saved.entries[0]!.plan.change.ref = 'refs/heads/main'), /ref/],
      ['a head that is not a commit', (saved: Saved) => void (saved.entries[0]!.plan.change.head = 'HEAD~1'), /head/],
      ['an unknown status', (saved: Saved) => void Object.assign(saved.entries[0]!.outcome, { hitlStatus: 'approved-by-ceo' }), /hitlStatus/],
      ['the same repository twice', (saved: Saved) => void saved.entries.push(saved.entries[0]!), /each repository once/],
    ])('refuses a hostile plan: %s', (_what, change, reason) => {
      expect(parseDeliveries(plan(change), TASK)).toEqual({ reason: expect.stringMatching(reason) });
    });

    it('reads only .asp-host/: a plan in .asp/ (where the sandbox writes) is nothing', async () => {
      const workspace = workspacePaths(scratch('asp-plan-'), TASK);
      mkdirSync(workspace.artifactsDir, { recursive: true });
      mkdirSync(workspace.stateDir, { recursive: true });
      writeFileSync(
        path.join(workspace.artifactsDir, 'delivery.json'),
        plan(() => undefined),
      );
      expect(await loadDeliveries(workspace)).toEqual({ kind: 'none' });
      await saveDeliveries(workspace, [deliveryEntry(TASK, { hitlStatus: 'awaiting_approval' }, '/ignored')]);
      // The clone is the host's own, computed from the workspace: never the path that was in memory, never one from a file.
      expect(await loadDeliveries(workspace)).toMatchObject({ kind: 'saved', entries: [{ repo: null, repoDir: workspace.repoDir }] });
      expect(readFileSync(path.join(workspace.stateDir, 'delivery.json'), 'utf8')).not.toContain('/ignored');
    });

    it('asp approve refuses a damaged plan in one line, and pushes nothing', async () => {
      const root = scratch('asp-approve-');
      const workspace = workspacePaths(root, TASK);
      mkdirSync(workspace.stateDir, { recursive: true });
      mkdirSync(workspace.repoDir, { recursive: true });
      writeOwner(workspace.dir, TASK);
      writeFileSync(
        path.join(workspace.stateDir, 'delivery.json'),
        plan((saved) => void (saved.entries[0]!.plan.remote = '--upload-pack=evil')),
      );
      const settings = { ...readSettings({ HOME: root }), workspacesRoot: root, home: path.join(root, 'home') };
      const error = await approveTask(TASK, { deny: false }, { settings, log: silentLog, warn: () => {} }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(AspError);
      expect(error).toMatchObject({ code: 'BAD_INPUT', message: expect.stringMatching(/delivery plan of task-1 .* is damaged: .*remote.*; nothing was pushed/) });
      expect((error as AspError).message).not.toContain('\n');
    });

    it('asp approve refuses --branch for a task that pushes nothing, and pushes nothing', async () => {
      const root = scratch('asp-approve-');
      const workspace = workspacePaths(root, TASK);
      mkdirSync(workspace.stateDir, { recursive: true });
      mkdirSync(workspace.repoDir, { recursive: true });
      writeOwner(workspace.dir, TASK);
      writeFileSync(
        path.join(workspace.stateDir, 'delivery.json'),
        plan((saved) => void Object.assign(saved.entries[0]!.plan, { push: false, pr: false, hitl: true })),
      );
      const settings = { ...readSettings({ HOME: root }), workspacesRoot: root, home: path.join(root, 'home') };
      await expect(approveTask(TASK, { deny: false, branch: 'asp/other' }, { settings, log: silentLog, warn: () => {} })).rejects.toMatchObject({
        code: 'BAD_INPUT',
        message: `--branch given, but task ${TASK} pushes nothing (it was run without --push or --pr)`,
      });
    });

    it('asp approve refuses --branch with --deny, and a branch that is not a plain name', async () => {
      const settings = readSettings({ HOME: scratch('asp-approve-') });
      await expect(approveTask(TASK, { deny: true, branch: 'x' }, { settings, log: silentLog, warn: () => {} })).rejects.toMatchObject({
        code: 'BAD_INPUT',
        message: '--branch and --deny do not go together',
      });
      await expect(approveTask(TASK, { deny: false, branch: '--force' }, { settings, log: silentLog, warn: () => {} })).rejects.toMatchObject({
        code: 'BAD_INPUT',
        message: expect.stringContaining('plain git branch name'),
      });
    });
  });

  describe('the owner file', () => {
    it.each([
      ['truncated', '{"taskId":"task-1"'],
      ['a forged status', JSON.stringify({ ...owner(TASK), status: 'owned-by-me' })],
      ['a supervisor that is not host/pid/start', JSON.stringify({ ...owner(TASK), supervisor: '../../etc' })],
      ['an expiry that is not a time', JSON.stringify({ ...owner(TASK), expiresAt: 'never' })],
    ])("a damaged one (%s) makes the dir not asp's", async (_what, content) => {
      const dir = scratch('asp-owner-');
      writeFileSync(path.join(dir, OWNER_FILE), content);
      expect(await readOwnerFile(dir)).toBeUndefined();
    });
  });

  describe('the result', () => {
    const result = { taskId: TASK, runId: 'r1', status: 'failed', exitCode: 1, workspacePath: '/w/task-1', kept: true, delivery: null, steps: [], warnings: [] };
    it('takes a result of the task, and refuses damaged or foreign ones', () => {
      expect(parseResultFile(JSON.stringify(result), TASK)).toMatchObject({ status: 'failed', kept: true });
      expect(parseResultFile('{"taskId":', TASK)).toEqual({ problem: 'not JSON' });
      expect(parseResultFile(JSON.stringify({ ...result, status: 'pwned' }), TASK)).toEqual({ problem: expect.stringContaining('status') });
      expect(parseResultFile(JSON.stringify({ ...result, kept: 'yes' }), TASK)).toEqual({ problem: expect.stringContaining('kept') });
      expect(parseResultFile(JSON.stringify({ ...result, taskId: 'other' }), TASK)).toEqual({ problem: 'it is the result of other' });
    });
  });

  describe('the batch journal', () => {
    const end = { event: 'end', key: 'a', at: '2025-01-01T00:00:00.000Z', attempt: 1, status: 'passed', exitCode: 0 };
    it.each([
      ['a status --resume would skip on, of no kind asp writes', { ...end, status: 'ok' }],
      ['an exit code that is not a number', { ...end, exitCode: '0' }],
      ['a field asp never writes', { ...end, command: 'rm -rf /' }],
      ['a task id that is a path', { ...end, taskId: '../../etc' }],
      ['no time', { ...end, at: 'yesterday' }],
    ])('refuses a record with %s', (_what, record) => {
      expect(parseJournalLine(JSON.stringify(record))).toBeUndefined();
    });

    it('counts damaged lines in the middle, and runs their tasks again', () => {
      const journal = new BatchJournal(scratch('asp-journal-'), 'b');
      journal.append({ event: 'end', key: 'a', at: end.at, attempt: 1, status: 'passed', exitCode: 0 });
      writeFileSync(journal.file, readFileSync(journal.file, 'utf8') + JSON.stringify({ ...end, key: 'b', status: 'done' }) + '\nnot json\n');
      journal.append({ event: 'end', key: 'c', at: end.at, attempt: 1, status: 'failed', exitCode: 1 });
      const { done, damaged } = journal.finished();
      expect([...done.keys()]).toEqual(['a', 'c']);
      expect(damaged).toBe(2);
    });
  });

  describe('the trace store and the outbox', () => {
    it('refuses a damaged or hostile trace document', async () => {
      const document = await traceFixture({ taskId: TASK });
      expect(() => parseTraceDocument(JSON.stringify(document).slice(0, 50))).toThrow(/not JSON/);
      expect(() => parseTraceDocument(JSON.stringify({ ...document, schema: 'asp.trace/v0' }))).toThrow(/not an asp.trace\/v1 document/);
      const foreign = structuredClone(document);
      foreign.observations[0]!.traceId = 'f'.repeat(32);
      expect(() => parseTraceDocument(JSON.stringify(foreign))).toThrow(/is not the trace id/);
    });

    it('lists a damaged outbox file as damaged, next to the good ones', async () => {
      const home = scratch('asp-outbox-');
      const store = new TraceStore(home);
      await store.enqueue(await traceFixture({ taskId: TASK }));
      mkdirSync(store.outboxDir, { recursive: true });
      writeFileSync(path.join(store.outboxDir, 'broken.json'), '{"schema":"asp.trace/v1","trace":');
      const listed = await store.outbox();
      expect(listed.filter((entry) => entry.document)).toHaveLength(1);
      expect(listed.find((entry) => entry.damaged)).toMatchObject({ file: expect.stringContaining('broken.json'), damaged: expect.stringMatching(/not JSON/) });
    });

    it('takes an export receipt only with an http(s) link of the same trace', () => {
      const traceId = 'a'.repeat(32);
      const receipt = { taskId: TASK, traceId, url: 'https://langfuse.example/trace/x', exportedAt: '2025-01-01T00:00:00Z', spans: 3, scores: 4 };
      expect(parseExportRecord(JSON.stringify(receipt), traceId)).toEqual(receipt);
      expect(parseExportRecord(JSON.stringify({ ...receipt, url: 'javascript:alert(1)' }), traceId)).toBeUndefined();
      expect(parseExportRecord(JSON.stringify(receipt), 'b'.repeat(32))).toBeUndefined();
      expect(parseExportRecord(JSON.stringify({ ...receipt, spans: -1 }), traceId)).toBeUndefined();
      expect(parseExportRecord('{"url":', traceId)).toBeUndefined();
    });
  });

  describe('the artifacts asp interprets (written by the sandbox)', () => {
    it.each([
      ['test_results.json', '{"passed": 5, "total": 3}', 'testsProblem', /passed is more than total/],
      ['test_results.json', '{"passed": "all", "total": 3}', 'testsProblem', /passed/],
      ['code_review.json', '{"score": 7}', 'reviewProblem', /score/],
      ['code_review.json', '{"score":', 'reviewProblem', /not JSON/],
      ['usage.json', '[{"model": "m", "costUsd": -5}]', 'usageProblem', /costUsd/],
      ['planning.json', '{"complexity": "huge"}', 'complexityProblem', /complexity/],
    ])('%s holding %s is reported, not used', async (file, content, problem, reason) => {
      const dir = scratch('asp-artifacts-');
      writeFileSync(path.join(dir, file), content);
      const inputs = await readProbeInputs(dir);
      expect(inputs[problem as 'testsProblem']).toMatch(reason);
      expect(inputs.tests).toBeUndefined();
      expect(inputs.review).toBeUndefined();
      expect(inputs.usage).toEqual([]);
      expect(inputs.complexity).toBeUndefined();
    });

    it('an artifact too big to be a report is not read at all', async () => {
      const dir = scratch('asp-artifacts-');
      writeFileSync(path.join(dir, 'code_review.json'), `{"score": 1, "pad": "${'x'.repeat(1024 * 1024)}"}`);
      expect((await readProbeInputs(dir)).reviewProblem).toMatch(/larger than/);
    });
  });
});

describe('host state by location', () => {
  it("reports a sandbox file under a name of asp's own files, at any depth", () => {
    expect(plantedHostNames(['plan.json', 'delivery.json', 'sub/result.json', '.asp-host/x.txt', 'deep/a/.asp-owner.json', 'results.json', 'trace.json.bak'])).toEqual([
      'delivery.json',
      'sub/result.json',
      '.asp-host/x.txt',
      'deep/a/.asp-owner.json',
    ]);
  });

  it('packs the task file from .asp-host/ into the sandbox as .asp/task.json', async () => {
    const dir = scratch('asp-pack-');
    mkdirSync(path.join(dir, '.asp-host'));
    writeFileSync(path.join(dir, '.asp-host', 'task.json'), '{"taskId":"t"}');
    const names: Array<[string, string]> = [];
    const extract = tarStream.extract();
    extract.on('entry', (header, stream, next) => {
      let body = '';
      stream.on('data', (chunk: unknown) => {
        body += String(chunk);
      });
      stream.on('end', () => {
        names.push([header.name, body]);
        next();
      });
    });
    const done = new Promise<void>((resolve) => extract.on('finish', () => resolve()));
    packForSandbox(dir, [{ from: '.asp-host/task.json', as: '.asp/task.json' }]).pipe(extract);
    await done;
    expect(names).toEqual([['.asp/task.json', '{"taskId":"t"}']]);
  });
});

function owner(taskId: string) {
  return { taskId, runId: 'r1', supervisor: 'box/200/5', expiresAt: '2025-01-01T00:00:00.000Z', keep: false, status: 'failed', createdAt: '2025-01-01T00:00:00.000Z' };
}

function writeOwner(dir: string, taskId: string): void {
  writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify(owner(taskId)));
}
