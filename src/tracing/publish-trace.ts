import { errorMessage } from '../core/asp-error.js';
import type { Settings } from '../config/settings.js';
import type { Log } from '../core/log.js';
import { ExportFailure } from './export-failure.js';
import { estimateScores, loadProbeFit } from './probe-estimate.js';
import { readProbeInputs } from './probe-inputs.js';
import { addUsageGenerations, PROBE_SCORES, probeScores, USAGE_FILE_SOURCE } from './probe-scores.js';
import type { Score, TraceDocument } from './trace-model.js';
import type { TraceMode } from './trace-mode.js';
import { TraceStore } from './trace-store.js';
import { copyForUser, writeHostFile } from '../workspace/host-state.js';

/** What became of a run's trace: taken by Langfuse, waiting in the outbox, or kept local only. */
export type TraceDelivery = 'exported' | 'queued' | 'local';

export interface PublishOptions {
  settings: Settings;
  /** Resolved by the CLI (`--trace`); when absent: Langfuse if keys are set, else local. */
  mode?: TraceMode | undefined;
  /** The task's host `.asp/`: where the steps' artifacts are read from and the user's copy of `trace.json` goes. */
  artifactsDir: string;
  /** The task's `.asp-host/`: where the trace's master copy goes (the one asp reads back; the sandbox cannot write there). */
  stateDir: string;
  /**
   * Where `test_results.json` (probe_accuracy) is read from when not `artifactsDir`: the clean-room check's own
   * artifacts, since the check, not the steps, decides whether the change works.
   */
  testsDir?: string | null | undefined;
  /**
   * The passed and total of the repository's own test reports (JUnit, TAP): probe_accuracy's when no
   * test_results.json says otherwise.
   */
  reportedTests?: { passed: number; total: number } | undefined;
  /** Steps the task meant to run (for probe_accuracy when there are no test results). */
  plannedSteps?: number | undefined;
  log: Log;
  /** The run's own warning channel: one line each, also in the task result. */
  warn: (message: string) => void;
  signal?: AbortSignal | undefined;
  budgetMs?: number | undefined;
  /**
   * An earlier publish of this trace by the same run (e.g. before the HITL gate). When Langfuse failed then, the
   * update only replaces the outbox entry: one warning and one wait per run, not one per publish.
   */
  previous?: Published | undefined;
}

export interface Published {
  delivery: TraceDelivery;
  tracePath: string;
  url?: string;
}

/**
 * The end of every run's trace: PROBE scores in, the local JSON written (the floor, always), then Langfuse when
 * it is on. A Langfuse that is down, refusing or slow costs at most the flush budget and one warning line; the
 * trace then waits in the outbox. A disk with no room for the local JSON costs a warning too: it goes to the other place.
 */
