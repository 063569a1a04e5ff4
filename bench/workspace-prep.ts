/**
 * bench/workspace-prep (P3): a generated repository (default 200 MB in 20,000 files): asp's clone + volume
 * fill, cold (empty mirror cache) and warm (mirror present), against `git clone --local` + `docker cp` into a
 * volume, in the same run. Prints each and the warm ratio (goal ≤ 1.2). Also the warm fill on an image that is not
 * asp's (the python test image), where the runner unpacks with the runtime's tar. Needs Docker and `npm run build`.
 * FILES and MB shrink it for a quick look.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ensureSandboxImage } from '../src/docker/sandbox-image.js';
import { parseTraceDocument } from '../src/tracing/trace-schema.js';

const FILES = Number(process.env.FILES ?? 20_000);
const MEGABYTES = Number(process.env.MB ?? 200);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.mjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/test-images.d.mts; loaded by path, as bench/overhead does
const { ensureTestImage } = (await import(pathToFileURL(path.join(root, 'scripts', 'test-images.mjs')).href)) as typeof import('../scripts/test-images.mjs');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-prep-'));

function sh(command: string, args: string[], cwd = scratch): void {
  execFileSync(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
}

function generateRepo(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const bytesPerFile = Math.floor((MEGABYTES * 1024 * 1024) / FILES);
  let seed = 1;
  for (let index = 0; index < FILES; index += 1) {
    const sub = path.join(dir, `d${Math.floor(index / 200)}`);
    if (index % 200 === 0) mkdirSync(sub, { recursive: true });
    // Pseudo-random content: compresses like source-ish data would not, so git and tar do real work.
    const buffer = Buffer.alloc(bytesPerFile);
    for (let offset = 0; offset < bytesPerFile; offset += 4) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      buffer.writeUInt32LE(seed, Math.min(offset, bytesPerFile - 4));
    }
    writeFileSync(path.join(sub, `f${index}.txt`), buffer);
  }
  const env = { ...process.env, GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@b', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@b' };
  for (const args of [
    ['init', '-q', '-b', 'main'],
    ['add', '-A'],
    ['commit', '-q', '-m', 'generated'],
  ])
    execFileSync('git', args, { cwd: dir, env, stdio: 'ignore' });
}

/** clone + volume fill of one `asp run`, from its own trace. */
function aspPrep(repoUrl: string, home: string, extra: string[] = []): number {
  const result = spawnSync(process.execPath, [cli, 'run', '--repo', repoUrl, '--step', 'noop=true', '--json', '--trace', 'off', ...extra], {
    env: { ...process.env, ASP_HOME: home, ASP_WORKSPACES: path.join(scratch, 'ws') },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`asp run failed: ${result.stderr.slice(-800)}`);
  const { tracePath } = z.object({ tracePath: z.string() }).parse(JSON.parse(result.stdout));
  const document = parseTraceDocument(readFileSync(tracePath, 'utf8'));
  const span = (name: string) => {
    const observation = document.observations.find((entry) => entry.name === name);
    if (!observation?.endTime) throw new Error(`no ${name} span in the trace`);
    return new Date(observation.endTime).getTime() - new Date(observation.startTime).getTime();
  };
  return span('host:clone') + span('host:volume-fill');
}

function baselinePrep(repo: string, image: string): number {
  const target = path.join(scratch, `plain-${Date.now()}`);
  const volume = `asp-bench-prep-${process.pid}`;
  const started = performance.now();
  sh('git', ['clone', '-q', '--local', repo, target]);
  sh('docker', ['volume', 'create', volume]);
  const container = execFileSync('docker', ['create', '--network', 'none', '-v', `${volume}:/workspace`, image, 'true'])
    .toString()
    .trim();
  sh('docker', ['cp', `${target}/.`, `${container}:/workspace/repo`]);
  const elapsed = performance.now() - started;
  sh('docker', ['rm', '-fv', container]);
  sh('docker', ['volume', 'rm', volume]);
  rmSync(target, { recursive: true, force: true });
  return elapsed;
}

const image = await ensureSandboxImage(EngineAdapter.fromEnvironment(process.env), {});
const repo = path.join(scratch, 'big-repo');
const generating = performance.now();
generateRepo(repo);
console.log(`bench/workspace-prep: generated ${FILES} files, ${MEGABYTES} MB in ${((performance.now() - generating) / 1000).toFixed(1)} s`);
const url = `file://${repo}`;
const home = path.join(scratch, 'home');
const cold = aspPrep(url, home);
// The same fill on an image that is not asp's: the runner and the tar that unpacks the workspace come from the
// runtime volume (issue 16), not from the image.
const python = (await ensureTestImage('python')).tag;
aspPrep(url, home, ['--image', python]); // prepares the runtime volume if this daemon has none yet
// Alternated, so that both see the same machine load.
const warmRuns: number[] = [];
const runtimeRuns: number[] = [];
for (let round = 0; round < 2; round += 1) {
  warmRuns.push(aspPrep(url, home));
  runtimeRuns.push(aspPrep(url, home, ['--image', python]));
}
const warm = Math.min(...warmRuns);
const onRuntime = Math.min(...runtimeRuns);
const plain = Math.min(baselinePrep(repo, image), baselinePrep(repo, image));
rmSync(scratch, { recursive: true, force: true });
console.log(`  asp clone + volume fill, cold cache:  ${(cold / 1000).toFixed(2)} s`);
console.log(`  asp clone + volume fill, warm cache:  ${(warm / 1000).toFixed(2)} s`);
console.log(`  the same on ${python}, unpacked by the runtime's tar: ${(onRuntime / 1000).toFixed(2)} s (${(onRuntime / warm).toFixed(2)}× asp's own image)`);
console.log(`  git clone --local + docker cp:        ${(plain / 1000).toFixed(2)} s`);
console.log(`  warm ratio asp/plain: ${(warm / plain).toFixed(2)} (goal ≤ 1.20)`);
