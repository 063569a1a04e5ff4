/**
 * bench/reap (P4): 100 orphaned containers + volumes (running, labelled as asp's, their supervisor dead), removed
 * by `asp reap` against a plain loop of `docker rm -fv` then `docker volume rm`, one object per call. Each method
 * gets a freshly made set in the same run, in alternating order, so both see the same daemon and load.
 * Prints every timing, the medians and the ratio asp/docker (goal: ≤ 1.2). Also times the docker CLI given all
 * names in one call each, for reference. Needs a Docker daemon, the base image and `npm run build`.
 * Run it alone on the daemon (the test suites' leak checks would see its orphans): `flock /tmp/asp-it.lock npm run bench:reap`.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { limitsSchema } from '../src/config/task-spec.js';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ownershipLabels, type SupervisorIdentity } from '../src/backend/ownership-labels.js';
import { mapBounded } from '../src/core/bounded-pool.js';
import { containerSpec } from '../src/docker/container-spec.js';
import { DEFAULT_BASE_IMAGE } from '../src/docker/sandbox-image.js';

const COUNT = Number(process.env.COUNT ?? 100);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const BENCH_LABEL = 'asp-bench.reap';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
const docker = EngineAdapter.fromEnvironment(process.env);
const benchId = randomBytes(4).toString('hex');

interface Orphans {
  containers: string[];
  volumes: string[];
}

/** A supervisor that certainly is dead: a process that has exited (its pid, if reused, has another start time). */
function deadSupervisor(): SupervisorIdentity {
  const child = spawnSync(process.execPath, ['-e', '']);
  return { host: os.hostname(), pid: child.pid ?? 999_999, startTicks: 1 };
}

/** Makes `COUNT` runs' worth of orphans, each a started hardened container mounting its own labelled volume. */
async function makeOrphans(round: string): Promise<Orphans> {
  const supervisor = deadSupervisor();
  const limits = limitsSchema.parse({});
  const made = await mapBounded(
    Array.from({ length: COUNT }, (_, index) => index),
    8,
    async (index) => {
      const runId = `${benchId}-${round}-${index}`;
      const labels = {
        ...ownershipLabels({ taskId: `bench-${index}`, runId, supervisor, expiresAt: new Date(Date.now() + 3_600_000), keep: false }),
        [BENCH_LABEL]: benchId,
      };
      const volume = `asp-ws-bench-${runId}`;
      await docker.createVolume(volume, labels);
      const body = containerSpec({ name: `asp-bench-${runId}`, image: DEFAULT_BASE_IMAGE, volume, labels, limits, allowedEnv: {} });
      // A task's process that outlived its supervisor: sleeping, as a killed run's step would be.
      const id = await docker.createContainer({ ...body, Cmd: ['sleep', '3600'] });
      await docker.start(id);
      return { container: body.name, volume };
    },
  );
  return { containers: made.map((entry) => entry.container), volumes: made.map((entry) => entry.volume) };
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): string {
  const result = spawnSync(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 ** 2 });
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 3).join(' ')} exited ${result.status}: ${result.stderr.toString().slice(-500)}`);
  return result.stdout.toString();
}

type Method = (orphans: Orphans) => void;

const methods: Record<string, Method> = {
  'asp reap': () => {
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-reap-'));
    try {
      const report = z.object({ items: z.array(z.object({ outcome: z.string() })) }).parse(JSON.parse(run(process.execPath, [cli, 'reap', '--json'], { ...process.env, ASP_WORKSPACES: scratch })));
      const removed = report.items.filter((item) => item.outcome === 'removed').length;
      if (removed < 2 * COUNT) throw new Error(`asp reap removed ${removed} objects, expected ${2 * COUNT}`);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  },
  'docker rm -fv loop': (orphans) => {
    for (const name of orphans.containers) run('docker', ['rm', '-fv', name]);
    for (const name of orphans.volumes) run('docker', ['volume', 'rm', name]);
  },
  'docker rm -fv, all in one call': (orphans) => {
    run('docker', ['rm', '-fv', ...orphans.containers]);
    run('docker', ['volume', 'rm', ...orphans.volumes]);
  },
};

async function leftoversOfBench(): Promise<Orphans> {
  const [containers, volumes] = await Promise.all([docker.listContainers([`${BENCH_LABEL}=${benchId}`]), docker.listVolumes([`${BENCH_LABEL}=${benchId}`])]);
  return { containers: containers.map((container) => container.id), volumes: volumes.map((volume) => volume.name) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

async function main(): Promise<void> {
  if (!(await docker.imageExists(DEFAULT_BASE_IMAGE))) throw new Error(`bench/reap needs ${DEFAULT_BASE_IMAGE} in the daemon`);
  const entries = Object.entries(methods);
  const names = entries.map(([name]) => name);
  const timings = new Map<string, number[]>(names.map((name) => [name, []]));
  try {
    for (let round = 0; round < ROUNDS; round += 1) {
      // Rotate the order each round, so no method always runs on a daemon that just did the same work.
      const shift = round % entries.length;
      for (const [name, method] of [...entries.slice(shift), ...entries.slice(0, shift)]) {
        const orphans = await makeOrphans(`${round}-${names.indexOf(name)}`);
        const started = performance.now();
        method(orphans);
        timings.get(name)?.push(performance.now() - started);
        const left = await leftoversOfBench();
        if (left.containers.length || left.volumes.length) throw new Error(`${name} left ${left.containers.length} containers and ${left.volumes.length} volumes`);
      }
    }
  } finally {
    const left = await leftoversOfBench();
    for (const id of left.containers) await docker.removeContainer(id);
    for (const name of left.volumes) await docker.removeVolume(name);
  }
  const fmt = (values: number[]) => values.map((value) => value.toFixed(0)).join(' ');
  console.log(`bench/reap: ${COUNT} orphaned containers + ${COUNT} volumes per measurement, ${ROUNDS} rounds`);
  for (const name of names) {
    const values = timings.get(name) ?? [];
    console.log(`  ${name.padEnd(32)} median ${median(values).toFixed(0).padStart(6)} ms   [${fmt(values)}]`);
  }
  const asp = median(timings.get('asp reap') ?? []);
  const loop = median(timings.get('docker rm -fv loop') ?? []);
  const batched = median(timings.get('docker rm -fv, all in one call') ?? []);
  console.log(`  ratio asp reap / docker loop: ${(asp / loop).toFixed(2)} (goal ≤ 1.20)`);
  console.log(`  ratio asp reap / docker, one call each: ${(asp / batched).toFixed(2)} (for reference)`);
}

await main();
