/**
 * bench/k8s-stand-in (issue 18): the baseline for a real cluster. Through the Kubernetes API stand-in
 * (test/helpers/k8s-stand-in.ts, pods run as Docker containers), measured in the same run:
 *
 *   1. 32 no-op tasks at concurrency 8 through `asp batch --backend k8s`: wall time, the supervisor's CPU (user +
 *      system) and peak RSS, per task; against `xargs -P8 docker run --rm --network none <asp image> true` with the
 *      same count (the ratio is what the pod, the attach stream and the protocol cost over a bare container);
 *   2. the time from `asp run --backend k8s` to the first protocol line (the runner's hello, from events.jsonl),
 *      the median of 5, against the time from `docker run` to the first line a Node program in asp's image prints.
 *
 * It runs under vitest (the stand-in is a test helper in TypeScript): `npm run bench:k8s` (needs Docker, builds first).
 * TASKS and CONCURRENCY override the counts. The stand-in is not a cluster: a real API server, scheduler and kubelet
 * add their own latency, which these figures do not contain.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { it } from 'vitest';
import { z } from 'zod';
import { imageContext } from '../src/docker/sandbox-image.js';
import { startKubeStandIn } from '../test/helpers/k8s-stand-in.js';
import { repoWith } from '../test/helpers/repos.js';

const usageSchema = z.object({ userCPUTime: z.number(), systemCPUTime: z.number(), maxRSS: z.number() });
const eventSchema = z.object({ at: z.string(), type: z.string() });

const TASKS = Number(process.env.TASKS ?? 32);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
const FIRST_LINE_RUNS = 5;
const root = path.resolve(import.meta.dirname, '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');

interface Usage {
  wallMs: number;
  cpuMs: number;
  maxRssKb: number;
}

/** Runs asp with a preload that writes its own resource usage (CPU, peak RSS) when it exits. */
async function aspWithUsage(args: string[], env: Record<string, string>): Promise<Usage & { code: number | null; stdout: string; stderr: string }> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-usage-'));
  const out = path.join(scratch, 'usage.json');
  const preload = path.join(scratch, 'usage.mjs');
  writeFileSync(preload, `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.resourceUsage())));\n`);
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', preload, cli, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const wallMs = performance.now() - started;
  const usage = usageSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
  return { code, stdout, stderr, wallMs, cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000, maxRssKb: usage.maxRSS };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

it(
  'k8s stand-in: supervisor cost per task and time to the first protocol line, against plain docker run',
  async () => {
    const image = imageContext().tag;
    const cluster = await startKubeStandIn({ namespace: 'asp' });
    try {
      const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-k8s-'));
      const workspaces = path.join(scratch, 'workspaces');
      const env = { KUBECONFIG: cluster.kubeconfigPath, ASP_BACKEND: 'k8s', ASP_WORKSPACES: workspaces, ASP_HOME: path.join(scratch, 'home') };
      const repo = repoWith({ 'README.md': 'bench\n' });

      // 1. The batch.
      const list = path.join(scratch, 'tasks.jsonl');
      writeFileSync(list, Array.from({ length: TASKS }, (_, index) => JSON.stringify({ id: `bench-k8s-${index}`, repo, steps: [{ name: 'noop', run: 'true' }] })).join('\n') + '\n');
      const batch = await aspWithUsage(['batch', list, '--concurrency', String(CONCURRENCY), '--json'], env);
      if (batch.code !== 0) throw new Error(`asp batch exited ${batch.code}: ${batch.stderr.slice(-800)}`);
      const docker = (() => {
        const started = performance.now();
        const result = spawnSync('sh', ['-c', `seq ${TASKS} | xargs -P${CONCURRENCY} -I{} docker run --rm --network none ${image} true`], { stdio: ['ignore', 'ignore', 'pipe'] });
        if (result.status !== 0) throw new Error(`docker run exited ${result.status}: ${result.stderr.toString().slice(-500)}`);
        return performance.now() - started;
      })();

      // 2. Time to the first protocol line, one task at a time.
      const toHello: number[] = [];
      for (let run = 0; run < FIRST_LINE_RUNS; run++) {
        const id = `bench-k8s-first-${run}-${process.pid}`;
        const started = Date.now();
        const ran = await aspWithUsage(['run', '--json', '--repo', repo, '--id', id, '--step', 'noop=true'], env);
        if (ran.code !== 0) throw new Error(`asp run exited ${ran.code}: ${ran.stderr.slice(-800)}`);
        const events = readFileSync(path.join(workspaces, id, '.asp', 'events.jsonl'), 'utf8')
          .split('\n')
          .filter(Boolean);
        const hello = events.map((line) => eventSchema.parse(JSON.parse(line))).find((event) => event.type === 'hello');
        if (!hello) throw new Error(`no hello in ${id}'s events.jsonl`);
        toHello.push(new Date(hello.at).getTime() - started);
      }
      const dockerFirstLine: number[] = [];
      for (let run = 0; run < FIRST_LINE_RUNS; run++) {
        const started = performance.now();
        const child = spawn('docker', ['run', '--rm', '--network', 'none', image, 'node', '-e', 'console.log("hello")'], { stdio: ['ignore', 'pipe', 'ignore'] });
        await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
        dockerFirstLine.push(performance.now() - started);
        await new Promise((resolve) => child.on('close', resolve));
      }

      const perTask = (value: number) => (value / TASKS).toFixed(0);
      const lines = [
        `bench/k8s-stand-in: ${TASKS} no-op tasks at concurrency ${CONCURRENCY}, ${os.availableParallelism()} cores (the stand-in runs each pod as Docker containers)`,
        `  asp batch --backend k8s   ${batch.wallMs.toFixed(0)} ms   (${perTask(batch.wallMs)} ms/task)`,
        `  xargs docker run          ${docker.toFixed(0)} ms   (${perTask(docker)} ms/task)`,
        `  ratio asp/docker          ${(batch.wallMs / docker).toFixed(2)}`,
        `  supervisor CPU            ${batch.cpuMs.toFixed(0)} ms   (${perTask(batch.cpuMs)} ms/task)`,
        `  supervisor peak RSS       ${(batch.maxRssKb / 1024).toFixed(0)} MiB   (${(batch.maxRssKb / 1024 / TASKS).toFixed(2)} MiB/task at ${CONCURRENCY} at once)`,
        `  asp run → first protocol line (median of ${FIRST_LINE_RUNS})  ${median(toHello).toFixed(0)} ms   [${toHello.map((ms) => ms.toFixed(0)).join(', ')}]`,
        `  docker run → first line of node (median of ${FIRST_LINE_RUNS}) ${median(dockerFirstLine).toFixed(0)} ms   [${dockerFirstLine.map((ms) => ms.toFixed(0)).join(', ')}]`,
        `  ratio                     ${(median(toHello) / median(dockerFirstLine)).toFixed(2)}`,
        `  pods left                 ${cluster.pods().filter((pod) => pod.phase !== 'Deleted').length}, workspaces made ${readdirSync(workspaces).length}`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    } finally {
      await cluster.close();
    }
  },
  30 * 60_000,
);