export async function publishTrace(document: TraceDocument, options: PublishOptions): Promise<Published> {
  const inputs = await readProbeInputs(options.artifactsDir, options.testsDir, options.reportedTests);
  // A document published before (then decided at the HITL gate) has its usage generations already.
  if (!document.observations.some((observation) => observation.metadata.source === USAGE_FILE_SOURCE)) {
    addUsageGenerations(document, inputs.usage);
    if (inputs.usageProblem) options.warn(`usage not read: ${inputs.usageProblem}`);
  }
  // PROBE scores are recomputed on every publish; other scores (the HITL decision) are kept as they are.
  const others = document.scores.filter((score) => !(PROBE_SCORES as readonly string[]).includes(score.name));
  document.scores = [...probeScores(document, inputs, { plannedSteps: options.plannedSteps }), ...others];
  if (inputs.complexityProblem && !options.previous) options.warn(`complexity not read: ${inputs.complexityProblem}`);

  const store = new TraceStore(options.settings.home);
  if (inputs.complexity !== undefined) document.scores.push(...(await probeEstimates(store, document, inputs.complexity, options)));

  const workspace = { artifactsDir: options.artifactsDir, stateDir: options.stateDir };
  // The task's dir and the trace store are often on different disks: a trace that does not fit one goes to the
  // other, and the run says in one line where it is (or that neither had room).
  let tracePath: string;
  let local: string | undefined;
  try {
    await writeHostFile(workspace, 'trace', JSON.stringify(document, null, 2) + '\n');
    tracePath = await copyForUser(workspace, 'trace');
  } catch (error) {
    local = errorMessage(error);
    tracePath = store.tracePath(document.trace.name);
  }
  const stored = await store.save(document).then(
    () => undefined,
    (error: unknown) => errorMessage(error),
  );
  if (local && stored)
    options.warn(`the trace was kept neither in ${options.stateDir} (${local}) nor in the trace store ${store.tracesDir} (${stored}); only Langfuse or the outbox may still have it`);
  else if (local) options.warn(`the trace could not be written to ${options.stateDir} (${local}): it is in the trace store, ${tracePath}`);
  else if (stored) options.warn(`the trace store ${store.tracesDir} was not written: ${stored}`);

  const taskId = document.trace.name;
  const target = options.settings.langfuse;
  const mode = options.mode ?? (target ? 'langfuse' : 'json');
  if (!target || mode === 'off') return { delivery: 'local', tracePath };
  if (mode === 'json' || options.previous?.delivery === 'queued') {
    // Deferred export: the trace is sent by a later `asp traces push` (e.g. from a machine that can reach Langfuse).
    const queued = await enqueue(store, document, options);
    if (queued) options.log.info({ taskId, outbox: queued }, `trace queued for Langfuse: send it with asp traces push ${taskId}`);
    return { delivery: queued ? 'queued' : 'local', tracePath };
  }
  try {
    // Loaded only when a trace goes to Langfuse: the SDK and OpenTelemetry cost every other run start-up time.
    const { exportToLangfuse } = await import('./langfuse-exporter.js');
    const receipt = await exportToLangfuse(document, { ...target, environment: options.settings.trace.environment }, { budgetMs: options.budgetMs, signal: options.signal });
    await store
      .recordExport({ taskId, traceId: receipt.traceId, url: receipt.url, exportedAt: new Date().toISOString(), spans: receipt.spans, scores: receipt.scores })
      .catch((error: unknown) => options.log.debug({ taskId }, `export receipt not written: ${errorMessage(error)}`));
    options.log.info({ taskId, url: receipt.url, spans: receipt.spans, ms: receipt.durationMs }, `trace sent to Langfuse: ${receipt.url}`);
    return { delivery: 'exported', tracePath, url: receipt.url };
  } catch (error) {
    const reason = error instanceof ExportFailure ? error.message : `unexpected export error: ${errorMessage(error)}`;
    const queued = await enqueue(store, document, options);
    options.warn(queued ? `${reason}; the trace waits in the outbox: send it with asp traces push ${taskId}` : `${reason}; the trace is only in ${tracePath}`);
    return { delivery: queued ? 'queued' : 'local', tracePath };
  }
}

/** Estimate-vs-actual scores once the store holds enough finished tasks; a store that cannot be read costs a warning, never the run. */
async function probeEstimates(store: TraceStore, document: TraceDocument, complexity: number, options: PublishOptions): Promise<Score[]> {
  try {
    const { fit } = await loadProbeFit(store, { excludeTask: document.trace.name });
    if (fit.status === 'ready') return estimateScores(document, fit.model, complexity);
    options.log.debug({ taskId: document.trace.name, samples: fit.n }, `no PROBE estimate yet: ${fit.needed} more finished task(s) with a complexity needed`);
  } catch (error) {
    options.warn(`no PROBE estimate: the trace store ${store.tracesDir} was not read: ${errorMessage(error)}`);
  }
  return [];
}

async function enqueue(store: TraceStore, document: TraceDocument, options: PublishOptions): Promise<string | undefined> {
  try {
    return await store.enqueue(document);
  } catch (error) {
    options.warn(`the outbox ${store.outboxDir} was not written: ${errorMessage(error)}`);
    return undefined;
  }
}

/**
 * A run's trace through its states (finished; decided at the HITL gate; decided later by asp approve): each state
 * is published once, through `publish`, which remembers the last publish so a Langfuse that failed once costs one
 * wait and one warning per run, not one per state.
 */
export class TracePublication {
  #published: Published | undefined;

  constructor(
    readonly document: TraceDocument,
    private readonly options: Omit<PublishOptions, 'previous'>,
  ) {}

  /** The last publish; undefined before the first. */
  get published(): Published | undefined {
    return this.#published;
  }

  async publish(): Promise<Published> {
    this.#published = await publishTrace(this.document, { ...this.options, previous: this.#published });
    return this.#published;
  }
}
