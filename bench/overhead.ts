/**
 * bench/overhead (P1): `asp run` with one no-op step against a bare
 * `docker run --rm --network none <image> true`, alternated in one run so both see the same machine load.
 * Prints the medians and the ratio (goal: ≤ 1.3). Needs a Docker daemon and `npm run build`.
 *
 * Also, in the same rounds: the cost of a clean-room check (one no-op `--check` step: a second, fresh sandbox), and
 * the cost of each further step (ten no-op steps against one), which holds what privilege separation adds per
 * step: the sweep that stops and kills every uid-1000 process and the step record written as the step user.
 *
 * And the runner's own runtime (issue 16): the same one-step task on an image that is not asp's (Debian's python3,
 * no node, git or bash: scripts/test-images.mjs), whose sandbox mounts the runtime volume and starts the runner
 * from it. Goal: at most 50 ms per task over asp's own image on a prepared daemon. The first such task on a daemon
 * without the runtime volume (it is made then) is timed apart, once.
 *
 * And Docker/runsc (issue 17), where gVisor is registered: asp under --runtime runsc against a bare docker run under it.
 *
 * And warm sandboxes (issue 22): the same run claiming a sandbox of a pool (`asp pool up --size 2`, its own ASP_HOME,
 * so the cold runs never claim), the pool refilled before each timed claim (`asp pool up` returns once it is full),
 * so each claim meets a full pool, as back-to-back runs a little apart do. Goals: cold ≤ 1.6, claiming ≤ 1.0.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { runtimeVolumeName } from '../src/docker/runtime-volume.js';
import { ensureSandboxImage } from '../src/docker/sandbox-image.js';

const ROUNDS = Number(process.env.ROUNDS ?? 10);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
// The fixture script lives outside dist/: load it by path.
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/test-images.d.mts; loaded by path for the same reason
const { ensureTestImage } = (await import(pathToFileURL(path.join(root, 'scripts', 'test-images.mjs')).href)) as typeof import('../scripts/test-images.mjs');

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
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

async function main(): Promise<void> {
  const image = await ensureSandboxImage(EngineAdapter.fromEnvironment(process.env), {});
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-'));
  const repo = path.join(scratch, 'repo');
  makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
  const env = { ...process.env, ASP_WORKSPACES: path.join(scratch, 'ws'), ASP_HOME: path.join(scratch, 'home') };
  const poolEnv = { ...env, ASP_HOME: path.join(scratch, 'pool-home') };
  const poolUp = [cli, 'pool', 'up', '--size', '2', '--ttl', '30m'];
  const aspArgs = [cli, 'run', '--repo', repo, '--task', 'bench', '--step', 'noop=true', '--json'];
  const checkArgs = [...aspArgs, '--check', 'noop=true'];
  const tenStepArgs = [cli, 'run', '--repo', repo, '--task', 'bench', ...Array.from({ length: 10 }, (_, index) => ['--step', `noop${index}=true`]).flat(), '--json'];
  const dockerArgs = ['run', '--rm', '--network', 'none', image, 'true'];
  const python = (await ensureTestImage('python')).tag;
  const pythonArgs = [...aspArgs, '--image', python];
  // The first task on a daemon without the runtime volume makes it: timed apart, once, from a daemon without it.
  const runtimeVolume = runtimeVolumeName(image);
  spawnSync('docker', ['volume', 'rm', runtimeVolume], { stdio: 'ignore' });
  const firstOnFreshDaemon = timed(process.execPath, pythonArgs, env);

  // One warm-up each: page cache, image layers.
  timed(process.execPath, aspArgs, env);
  timed('docker', dockerArgs, env);
  const asp: number[] = [];
  const docker: number[] = [];
  const withCheck: number[] = [];
  const tenSteps: number[] = [];
  const onPython: number[] = [];
  // Docker/runsc, where gVisor is registered: asp under runsc against a bare `docker run --runtime runsc`.
  const gvisor = (await EngineAdapter.fromEnvironment(process.env).info()).runtimes.includes('runsc');
  const aspGvisor: number[] = [];
  const dockerGvisor: number[] = [];
  const gvisorAspArgs = [...aspArgs, '--runtime', 'runsc'];
  const gvisorDockerArgs = ['run', '--rm', '--network', 'none', '--runtime', 'runsc', image, 'true'];
  if (gvisor) {
    timed(process.execPath, gvisorAspArgs, env);
    timed('docker', gvisorDockerArgs, env);
  }
  const onPool: number[] = [];
  timed(process.execPath, poolUp, poolEnv);
  timed(process.execPath, aspArgs, poolEnv);
  for (let round = 0; round < ROUNDS; round += 1) {
    asp.push(timed(process.execPath, aspArgs, env));
    timed(process.execPath, poolUp, poolEnv);
    onPool.push(timed(process.execPath, aspArgs, poolEnv));
    onPython.push(timed(process.execPath, pythonArgs, env));
    docker.push(timed('docker', dockerArgs, env));
    withCheck.push(timed(process.execPath, checkArgs, env));
    tenSteps.push(timed(process.execPath, tenStepArgs, env));
    if (gvisor) {
      aspGvisor.push(timed(process.execPath, gvisorAspArgs, env));
      dockerGvisor.push(timed('docker', gvisorDockerArgs, env));
    }
  }
  timed(process.execPath, [cli, 'pool', 'down'], poolEnv);
  rmSync(scratch, { recursive: true, force: true });
  const aspMedian = median(asp);
  const dockerMedian = median(docker);
  const fmt = (values: number[]) => values.map((value) => value.toFixed(0)).join(' ');
  console.log(`bench/overhead: ${ROUNDS} rounds, image ${image}`);
  console.log(`  asp run (one no-op step):          median ${aspMedian.toFixed(0)} ms   [${fmt(asp)}]`);
  console.log(`  docker run --rm --network none:    median ${dockerMedian.toFixed(0)} ms   [${fmt(docker)}]`);
  console.log(`  ratio asp/docker: ${(aspMedian / dockerMedian).toFixed(2)} (goal ≤ 1.60)`);
  const poolMedian = median(onPool);
  console.log(`  asp run claiming a warm sandbox:   median ${poolMedian.toFixed(0)} ms   [${fmt(onPool)}]`);
  console.log(`  ratio asp (warm pool)/docker: ${(poolMedian / dockerMedian).toFixed(2)} (goal ≤ 1.00)`);
  const checkMedian = median(withCheck);
  const tenMedian = median(tenSteps);
  console.log(`  asp run + one --check step:        median ${checkMedian.toFixed(0)} ms   [${fmt(withCheck)}]`);
  console.log(`    the clean-room check adds ${(checkMedian - aspMedian).toFixed(0)} ms (${((checkMedian - aspMedian) / dockerMedian).toFixed(2)} docker runs)`);
  console.log(`  asp run, ten no-op steps:          median ${tenMedian.toFixed(0)} ms   [${fmt(tenSteps)}]`);
  console.log(`    each further step costs ${((tenMedian - aspMedian) / 9).toFixed(1)} ms (spawn as uid 1000, the kill sweep, the step record)`);
  const pythonMedian = median(onPython);
  console.log(`  asp run --image ${python} (runner from its runtime): median ${pythonMedian.toFixed(0)} ms   [${fmt(onPython)}]`);
  console.log(`    the injected runtime costs ${(pythonMedian - aspMedian).toFixed(0)} ms per task over asp's own image (goal ≤ 50 ms)`);
  console.log(`    the first such task on a daemon without the runtime volume: ${firstOnFreshDaemon.toFixed(0)} ms (the volume is made then)`);
  if (gvisor) {
    const aspOnGvisor = median(aspGvisor);
    const dockerOnGvisor = median(dockerGvisor);
    console.log(`  asp run --runtime runsc:           median ${aspOnGvisor.toFixed(0)} ms   [${fmt(aspGvisor)}]`);
    console.log(`  docker run --runtime runsc:        median ${dockerOnGvisor.toFixed(0)} ms   [${fmt(dockerGvisor)}]`);
    console.log(`  ratio asp/docker under gVisor: ${(aspOnGvisor / dockerOnGvisor).toFixed(2)}`);
  } else console.log('  gVisor: runsc is not registered with this daemon (scripts/enable-gvisor.sh), no Docker/runsc row');
}

await main();
