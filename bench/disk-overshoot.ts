/**
 * bench/disk-overshoot: how far past `--disk` the fastest writers a shell has get before the watchdog stops the
 * step, which is the figure SECURITY.md states. Each round is one `asp run` whose only step writes as fast as it
 * can and would stop by itself at STOP_AT_MIB; the step's record says what the watchdog saw when it fired.
 * Writers: `dd bs=1M` from /dev/zero; `fallocate -l 16M` in a loop; the same dd after the step made 50,000
 * empty files (a tree that takes the watchdog seconds to walk), into a file the walk reaches last.
 * Needs Docker and `npm run build`.
 * ROUNDS (default 5), LIMITS (default 64m,256m), WRITERS (default dd,fallocate,many-files-dd) override.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { EngineAdapter } from '../src/docker/engine-adapter.js';
import { ensureSandboxImage } from '../src/docker/sandbox-image.js';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const LIMITS = (process.env.LIMITS ?? '64m,256m').split(',');
const STOP_AT_MIB = Number(process.env.STOP_AT_MIB ?? 8192);
const MiB = 1024 ** 2;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; the path is computed because the bench runs from dist/bench, where tsc copies no .mjs
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

const DD = `dd if=/dev/zero of=fast.bin bs=1M count=${STOP_AT_MIB} status=none`;
const WRITERS: Record<string, string> = {
  dd: DD,
  fallocate: `for i in $(seq 1 ${STOP_AT_MIB / 16}); do fallocate -l 16M chunk-$i.bin || exit 1; done`,
  // The file goes last in the walk's order, below 50,000 entries: the walk must get through them to see it.
  'many-files-dd': `mkdir -p many/z && (cd many && seq 1 50000 | xargs touch) && ${DD.replace('of=fast.bin', 'of=many/z/fast.bin')}`,
};
const writers = (process.env.WRITERS ?? Object.keys(WRITERS).join(',')).split(',');

const mib = (bytes: number) => (bytes / MiB).toFixed(0);

function round(repo: string, env: NodeJS.ProcessEnv, limit: string, writer: string): { stopped: boolean; reachedBytes: number } {
  const command = WRITERS[writer];
  if (!command) throw new Error(`unknown writer ${writer}`);
  const args = [cli, 'run', '--repo', repo, '--task', 'disk overshoot', '--json', '--disk', limit, '--timeout', '5m', '--step', `write=${command}`];
  const run = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MiB });
  if (!run.stdout.length) throw new Error(`asp run printed no result (exit ${run.status}): ${run.stderr.toString().slice(-2000)}`);
  let result: { workspacePath: string };
  try {
    result = z.object({ workspacePath: z.string() }).parse(JSON.parse(run.stdout.toString()));
  } catch {
    throw new Error(`asp run printed no JSON result (exit ${run.status}): ${run.stdout.toString().slice(-500)} ${run.stderr.toString().slice(-2000)}`);
  }
  // The step's end as the runner said it on the protocol (events.jsonl is the host's copy of what it received).
  const events = readFileSync(path.join(result.workspacePath, '.asp', 'events.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean);
  const stepEnd = z.object({ type: z.literal('step.end'), exitCode: z.number(), reason: z.string().optional() });
  const record = events.map((line) => stepEnd.safeParse(JSON.parse(line))).find((parsed) => parsed.success)?.data;
  if (!record) throw new Error(`no step.end in ${result.workspacePath}/.asp/events.jsonl`);
  const reached = Number(/grew to (\d+) bytes/.exec(record.reason ?? '')?.[1] ?? STOP_AT_MIB * MiB);
  return { stopped: record.exitCode === 28, reachedBytes: reached };
}

async function main(): Promise<void> {
  const image = await ensureSandboxImage(EngineAdapter.fromEnvironment(process.env), {});
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-disk-'));
  try {
    const repo = path.join(scratch, 'repo');
    makeRepoFromDir(path.join(root, 'examples', 'hello-repo'), repo);
    const env = { ...process.env, ASP_WORKSPACES: path.join(scratch, 'ws'), ASP_HOME: path.join(scratch, 'home') };
    console.log(`bench/disk-overshoot: ${ROUNDS} rounds each, image ${image}, writers stop themselves at ${STOP_AT_MIB} MiB`);
    console.log(`  ${os.cpus().length} cpus (${os.cpus()[0]?.model ?? '?'}), ${os.release()}, ${new Date().toISOString().slice(0, 10)}`);
    for (const limit of LIMITS) {
      for (const writer of writers) {
        const rounds = Array.from({ length: ROUNDS }, () => round(repo, env, limit, writer));
        rmSync(path.join(scratch, 'ws'), { recursive: true, force: true });
        const reached = rounds.map((r) => r.reachedBytes).sort((a, b) => a - b);
        const missed = rounds.filter((r) => !r.stopped).length;
        console.log(
          `  --disk ${limit.padEnd(5)} ${writer.padEnd(14)} stopped at MiB: ${reached.map(mib).join(' ')}` +
            `   (median ${mib(reached[Math.floor(reached.length / 2)] ?? 0)})${missed ? `   NOT STOPPED ${missed}/${ROUNDS}` : ''}`,
        );
        if (missed) process.exitCode = 1;
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
