import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { probeReport, registerProbeCommand } from '../../src/cli/probe-command.js';
import { readSettings } from '../../src/config/settings.js';
import { silentLog } from '../../src/core/log.js';
import { readProbeInputs } from '../../src/tracing/probe-inputs.js';
import { fitLine, fitProbeModel, sampleOf, type ProbeSample } from '../../src/tracing/probe-model.js';
import { probeScore } from '../../src/tracing/probe-scores.js';
import { publishTrace } from '../../src/tracing/publish-trace.js';
import type { TaskStatus, TraceDocument } from '../../src/tracing/trace-model.js';
import { markdownReport } from '../../src/tracing/trace-report.js';
import { TraceStore } from '../../src/tracing/trace-store.js';
import { traceFixture } from '../helpers/trace-fixtures.js';

const scratch = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), prefix));

/** Task i: complexity i, 250 ms of host phases + 1000·i ms of step, 150·i tokens, $0.001·i. */
async function task(index: number, options: { complexity?: number | null; status?: TaskStatus } = {}): Promise<TraceDocument> {
  const document = await traceFixture({
    taskId: `task-${index}`,
    steps: [{ name: 'code', durationMs: 1000 * index, generation: { model: 'gpt-test', input: 100 * index, output: 50 * index, costUsd: 0.001 * index } }],
    ...(options.status ? { status: options.status } : {}),
  });
  const complexity = options.complexity === undefined ? index : options.complexity;
  if (complexity !== null) document.scores.push(probeScore(document, 'probe_complexity', complexity, 'test'));
  return document;
}

async function storeWith(documents: TraceDocument[]): Promise<string> {
  const home = scratch('asp-probe-home-');
  const store = new TraceStore(home);
  for (const document of documents) await store.save(document);
  return home;
}

function report(home: string, json = false): Promise<{ code: number; out: string }> {
  let out = '';
  return probeReport({ settings: readSettings({ ASP_HOME: home }), json, stdout: (text) => (out += text) }).then((code) => ({ code, out }));
}

describe('PROBE regression', () => {
  it('fits y = a + b·x by least squares, with R² and MAPE', () => {
    // meanX 2.5, meanY 4.75, Sxx 5, Sxy 9.5: slope 1.9, intercept 0; residuals .1 .2 -.7 .4 (SSres .7, SStot 18.75).
    const fit = fitLine([1, 2, 3, 4], [2, 4, 5, 8]);
    expect(fit.slope).toBeCloseTo(1.9, 12);
    expect(fit.intercept).toBeCloseTo(0, 12);
    expect(fit.r2).toBeCloseTo(1 - 0.7 / 18.75, 12);
    // |errors| / actual: .05, .05, .14, .05.
    expect(fit.mape).toBeCloseTo(0.0725, 12);
  });

  it('estimates the mean when every task had the same complexity, and has no R² when every value is the same', () => {
    expect(fitLine([3, 3, 3], [1, 2, 6])).toMatchObject({ slope: 0, intercept: 3, r2: 0 });
    expect(fitLine([1, 2, 3], [5, 5, 5])).toMatchObject({ slope: 0, intercept: 5, r2: null, mape: 0 });
  });

  it('leaves actuals of 0 out of MAPE, and has none when all are 0', () => {
    expect(fitLine([1, 2, 3], [0, 0, 0]).mape).toBeNull();
    expect(fitLine([1, 2, 3], [0, 2, 4]).mape).toBeCloseTo(0, 12);
  });

  it('needs 10 samples, and says how many more', () => {
    const samples: ProbeSample[] = Array.from({ length: 10 }, (_, index) => ({
      taskId: `t${index}`,
      complexity: index + 1,
      latency_ms: 1000 + 500 * (index + 1),
      tokens: 300 * (index + 1),
      cost_usd: 0.002 * (index + 1),
    }));
    expect(fitProbeModel(samples.slice(0, 7))).toEqual({ status: 'insufficient', n: 7, needed: 3 });
    const fit = fitProbeModel(samples);
    if (fit.status !== 'ready') throw new Error('expected a model');
    expect(fit.model.n).toBe(10);
    expect(fit.model.fits.latency_ms.slope).toBeCloseTo(500, 9);
    expect(fit.model.fits.latency_ms.intercept).toBeCloseTo(1000, 9);
    expect(fit.model.fits.tokens.r2).toBeCloseTo(1, 12);
    expect(fit.model.fits.cost_usd.mape).toBeCloseTo(0, 12);
  });

  it('takes samples only from finished traces that have a complexity', async () => {
    expect(sampleOf(await task(2))).toMatchObject({ taskId: 'task-2', complexity: 2, latency_ms: 2250, tokens: 300 });
    expect(sampleOf(await task(2))?.cost_usd).toBeCloseTo(0.002, 12);
    expect(sampleOf(await task(2, { complexity: null }))).toBeUndefined();
    expect(sampleOf(await task(2, { status: 'interrupted' }))).toBeUndefined();
  });
});

