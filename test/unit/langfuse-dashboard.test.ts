import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import path from 'node:path';
import { unstable } from '@langfuse/core';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { HITL_SCORE } from '../../src/tracing/hitl-trace.js';
import { PROBE_SCORES } from '../../src/tracing/probe-scores.js';

const root = path.resolve(import.meta.dirname, '..', '..');
const examples = path.join(root, 'examples', 'langfuse');
const script = path.join(examples, 'create-dashboard.mjs');
const execFileAsync = promisify(execFile);

type WidgetRequest = unstable.CreateDashboardWidgetRequest;
type DashboardRequest = unstable.CreateDashboardRequest;
/** A widget tile of a dashboard's definition (`DashboardPlacement.Widget`, which `unstable` exports only as a value). */
type WidgetPlacement = Extract<NonNullable<DashboardRequest['definition']>['widgets'][number], { type: 'widget' }>;

/**
 * The fields of Langfuse's query engine a widget may use, as its view declarations have them in both query
 * versions (v1 tables and v2 events; langfuse/langfuse packages/shared/src/features/query/dataModel.ts), minus
 * the ones v2 hides from widgets (ids) or marks high-cardinality (user, session). Filter columns are those the
 * public widget API accepts per view (web/src/features/dashboard/lib/dashboardUiTableToViewMapping.ts).
 */
const QUERY_ENGINE = {
  observations: {
    dimensions: ['name', 'type', 'level', 'environment', 'providedModelName', 'traceName', 'tags', 'version', 'traceRelease', 'traceVersion', 'promptName', 'promptVersion'],
    measures: ['count', 'latency', 'totalCost', 'inputCost', 'outputCost', 'totalTokens', 'inputTokens', 'outputTokens', 'timeToFirstToken'],
    filters: ['name', 'type', 'level', 'environment', 'providedModelName', 'traceName', 'tags', 'userId', 'sessionId', 'metadata', 'traceRelease', 'traceVersion', 'release', 'version'],
  },
  'scores-numeric': {
    dimensions: ['name', 'environment', 'source', 'dataType', 'traceName', 'tags', 'observationName', 'traceRelease', 'traceVersion', 'timestampMonth', 'timestampDay'],
    measures: ['count', 'value'],
    filters: ['name', 'environment', 'source', 'value', 'dataType', 'tags', 'userId', 'sessionId', 'metadata', 'traceName', 'observationName', 'traceRelease', 'traceVersion'],
  },
} as const satisfies Partial<Record<WidgetRequest['view'], { dimensions: readonly string[]; measures: readonly string[]; filters: readonly string[] }>>;

/** The filter types a column takes in the query engine: an array column (tags) only `arrayOptions`, metadata `stringObject`, the score value `number`, a string column `string` or `stringOptions`. */
const filterTypesOf = (column: string): string[] => (column === 'tags' ? ['arrayOptions'] : column === 'metadata' ? ['stringObject'] : column === 'value' ? ['number'] : ['string', 'stringOptions']);
/** The values Langfuse stores for observation types and levels (upper case, whatever case the SDK sent). */
const OBSERVATION_TYPES = ['SPAN', 'EVENT', 'GENERATION', 'AGENT', 'TOOL', 'CHAIN', 'RETRIEVER', 'EVALUATOR', 'EMBEDDING', 'GUARDRAIL'];
const LEVELS = ['DEBUG', 'DEFAULT', 'WARNING', 'ERROR'];
const STATUS_TAGS = ['asp', 'passed', 'failed', 'timeout', 'interrupted', 'error'];

