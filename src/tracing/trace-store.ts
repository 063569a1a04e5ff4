import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { writeFileAtomically } from '../core/atomic-write.js';
import path from 'node:path';
import { z } from 'zod';
import { AspError, errorMessage, systemErrorCode } from '../core/asp-error.js';
import { parseJsonWith, TASK_ID_PATTERN } from '../config/task-spec.js';
import type { TraceDocument } from './trace-model.js';
import { parseTraceDocument } from './trace-schema.js';
import { byCodePoint } from '../core/code-point-order.js';

/** What Langfuse answered when it took a trace: kept so `traces ls` and reports can say "exported" and link to it. */
export interface ExportRecord {
  taskId: string;
  traceId: string;
  url: string;
  exportedAt: string;
  spans: number;
  scores: number;
}

/** A receipt as read back: its link goes into reports and pull requests, so only an http(s) URL passes. */
const exportRecordSchema = z.strictObject({
  taskId: z.string().regex(TASK_ID_PATTERN),
  traceId: z.string().regex(/^[0-9a-f]{32}$/),
  url: z.url({ protocol: /^https?$/ }).max(4096),
  exportedAt: z.string().refine((text) => !Number.isNaN(Date.parse(text)), 'must be an ISO time'),
  spans: z.number().int().min(0),
  scores: z.number().int().min(0),
});

/** Parses an export receipt; undefined when it is not one, or is the receipt of another trace. */
export function parseExportRecord(content: string, traceId: string): ExportRecord | undefined {
  const checked = parseJsonWith(content, exportRecordSchema);
  return 'value' in checked && checked.value.traceId === traceId ? checked.value : undefined;
}

/** One file of the store or the outbox: its document, or why it could not be read. */
export type StoredTrace = { file: string; document: TraceDocument; damaged?: undefined } | { file: string; document?: undefined; damaged: string };

/**
 * asp's own trace files under ASP_HOME:
 * - `traces/<task-id>.json`: the latest trace of each task (the same document as its `.asp/trace.json`);
 * - `outbox/<trace-id>.json`: traces waiting for Langfuse, named by trace id so two runs of one task never collide;
 * - `exported/<trace-id>.json`: the receipt of each trace Langfuse took.
 * Every write goes to a temporary file first and is renamed into place, so a crash never leaves half a trace.
 */
export class TraceStore {
  readonly tracesDir: string;
  readonly outboxDir: string;
  readonly exportedDir: string;

  constructor(home: string) {
    this.tracesDir = path.join(home, 'traces');
    this.outboxDir = path.join(home, 'outbox');
    this.exportedDir = path.join(home, 'exported');
  }

  tracePath(taskId: string): string {
    return path.join(this.tracesDir, `${checkedTaskId(taskId)}.json`);
  }

  outboxPath(traceId: string): string {
    return path.join(this.outboxDir, `${traceId}.json`);
  }

  async save(document: TraceDocument): Promise<string> {
    const file = this.tracePath(document.trace.name);
    await writeFileAtomically(file, JSON.stringify(document, null, 2) + '\n', { mode: 0o600, makeDir: true });
    return file;
  }

  /** The stored trace of a task; a task never stored is NOT_FOUND, an unreadable one says so (both exit 2). */
  async read(taskId: string): Promise<TraceDocument> {
    const file = this.tracePath(taskId);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (systemErrorCode(error) === 'ENOENT') {
        throw new AspError('NOT_FOUND', `no trace for task "${taskId}" in ${this.tracesDir}`, 'list the stored traces with asp traces ls');
      }
      throw new AspError('BAD_INPUT', `the trace of "${taskId}" is unreadable: ${errorMessage(error)}`, `check ${file}`);
    }
    try {
      return parseTraceDocument(text);
    } catch (error) {
      throw new AspError('BAD_INPUT', `the trace of "${taskId}" is damaged: ${errorMessage(error)}`, `check ${file}; the copy in the task's .asp/trace.json may be intact`);
    }
  }

  list(): Promise<StoredTrace[]> {
    return readAll(this.tracesDir);
  }

  /** The newest `limit` traces (by file time), oldest first: what a reader run at every publish can afford. */
  async recent(limit: number): Promise<StoredTrace[]> {
    return readFiles((await jsonFiles(this.tracesDir)).slice(-limit));
  }

  async enqueue(document: TraceDocument): Promise<string> {
    const file = this.outboxPath(document.trace.id);
    await writeFileAtomically(file, JSON.stringify(document) + '\n', { mode: 0o600, makeDir: true });
    return file;
  }

  outbox(): Promise<StoredTrace[]> {
    return readAll(this.outboxDir);
  }

  async queuedIds(): Promise<Set<string>> {
    return new Set((await jsonFiles(this.outboxDir)).map((file) => path.basename(file, '.json')));
  }

  /** Taken off the outbox only once Langfuse has taken it; gone already is fine. */
  async dequeue(traceId: string): Promise<void> {
    await rm(this.outboxPath(traceId), { force: true });
  }

  async recordExport(record: ExportRecord): Promise<void> {
    await writeFileAtomically(path.join(this.exportedDir, `${record.traceId}.json`), JSON.stringify(record, null, 2) + '\n', { mode: 0o600, makeDir: true });
  }

  async exportRecord(traceId: string): Promise<ExportRecord | undefined> {
    if (!/^[0-9a-f]{32}$/.test(traceId)) return undefined;
    try {
      return parseExportRecord(await readFile(path.join(this.exportedDir, `${traceId}.json`), 'utf8'), traceId);
    } catch {
      return undefined;
    }
  }
}

/** Task ids become file names here: the same alphabet as everywhere else, and never a path. */
export function checkedTaskId(taskId: string): string {
  if (!TASK_ID_PATTERN.test(taskId)) {
    throw new AspError('BAD_INPUT', `"${taskId}" is not a task id`, 'task ids are [a-z0-9][a-z0-9._-]{0,62}; list them with asp traces ls');
  }
  return taskId;
}

async function readAll(dir: string): Promise<StoredTrace[]> {
  return readFiles(await jsonFiles(dir));
}

function readFiles(files: string[]): Promise<StoredTrace[]> {
  return Promise.all(
    files.map(async (file): Promise<StoredTrace> => {
      try {
        return { file, document: parseTraceDocument(await readFile(file, 'utf8')) };
      } catch (error) {
        return { file, damaged: errorMessage(error) };
      }
    }),
  );
}

/** The `.json` files of a dir, oldest first (the order in which to push them); a missing dir is empty. */
async function jsonFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if (systemErrorCode(error) === 'ENOENT') return [];
    throw new AspError('WORKSPACE_FAILED', `cannot read ${dir}: ${errorMessage(error)}`, 'check ASP_HOME and its permissions');
  }
  const files = names.filter((name) => name.endsWith('.json')).map((name) => path.join(dir, name));
  const times = await Promise.all(
    files.map((file) =>
      stat(file).then(
        (info) => info.mtimeMs,
        () => 0,
      ),
    ),
  );
  return files
    .map((file, index) => ({ file, time: times[index] ?? 0 }))
    .sort((a, b) => a.time - b.time || byCodePoint(a.file, b.file))
    .map((entry) => entry.file);
}