describe('complexity from planning.json', () => {
  const dir = (content: string) => {
    const artifacts = scratch('asp-probe-artifacts-');
    writeFileSync(path.join(artifacts, 'planning.json'), content);
    return artifacts;
  };

  it('reads complexity, or estimated_complexity, and says why a bad one is not used', async () => {
    expect((await readProbeInputs(dir('{"units": [], "complexity": 12}'))).complexity).toBe(12);
    expect((await readProbeInputs(dir('{"estimated_complexity": 4.5}'))).complexity).toBe(4.5);
    const none = await readProbeInputs(dir('{"units": []}'));
    expect(none).toMatchObject({ complexity: undefined, complexityProblem: undefined });
    expect((await readProbeInputs(dir('{"complexity": -1}'))).complexityProblem).toMatch(/^planning.json: /);
    expect((await readProbeInputs(scratch('asp-probe-empty-'))).complexity).toBeUndefined();
  });
});

describe('PROBE at publish', () => {
  it('adds probe_complexity and estimate scores once 10 other tasks are in the store, and the report shows estimate vs actual', async () => {
    const home = await storeWith(await Promise.all(Array.from({ length: 10 }, (_, index) => task(index + 1))));
    const artifacts = scratch('asp-probe-artifacts-');
    writeFileSync(path.join(artifacts, 'planning.json'), '{"complexity": 12}');
    const document = await task(12, { complexity: null });
    const warnings: string[] = [];
    await publishTrace(document, {
      settings: { ...readSettings({ ASP_HOME: home }), langfuse: undefined },
      artifactsDir: artifacts,
      stateDir: scratch('asp-probe-host-'),
      log: silentLog,
      warn: (message) => warnings.push(message),
    });
    expect(warnings).toEqual([]);
    const scores = Object.fromEntries(document.scores.map((score) => [score.name, score]));
    expect(scores.probe_complexity?.value).toBe(12);
    // The store is exactly linear: latency 250 + 1000·c, tokens 150·c, cost 0.001·c.
    expect(scores.probe_estimate_latency_ms?.value).toBe(12_250);
    expect(scores.probe_estimate_tokens?.value).toBe(1800);
    expect(scores.probe_estimate_cost_usd?.value).toBe(0.012);
    expect(scores.probe_estimate_latency_ms?.comment).toMatch(/^estimate for complexity 12: 250 \+ 1000 × complexity \(n=10, R² 1\.000, MAPE 0\.0%\)$/);
    const markdown = markdownReport(document, 'local');
    expect(markdown).toContain('## PROBE estimate vs actual');
    expect(markdown).toContain('| Tokens | 1800 | 1800 | 0.0% |');
  });

  it('gives no estimate below 10 tasks, and a store that cannot be read only warns', async () => {
    const home = await storeWith(await Promise.all(Array.from({ length: 9 }, (_, index) => task(index + 1))));
    const artifacts = scratch('asp-probe-artifacts-');
    writeFileSync(path.join(artifacts, 'planning.json'), '{"complexity": 3}');
    const document = await task(3, { complexity: null });
    await publishTrace(document, {
      settings: { ...readSettings({ ASP_HOME: home }), langfuse: undefined },
      artifactsDir: artifacts,
      stateDir: scratch('asp-probe-host-'),
      log: silentLog,
      warn: () => {},
    });
    expect(document.scores.map((score) => score.name)).not.toContain('probe_estimate_latency_ms');
    expect(markdownReport(document, 'local')).not.toContain('PROBE estimate');

    // traces/ is a file: the store cannot be listed, nor written.
    const broken = scratch('asp-probe-broken-');
    writeFileSync(path.join(broken, 'traces'), 'not a dir');
    const warnings: string[] = [];
    await publishTrace(await task(3, { complexity: null }), {
      settings: { ...readSettings({ ASP_HOME: broken }), langfuse: undefined },
      artifactsDir: artifacts,
      stateDir: scratch('asp-probe-host-'),
      log: silentLog,
      warn: (message) => warnings.push(message),
    });
    expect(warnings.some((message) => message.startsWith('no PROBE estimate: the trace store'))).toBe(true);
  });
});