// zod mirrors of the SDK's request types, a little stricter where the server is (filter shapes, at least one
// metric, chartConfig.type equal to chartType). The SDK's runtime enum objects are the source of the enums.
const filter = z.discriminatedUnion('type', [
  z.strictObject({ column: z.string().min(1), type: z.literal('string'), operator: z.enum(['=', 'contains', 'does not contain', 'starts with', 'ends with']), value: z.string() }),
  z.strictObject({ column: z.string().min(1), type: z.literal('stringOptions'), operator: z.enum(['any of', 'none of']), value: z.array(z.string()).min(1) }),
  z.strictObject({ column: z.string().min(1), type: z.literal('arrayOptions'), operator: z.enum(['any of', 'none of', 'all of']), value: z.array(z.string()).min(1) }),
  z.strictObject({ column: z.string().min(1), type: z.literal('number'), operator: z.enum(['=', '>', '<', '>=', '<=']), value: z.number() }),
  z.strictObject({
    column: z.string().min(1),
    type: z.literal('stringObject'),
    key: z.string().min(1),
    operator: z.enum(['=', 'contains', 'does not contain', 'starts with', 'ends with']),
    value: z.string(),
  }),
]);
const chartType = z.enum(unstable.DashboardWidgetChartType);
const widgetRequest = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().optional(),
    view: z.enum(unstable.DashboardWidgetView),
    dimensions: z.array(z.strictObject({ field: z.string().min(1) })),
    metrics: z.array(z.strictObject({ measure: z.string().min(1), agg: z.enum(unstable.DashboardWidgetMetricAggregation) })).min(1),
    filters: z.array(filter),
    chartType,
    chartConfig: z
      .strictObject({
        type: chartType.optional(),
        row_limit: z.number().int().positive().max(1000).optional(),
        show_value_labels: z.boolean().optional(),
        bins: z.number().int().min(1).max(100).optional(),
        defaultSort: z.strictObject({ column: z.string(), order: z.enum(unstable.DashboardWidgetSortOrder) }).optional(),
      })
      .optional(),
  })
  .refine((widget) => widget.chartConfig?.type === undefined || widget.chartConfig.type === widget.chartType, 'chartConfig.type must match chartType');
const placement = z.strictObject({
  type: z.literal('widget'),
  id: z.string().min(1),
  widgetId: z.string().min(1),
  x: z.number().int().min(0).max(11),
  y: z.number().int().min(0),
  width: z.number().int().positive().max(12),
  height: z.number().int().positive(),
});
const dashboardRequest = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  definition: z.strictObject({ widgets: z.array(placement) }),
  filters: z.array(filter).optional(),
});

// Compile time: what the schemas accept is a request the SDK types allow, and they name the same fields.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const SAME_FIELDS: [
  Same<keyof z.infer<typeof widgetRequest>, keyof WidgetRequest>,
  Same<keyof z.infer<typeof dashboardRequest>, keyof DashboardRequest>,
  Same<keyof z.infer<typeof placement>, keyof WidgetPlacement>,
  Same<keyof NonNullable<z.infer<typeof widgetRequest>['chartConfig']>, keyof unstable.DashboardWidgetChartConfigInput>,
] = [true, true, true, true];

function loadWidgets(): WidgetRequest[] {
  const raw: unknown = JSON.parse(readFileSync(path.join(examples, 'widgets.json'), 'utf8'));
  // Typed as the SDK's request: this assignment is the compile-time check of the parsed entries.
  const widgets: WidgetRequest[] = z.array(widgetRequest).min(1).parse(raw);
  return widgets;
}

function run(args: string[], env: Record<string, string>) {
  // No network in the dry run: fetch throws if the script calls it, and the base URL is a closed port anyway.
  const noFetch = `data:text/javascript,${encodeURIComponent('globalThis.fetch = () => { throw new Error("fetch called in a dry run"); };')}`;
  const base = { ...process.env };
  for (const key of ['LANGFUSE_PUBLIC_KEY', 'LANGFUSE_SECRET_KEY', 'LANGFUSE_BASE_URL', 'LANGFUSE_HOST']) delete base[key];
  return spawnSync(process.execPath, ['--import', noFetch, script, ...args], { cwd: root, env: { ...base, ...env }, encoding: 'utf8', timeout: 30_000 });
}

const FAKE_KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-test', LANGFUSE_SECRET_KEY: 'sk-lf-test', LANGFUSE_BASE_URL: 'http://127.0.0.1:9/' };

