/**
 * bench/overhead (P1): `asp run` with one no-op step against a bare
 * `docker run --rm --network none <image> true`, alternated in one run so both see the same machine load.
 * Prints the medians and the ratio (goal: ≤ 1.3). Needs a Docker daemon and `npm run build`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ensureSandboxImage } from '../src/supervisor/sandbox-image.js';

const ROUNDS = Number(process.env.ROUNDS ?? 10);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
// The fixture script lives outside dist/: load it by path.
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

function timed(command: string, args: string[], env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const result = spawnSync(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const elapsed = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr.toString().slice(-500)}`);
  return elapsed;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

async function main(): Promise<void> {
  const image = await ensureSandboxImage(new EngineAdapter(process.env.DOCKER_HOST || undefined), {});
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-'));
  const repo = path.join(scratch, 'repo');
  makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
  const env = { ...process.env, ASP_WORKSPACES: path.join(scratch, 'ws') };
  const aspArgs = [cli, 'run', '--repo', repo, '--task', 'bench', '--step', 'noop=true', '--json'];
  const dockerArgs = ['run', '--rm', '--network', 'none', image, 'true'];

  // One warm-up each: page cache, image layers.
  timed(process.execPath, aspArgs, env);
  timed('docker', dockerArgs, env);
  const asp: number[] = [];
  const docker: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    asp.push(timed(process.execPath, aspArgs, env));
    docker.push(timed('docker', dockerArgs, env));
  }
  rmSync(scratch, { recursive: true, force: true });
  const aspMedian = median(asp);
  const dockerMedian = median(docker);
  const fmt = (values: number[]) => values.map((value) => value.toFixed(0)).join(' ');
  console.log(`bench/overhead: ${ROUNDS} rounds, image ${image}`);
  console.log(`  asp run (one no-op step):          median ${aspMedian.toFixed(0)} ms   [${fmt(asp)}]`);
  console.log(`  docker run --rm --network none:    median ${dockerMedian.toFixed(0)} ms   [${fmt(docker)}]`);
  console.log(`  ratio asp/docker: ${(aspMedian / dockerMedian).toFixed(2)} (goal ≤ 1.30)`);
}

await main();