describe('asp probe report', () => {
  it('says how many more tasks are needed, exit 0', async () => {
    const home = await storeWith([await task(1), await task(2), await task(3, { complexity: null })]);
    const { code, out } = await report(home);
    expect(code).toBe(0);
    expect(out).toBe(`no PROBE model yet: 2 finished task(s) with a complexity in ${path.join(home, 'traces')}, 8 more needed (at least 10)\n`);
    expect(JSON.parse((await report(home, true)).out)).toEqual({ status: 'insufficient', n: 2, needed: 8, minimum: 10, damaged: 0 });
  });

  it('prints n, the coefficients, R² and MAPE per target; damaged files are left out and counted', async () => {
    const documents = await Promise.all(Array.from({ length: 10 }, (_, index) => task(index + 1)));
    const home = await storeWith([...documents, await task(11, { status: 'interrupted' })]);
    mkdirSync(path.join(home, 'traces'), { recursive: true });
    writeFileSync(path.join(home, 'traces', 'task-bad.json'), '{"schema": "nope"');
    const { code, out } = await report(home);
    expect(code).toBe(0);
    expect(out.split('\n')).toEqual([
      `PROBE model over 10 finished task(s) with a complexity in ${path.join(home, 'traces')} (1 damaged file(s) left out)`,
      'TARGET      MODEL                    R²     MAPE',
      'latency_ms  250 + 1000 × complexity  1.000  0.0%',
      'tokens      0 + 150 × complexity     1.000  0.0%',
      'cost_usd    0 + 0.001 × complexity   1.000  0.0%',
      '',
    ]);
    const json = JSON.parse((await report(home, true)).out) as { status: string; n: number; damaged: number; fits: Record<string, { slope: number; intercept: number; r2: number; mape: number }> };
    expect(json).toMatchObject({ status: 'ready', n: 10, damaged: 1, minimum: 10 });
    expect(json.fits.latency_ms?.slope).toBeCloseTo(1000, 9);
    expect(json.fits.latency_ms?.intercept).toBeCloseTo(250, 9);
    expect(json.fits.cost_usd?.r2).toBeCloseTo(1, 12);
  });

  it('rejects an unknown flag as a usage error (which main maps to exit 2)', async () => {
    const program = new Command('asp').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerProbeCommand(program);
    const error = await program.parseAsync(['node', 'asp', 'probe', 'report', '--bogus']).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(CommanderError);
    expect((error as CommanderError).code).toBe('commander.unknownOption');
  });
});
