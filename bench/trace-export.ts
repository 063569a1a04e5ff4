/**
 * bench/trace-export (P6): one synthetic run of 10,000 observations sent to a local Langfuse stand-in, through
 * the same exporter `asp run` and `asp traces push` use. Prints the export time and the peak RSS of this process.
 * Goal: under 2 s and 150 MB. The receiver runs in a child process, so its own memory is not counted.
 *
 *   npm run bench:trace-export [-- --observations 10000]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { exportToLangfuse } from '../src/tracing/langfuse-exporter.js';
import { childIdFor, TRACE_SCHEMA, traceIdFor, type Observation, type TraceDocument } from '../src/tracing/trace-model.js';
import { startLangfuseReceiver } from '../test/helpers/langfuse-receiver.js';

const GOAL_MS = 2000;
const GOAL_RSS_MB = 150;

if (process.argv[2] === '--receiver') {
  const receiver = await startLangfuseReceiver();
  process.stdout.write(JSON.stringify({ url: receiver.url, publicKey: receiver.publicKey, secretKey: receiver.secretKey }) + '\n');
  process.on('SIGTERM', () => void receiver.close().then(() => process.exit(0)));
} else {
  const count = Number(flag('--observations') ?? 10_000);
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--receiver'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const receiver = await receiverOf(child);
    const document = syntheticTrace(count);
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const receipt = await exportToLangfuse(document, { publicKey: receiver.publicKey, secretKey: receiver.secretKey, baseUrl: receiver.url }, { budgetMs: 60_000 });
    const ms = performance.now() - started;
    const peakMb = process.resourceUsage().maxRSS / 1024;
    const stats = z.object({ spans: z.number(), scores: z.number() }).parse(await (await fetch(`${receiver.url}/_receiver/stats`)).json());
    const ok = stats.spans === count && ms < GOAL_MS && peakMb < GOAL_RSS_MB;
    console.log(`trace export: ${count} observations, ${receipt.requests} requests, ${stats.spans} spans and ${stats.scores} scores received`);
    console.log(`  time      ${ms.toFixed(0)} ms (goal < ${GOAL_MS} ms)`);
    console.log(`  peak RSS  ${peakMb.toFixed(1)} MB (goal < ${GOAL_RSS_MB} MB; ${(rssBefore / 1024 / 1024).toFixed(1)} MB before the export)`);
    console.log(`  ${ok ? 'within the goals' : 'OUTSIDE the goals'}`);
    process.exitCode = ok ? 0 : 1;
  } finally {
    child.kill('SIGTERM');
  }
}

function flag(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function receiverOf(child: ChildProcess): Promise<{ url: string; publicKey: string; secretKey: string }> {
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', (chunk: Buffer) => {
      try {
        resolve(z.object({ url: z.string(), publicKey: z.string(), secretKey: z.string() }).parse(JSON.parse(chunk.toString())));
      } catch (error) {
        reject(error);
      }
    });
    child.once('exit', (code) => reject(new Error(`the receiver exited with ${code}`)));
  });
}

/** A root, then steps with a generation each, shaped like what the recorder builds (capped output tails). */
function syntheticTrace(count: number): TraceDocument {
  const traceId = traceIdFor('task-bench', 'run-bench');
  const start = Date.parse('2026-08-01T10:00:00.000Z');
  const at = (ms: number) => new Date(start + ms).toISOString();
  const rootId = childIdFor(traceId, 'root');
  const observations: Observation[] = [
    {
      id: rootId,
      traceId,
      parentObservationId: null,
      type: 'SPAN',
      name: 'task-bench',
      startTime: at(0),
      endTime: at(count * 10),
      level: 'DEFAULT',
      statusMessage: null,
      input: { task: 'benchmark' },
      output: { status: 'passed', exitCode: 0 },
      metadata: { kind: 'task' },
    },
  ];
  for (let index = 1; observations.length < count; index += 1) {
    const stepId = childIdFor(traceId, `step:${index}`);
    observations.push({
      id: stepId,
      traceId,
      parentObservationId: rootId,
      type: 'SPAN',
      name: `step-${index}`,
      startTime: at(index * 10),
      endTime: at(index * 10 + 8),
      level: 'DEFAULT',
      statusMessage: null,
      input: { command: `node tools/agent.js step-${index}` },
      output: { exitCode: 0, tail: `step ${index}: done\n`.repeat(8) },
      metadata: { kind: 'step', exitCode: 0, durationMs: 8, timedOut: false },
    });
    if (observations.length < count) {
      observations.push({
        id: childIdFor(traceId, `generation:${index}`),
        traceId,
        parentObservationId: stepId,
        type: 'GENERATION',
        name: `step-${index}:gpt-bench`,
        startTime: at(index * 10 + 1),
        endTime: at(index * 10 + 7),
        level: 'DEFAULT',
        statusMessage: null,
        input: null,
        output: null,
        metadata: { step: `step-${index}` },
        model: 'gpt-bench',
        usageDetails: { input: 1000, output: 200, total: 1200 },
        costDetails: { total: 0.0012 },
      });
    }
  }
  return {
    schema: TRACE_SCHEMA,
    trace: {
      id: traceId,
      name: 'task-bench',
      timestamp: at(0),
      input: { task: 'benchmark' },
      output: { status: 'passed', exitCode: 0, durationMs: count * 10 },
      tags: ['asp', 'passed'],
      metadata: {
        task_id: 'task-bench',
        target_repo: '/repos/bench',
        target_branch: 'main',
        workspace_path: '/tmp/asp-workspaces/task-bench',
        pr_url: null,
        hitl_required: false,
        hitl_status: 'not_required',
        run_id: 'run-bench',
        commit: null,
        image: 'asp-sandbox:bench',
        limits: { timeout_ms: 1_800_000 },
        exit_status: 'passed',
        exit_code: 0,
      },
    },
    observations,
    scores: ['probe_accuracy', 'probe_latency_ms', 'probe_cost_usd', 'probe_quality_score'].map((name) => ({
      id: childIdFor(traceId, `score:${name}`),
      traceId,
      name,
      value: 1,
      dataType: 'NUMERIC' as const,
      comment: null,
    })),
  };
}