describe('examples/langfuse', () => {
  const widgets = loadWidgets();

  it('the zod mirrors name the same fields as the SDK types', () => {
    // The tuple's type is the check (a mismatch does not compile); the assertion keeps it in use.
    expect(SAME_FIELDS).toEqual([true, true, true, true]);
  });

  it('every widget is a CreateDashboardWidgetRequest with the SDK enums', () => {
    for (const widget of widgets) {
      expect(Object.values(unstable.DashboardWidgetView), widget.name).toContain(widget.view);
      expect(Object.values(unstable.DashboardWidgetChartType), widget.name).toContain(widget.chartType);
      for (const metric of widget.metrics) expect(Object.values(unstable.DashboardWidgetMetricAggregation), widget.name).toContain(metric.agg);
      // Only pivot tables take two dimensions (at most two); the other charts one at most.
      expect(widget.dimensions.length, widget.name).toBeLessThanOrEqual(widget.chartType === 'PIVOT_TABLE' ? 2 : 1);
      if (widget.chartType === 'PIVOT_TABLE') expect(widget.metrics.length, widget.name).toBeLessThanOrEqual(10);
      // The UI's widget import wants chartConfig.type (the API defaults it): each entry can be pasted there as well.
      expect(widget.chartConfig?.type, widget.name).toBe(widget.chartType);
      expect(widget.description, widget.name).toBeTruthy();
    }
    expect(new Set(widgets.map((widget) => widget.name)).size).toBe(widgets.length);
  });

  it('uses only query-engine fields known for its view, with filter types that fit the column', () => {
    for (const widget of widgets) {
      const engine = QUERY_ENGINE[widget.view as keyof typeof QUERY_ENGINE] as (typeof QUERY_ENGINE)[keyof typeof QUERY_ENGINE] | undefined;
      expect(engine, `${widget.name}: view ${widget.view}`).toBeDefined();
      for (const dimension of widget.dimensions) expect(engine!.dimensions, widget.name).toContain(dimension.field);
      for (const metric of widget.metrics) expect(engine!.measures, widget.name).toContain(metric.measure);
      for (const entry of widget.filters) {
        expect(engine!.filters, widget.name).toContain(entry.column);
        expect(filterTypesOf(entry.column), `${widget.name}: ${entry.column}`).toContain(entry.type);
      }
    }
  });

  it('filters name only scores, observation types, levels and tags that asp emits', () => {
    const emitted: readonly string[] = [...PROBE_SCORES, HITL_SCORE];
    const values = (widget: WidgetRequest, column: string) => widget.filters.filter((entry) => entry.column === column).flatMap((entry) => (Array.isArray(entry.value) ? entry.value : [entry.value]));
    const scoreNames = widgets.filter((widget) => widget.view === 'scores-numeric').flatMap((widget) => values(widget, 'name'));
    expect(scoreNames.length).toBeGreaterThan(0);
    for (const name of scoreNames) expect(emitted).toContain(name);
    for (const widget of widgets) {
      for (const type of values(widget, 'type')) expect(OBSERVATION_TYPES).toContain(type);
      for (const level of values(widget, 'level')) expect(LEVELS).toContain(level);
      for (const tag of values(widget, 'tags')) expect(typeof tag === 'string' && (STATUS_TAGS.includes(tag) || tag.startsWith('hitl:'))).toBe(true);
      // Every widget keeps to asp's traces, so other traces in the project do not skew it.
      expect(values(widget, 'tags'), widget.name).toContain('asp');
    }
  });

  it('covers the issue: PROBE scores by environment, cost by model and agent, failures by step', () => {
    const find = (predicate: (widget: WidgetRequest) => boolean) => widgets.filter(predicate);
    const fields = (widget: WidgetRequest) => widget.dimensions.map((dimension) => dimension.field);
    const scoreNames = (widget: WidgetRequest) => widget.filters.filter((entry) => entry.column === 'name').flatMap((entry) => entry.value as string[]);
    const probe = find((widget) => widget.view === 'scores-numeric' && fields(widget).includes('environment') && widget.metrics.some((metric) => metric.measure === 'value' && metric.agg === 'avg'));
    // Every PROBE score (and the HITL decision) is averaged by environment somewhere.
    expect(probe.flatMap(scoreNames)).toEqual(expect.arrayContaining([...PROBE_SCORES, HITL_SCORE]));
    const cost = find((widget) => widget.view === 'observations' && widget.metrics.some((metric) => metric.measure === 'totalCost' && metric.agg === 'sum'));
    expect(cost.map(fields)).toEqual(expect.arrayContaining([['providedModelName'], ['name']]));
    const steps = find((widget) => widget.view === 'observations' && fields(widget)[0] === 'name' && widget.metrics.some((metric) => metric.measure === 'count'));
    const failed = steps.filter((widget) => widget.filters.some((entry) => entry.column === 'level'));
    expect(failed.length).toBeGreaterThan(0);
    expect(steps.length).toBeGreaterThan(failed.length);
    expect(find((widget) => fields(widget).includes('tags')).length).toBe(1);
  });

  it('--dry-run prints one request per widget and then the dashboard, and sends nothing', () => {
    const result = run(['--dry-run'], FAKE_KEYS);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const requests = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { method: string; url: string; body: unknown });
    expect(requests).toHaveLength(widgets.length + 1);
    requests.slice(0, -1).forEach((request, index) => {
      expect(request.method).toBe('POST');
      expect(request.url).toBe('http://127.0.0.1:9/api/public/unstable/dashboard-widgets');
      expect(request.body).toEqual(widgets[index]);
    });
    const last = requests.at(-1)!;
    expect(last.url).toBe('http://127.0.0.1:9/api/public/unstable/dashboards');
    const dashboard: DashboardRequest = dashboardRequest.parse(last.body);
    const tiles = dashboard.definition!.widgets;
    expect(tiles).toHaveLength(widgets.length);
    expect(new Set(tiles.map((tile) => tile.id)).size).toBe(tiles.length);
    for (const tile of tiles) expect(tile.x + tile.width).toBeLessThanOrEqual(12);
    expect(result.stdout).not.toContain('sk-lf-test');
  });

  it('without --dry-run creates the widgets, then a dashboard placing their ids (a stand-in Langfuse on loopback)', async () => {
    const seen: Array<{ url: string; authorization: string; body: unknown }> = [];
    const server = createServer((request: IncomingMessage, response) => {
      let text = '';
      request.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      request.on('end', () => {
        const body: unknown = JSON.parse(text);
        seen.push({ url: request.url ?? '', authorization: request.headers.authorization ?? '', body });
        const id = request.url === '/api/public/unstable/dashboards' ? 'dashboard-1' : `widget-${seen.length}`;
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...(body as object), id }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const env = { ...process.env, ...FAKE_KEYS, LANGFUSE_BASE_URL: `http://127.0.0.1:${port}` };
      const { stdout } = await execFileAsync(process.execPath, [script], { cwd: root, env, timeout: 30_000 });
      expect(seen).toHaveLength(widgets.length + 1);
      expect(new Set(seen.map((entry) => entry.authorization))).toEqual(new Set([`Basic ${Buffer.from('pk-lf-test:sk-lf-test').toString('base64')}`]));
      expect(seen.slice(0, -1).map((entry) => entry.url)).toEqual(widgets.map(() => '/api/public/unstable/dashboard-widgets'));
      const dashboard = dashboardRequest.parse(seen.at(-1)!.body);
      expect(dashboard.definition.widgets.map((tile) => tile.widgetId)).toEqual(widgets.map((_, index) => `widget-${index + 1}`));
      expect(stdout).toContain('dashboard dashboard-1');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('--export prints the dashboard as a Langfuse dashboard file, without keys or network', () => {
    const result = run(['--export'], {});
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const file = z
      .looseObject({
        $langfuseDashboard: z.literal(true),
        version: z.literal(1),
        name: z.string().min(1),
        widgets: z.array(
          z.strictObject({
            type: z.literal('widget'),
            x: z.number().int().min(0),
            y: z.number().int().min(0),
            x_size: z.number().int().positive(),
            y_size: z.number().int().positive(),
            widget: z.looseObject({ $langfuseWidget: z.literal(true), version: z.literal(1) }),
          }),
        ),
      })
      .parse(JSON.parse(result.stdout));
    const inlined = file.widgets.map(({ widget: { $langfuseWidget: _marker, version: _version, ...widget } }) => widgetRequest.parse(widget));
    expect(inlined).toEqual(widgets);
    expect(file.widgets.map(({ x, y, x_size, y_size }) => ({ x, y, x_size, y_size }))).toEqual(widgets.map((_, index) => ({ x: (index % 2) * 6, y: Math.floor(index / 2) * 6, x_size: 6, y_size: 6 })));
  });

  it('refuses to run without keys, in one line', () => {
    const result = run(['--dry-run'], {});
    expect(result.status).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain('LANGFUSE_PUBLIC_KEY');
  });
});
