/**
 * bench/output-flood (P5): one `asp run` whose only step writes 1 GiB to stdout, with no newline at all
 * (the worst case for a line-based reader). Prints the supervisor's peak RSS, read from outside as VmHWM of the
 * `asp` process, against the goal of 200 MB, and what got through. Needs Docker and `npm run build`.
 * The default output cap (10m) is used, as a user would run it; OUTPUT_CAP overrides it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ensureSandboxImage } from '../src/docker/sandbox-image.js';
import { runWatchingRss } from './peak-rss.js';

const FLOOD_BYTES = 1024 ** 3;
const GOAL_BYTES = 200 * 1000 ** 2;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

const mb = (bytes: number) => `${(bytes / 1000 ** 2).toFixed(1)} MB`;

async function main(): Promise<void> {
  // Built (or found) before the measured run, so the image build is not part of the figure.
  const image = await ensureSandboxImage(EngineAdapter.fromEnvironment(process.env), {});
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-flood-'));
  try {
    const repo = path.join(scratch, 'repo');
    makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
    const env = { ...process.env, ASP_WORKSPACES: path.join(scratch, 'ws'), ASP_HOME: path.join(scratch, 'home') };
    const args = [cli, 'run', '--repo', repo, '--task', 'output flood', '--json', '--step', `flood=head -c ${FLOOD_BYTES} /dev/zero | tr '\\0' a`];
    if (process.env.OUTPUT_CAP) args.push('--output-cap', process.env.OUTPUT_CAP);
    const run = await runWatchingRss(process.execPath, args, { env });
    if (run.code !== 0) throw new Error(`asp run exited ${run.code}: ${run.stderrTail.slice(-2000)}`);
    const result = z.object({ workspacePath: z.string(), durationMs: z.number() }).parse(JSON.parse(run.stdoutTail));
    const record = z.object({ outputBytes: z.number(), droppedBytes: z.number() }).parse(JSON.parse(readFileSync(path.join(result.workspacePath, '.asp', 'flood.json'), 'utf8')));
    console.log(`bench/output-flood: one step writing ${FLOOD_BYTES} bytes to stdout, image ${image}, output cap ${process.env.OUTPUT_CAP ?? '10m (default)'}`);
    console.log(`  supervisor peak RSS (VmHWM): ${mb(run.peakRssBytes)}   goal < ${mb(GOAL_BYTES)}   ${run.peakRssBytes < GOAL_BYTES ? 'ok' : 'OVER'}   (${run.samples} samples)`);
    console.log(`  task: ${result.durationMs} ms; step output ${record.outputBytes} bytes, ${record.droppedBytes} dropped in the sandbox`);
    console.log(`  supervisor printed ${run.stderrBytes} bytes on stderr (step output and logs), ${run.stdoutBytes} on stdout (the result)`);
    if (run.peakRssBytes >= GOAL_BYTES) process.exitCode = 1;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
