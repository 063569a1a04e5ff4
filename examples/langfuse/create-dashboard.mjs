#!/usr/bin/env node
// Creates the asp dashboard in a Langfuse project: every widget of widgets.json (next to this file), then one
// dashboard that places them two to a row. It uses Langfuse's *unstable* public API (routes under
// /api/public/unstable, since Langfuse v3.216.0), with Basic auth from the project's API keys:
//
//   LANGFUSE_PUBLIC_KEY=pk-lf-... LANGFUSE_SECRET_KEY=sk-lf-... [LANGFUSE_BASE_URL=https://cloud.langfuse.com] \
//     node examples/langfuse/create-dashboard.mjs [--dry-run] [--name "asp runs"]
//
// --dry-run prints the requests (one JSON object a line: method, url, body; no credentials) and sends nothing.
// --export needs no keys and sends nothing either: it prints the same dashboard as a Langfuse dashboard file
// (`$langfuseDashboard`, version 1), to drop onto a dashboard in the Langfuse UI.
// Running it twice creates a second set of widgets and a second dashboard: delete the old ones in the UI first.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';

const API = '/api/public/unstable';
const DEFAULT_BASE_URL = 'https://cloud.langfuse.com';
const USAGE = 'usage: node examples/langfuse/create-dashboard.mjs [--dry-run | --export] [--name NAME]';
// The dashboard grid has 12 columns; the UI's default tile is 6 x 6.
const TILE = { width: 6, height: 6 };

function fail(message) {
  process.stderr.write(`create-dashboard: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { dryRun: false, export: false, name: 'asp runs' };
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index];
    if (arg === '--dry-run') options.dryRun = true;
    else if (arg === '--export') options.export = true;
    else if (arg === '--name' && argv[index + 1]) options.name = argv[(index += 1)];
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else fail(`unknown argument ${arg}; ${USAGE}`);
  }
  if (options.dryRun && options.export) fail(`--dry-run and --export exclude each other; ${USAGE}`);
  return options;
}

/** Where the tile of the index-th widget goes: two to a row, in the order of widgets.json. */
function tile(index) {
  return { x: (index % 2) * TILE.width, y: Math.floor(index / 2) * TILE.height, ...TILE };
}

/** The API's placements: `id` is the placement's own (any unique string), `widgetId` what it shows. */
function placements(widgetIds) {
  return widgetIds.map((widgetId, index) => ({ type: 'widget', id: randomUUID(), widgetId, ...tile(index) }));
}

const DESCRIPTION = 'asp-runner tasks: PROBE scores by environment, cost by model and agent, failures by step. Made by examples/langfuse/create-dashboard.mjs.';

function dashboardRequest(name, widgetIds) {
  return { name, description: DESCRIPTION, definition: { widgets: placements(widgetIds) } };
}

/**
 * The dashboard as the Langfuse UI imports a dropped file (web/src/features/dashboard/utils/dashboard-import-export.ts
 * in langfuse/langfuse): each placement inlines its widget, sizes are x_size/y_size, and the widgets are created anew.
 */
function dashboardFile(name, widgets) {
  return {
    $langfuseDashboard: true,
    version: 1,
    name,
    description: DESCRIPTION,
    filters: [],
    widgets: widgets.map((widget, index) => {
      const { x, y, width, height } = tile(index);
      const chartConfig = { type: widget.chartType, ...widget.chartConfig };
      return { type: 'widget', x, y, x_size: width, y_size: height, widget: { $langfuseWidget: true, version: 1, ...widget, chartConfig } };
    }),
  };
}

async function send(baseUrl, authorization, path, body) {
  const response = await fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!response.ok) {
    const reason = json && typeof json.message === 'string' ? json.message : text.slice(0, 300);
    const details = json && json.details ? ` ${JSON.stringify(json.details)}` : '';
    throw new Error(`POST ${path} answered ${response.status}: ${reason}${details}`);
  }
  if (!json || typeof json.id !== 'string') throw new Error(`POST ${path} answered ${response.status} without an id: ${text.slice(0, 300)}`);
  return json;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const widgets = JSON.parse(await readFile(new URL('./widgets.json', import.meta.url), 'utf8'));
  if (!Array.isArray(widgets) || widgets.length === 0) fail('widgets.json holds no widgets');
  if (options.export) {
    process.stdout.write(`${JSON.stringify(dashboardFile(options.name, widgets), null, 2)}\n`);
    return;
  }
  const { LANGFUSE_PUBLIC_KEY: publicKey, LANGFUSE_SECRET_KEY: secretKey } = process.env;
  if (!publicKey || !secretKey) fail('set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_BASE_URL for a self-hosted Langfuse)');
  const baseUrl = (process.env.LANGFUSE_BASE_URL || process.env.LANGFUSE_HOST || DEFAULT_BASE_URL).replace(/\/+$/, '');

  if (options.dryRun) {
    const print = (path, body) => process.stdout.write(`${JSON.stringify({ method: 'POST', url: `${baseUrl}${path}`, body })}\n`);
    for (const widget of widgets) print(`${API}/dashboard-widgets`, widget);
    // The real ids come from the answers to the widget requests.
    print(
      `${API}/dashboards`,
      dashboardRequest(
        options.name,
        widgets.map((_, index) => `<id of widget ${index + 1}>`),
      ),
    );
    return;
  }

  const authorization = `Basic ${Buffer.from(`${publicKey}:${secretKey}`).toString('base64')}`;
  const ids = [];
  try {
    for (const widget of widgets) {
      const created = await send(baseUrl, authorization, `${API}/dashboard-widgets`, widget);
      ids.push(created.id);
      process.stdout.write(`widget ${created.id}: ${widget.name}\n`);
    }
    const dashboard = await send(baseUrl, authorization, `${API}/dashboards`, dashboardRequest(options.name, ids));
    process.stdout.write(`dashboard ${dashboard.id}: ${dashboard.name} (${ids.length} widgets): Langfuse > Dashboards\n`);
  } catch (error) {
    const made = ids.length ? ` (widgets already created: ${ids.join(', ')})` : '';
    // fetch says only "fetch failed"; the reason (ECONNREFUSED, a DNS error, the timeout) is its cause.
    const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.code ?? error.cause.message})` : '';
    process.stderr.write(`create-dashboard: ${error instanceof Error ? error.message : String(error)}${cause}${made}\n`);
    process.exit(1);
  }
}

await main();
