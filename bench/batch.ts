/**
 * bench/batch (P2): 32 no-op tasks at concurrency 2 through `asp batch`, against
 * `xargs -P2 docker run --rm --network none <image> true` with the same count, in the same run.
 * Prints both throughputs and their ratio (goal: asp/docker ≥ 0.9). Needs Docker and `npm run build`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DockerodeAdapter } from '../src/docker/dockerode-adapter.js';
import { ensureSandboxImage } from '../src/supervisor/sandbox-image.js';

const TASKS = Number(process.env.TASKS ?? 32);
const CONCURRENCY = 2;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

function timed(command: string, args: string[], env: NodeJS.ProcessEnv, input?: string): number {
  const started = performance.now();
  const result = spawnSync(command, args, { env, input, stdio: ['pipe', 'ignore', 'pipe'] });
  const elapsed = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} exited ${result.status}: ${result.stderr.toString().slice(-500)}`);
  return elapsed;
}

const image = await ensureSandboxImage(new DockerodeAdapter(process.env.DOCKER_HOST || undefined), {});
const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-batch-'));
const repo = path.join(scratch, 'repo');
makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
const tasks = Array.from({ length: TASKS }, (_, index) => JSON.stringify({ id: `noop-${index}`, repo, steps: [{ name: 'noop', run: 'true' }] }));

const runAsp = (round: string) => {
  const file = path.join(scratch, `tasks-${round}.jsonl`);
  writeFileSync(file, tasks.join('\n') + '\n');
  const env = { ...process.env, CI: 'true', ASP_HOME: path.join(scratch, `home-${round}`), ASP_WORKSPACES: path.join(scratch, `ws-${round}`) };
  return timed(process.execPath, [cli, 'batch', file, '--concurrency', String(CONCURRENCY), '--json'], env);
};
const runDocker = () =>
  timed('xargs', ['-P', String(CONCURRENCY), '-I{}', 'docker', 'run', '--rm', '--network', 'none', image, 'true'], process.env, Array.from({ length: TASKS }, (_, index) => String(index)).join('\n'));

// Alternate, twice each, and keep the better of each pair: the machine is shared and noisy.
const asp = Math.min(runAsp('a'), runAsp('b'));
const docker = Math.min(runDocker(), runDocker());
rmSync(scratch, { recursive: true, force: true });
const aspRate = TASKS / (asp / 1000);
const dockerRate = TASKS / (docker / 1000);
console.log(`bench/batch: ${TASKS} no-op tasks, concurrency ${CONCURRENCY}, image ${image}`);
console.log(`  asp batch:                 ${(asp / 1000).toFixed(2)} s  (${aspRate.toFixed(2)} tasks/s)`);
console.log(`  xargs -P2 docker run --rm: ${(docker / 1000).toFixed(2)} s  (${dockerRate.toFixed(2)} tasks/s)`);
console.log(`  throughput ratio asp/docker: ${(aspRate / dockerRate).toFixed(2)} (goal ≥ 0.90)`);
