import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { checkLimitsFit } from '../backend/limits-fit.js';
import { formatSupervisor, LABEL } from '../backend/ownership-labels.js';
import { checkRuntime, runtimeLimits } from '../backend/sandbox-policy.js';
import type { SandboxBackend } from '../backend/sandbox-backend.js';
import { parseTaskSpec, type TaskSpec } from '../config/task-spec.js';
import { formatBytes, formatDuration, parseDuration } from '../config/units.js';
import { AspError, EXIT } from '../core/asp-error.js';
import { systemClock } from '../core/clock.js';
import { printableLine } from '../core/printable.js';
import { keepPool, retireAll } from '../pool/pool-keeper.js';
import { keepStandby } from './standby-keeper.js';
import { buildId, standbyDir } from './standby-wire.js';
import { listPoolRecords, liveKeeper, newPoolId, POOL_KEY, poolKey, poolsDir, readPoolRecord, removePoolRecord, writePoolRecord, type PoolRecord } from '../pool/pool-record.js';
import { makeContext, reportFailure, type CliContext } from './cli-context.js';
import { numberFlag, wholeNumber } from './number-flags.js';

/** The most sandboxes one pool keeps: each holds its memory limit's worth of the machine while it waits. */
const MAX_SIZE = 64;
/** The longest TTL: a pool is for a working session, not for good. */
const MAX_TTL_MS = 24 * 3_600_000;
/** How long `asp pool up` waits for the pool to fill. */
const FILL_TIMEOUT_MS = 120_000;
/** How long `asp pool down` waits for a keeper to retire its sandboxes and end. */
const KEEPER_END_MS = 30_000;
/** How long `asp pool up` waits for a standby asp process to listen. */
const STANDBY_START_MS = 10_000;
/** How long a keeper just started has to write its name into the record. */
const KEEPER_START_MS = 10_000;

interface UpFlags {
  size: string;
  ttl: string;
  image?: string;
  memory?: string;
  cpus?: string;
  pids?: string;
  runtime?: string;
  json?: boolean;
  debug?: boolean;
}

export function registerPoolCommand(program: Command): void {
  const pool = program.command('pool').description('keep warm sandboxes started, for `asp run` to claim (Docker only)');
  pool
    .command('up')
    .description('start a pool of N sandboxes of one image and one set of limits (again: resize it, renew its TTL)')
    .option('--size <n>', 'how many sandboxes to keep ready', '2')
    .option('--ttl <duration>', 'how long the pool lives (30s, 10m, 2h; at most 24h)', '10m')
    .option('--image <image>', "the sandboxes' image (default: asp's own)")
    .option('--memory <size>', 'memory limit of each (as asp run --memory)')
    .option('--cpus <n>', 'CPU limit of each (as asp run --cpus)')
    .option('--pids <n>', 'process limit of each (as asp run --pids)')
    .option('--runtime <name>', 'the container runtime (as asp run --runtime)')
    .option('--json', 'print the pool as one JSON object on stdout')
    .option('--debug', 'stack traces on errors')
    .action(async (flags: UpFlags) => {
      process.exitCode = await guarded(flags, (context) => poolUp(flags, context));
    });
  pool
    .command('down')
    .description("end the pools (or the one --key names): their ready sandboxes go; tasks' claimed ones stay until they end")
    .option('--key <key>', 'only this pool (as asp pool status lists it)')
    .option('--json', 'print what went as one JSON object on stdout')
    .option('--debug', 'stack traces on errors')
    .action(async (flags: { key?: string; json?: boolean; debug?: boolean }) => {
      process.exitCode = await guarded(flags, (context) => poolDown(flags, context));
    });
  pool
    .command('status')
    .alias('ls')
    .description('list the pools: their image, limits, size, ready sandboxes and expiry')
    .option('--json', 'print them as one JSON array on stdout')
    .option('--debug', 'stack traces on errors')
    .action(async (flags: { json?: boolean; debug?: boolean }) => {
      process.exitCode = await guarded(flags, (context) => poolStatus(flags, context));
    });
  pool
    .command('keep <key>', { hidden: true })
    .description("the pool's keeper process (started by asp pool up)")
    .action(async (key: string) => {
      process.exitCode = await runKeeper(key);
    });
}

async function guarded(flags: { json?: boolean; debug?: boolean }, action: (context: CliContext) => Promise<number>): Promise<number> {
  const json = Boolean(flags.json);
  try {
    return await action(makeContext({ json, debug: Boolean(flags.debug) }));
  } catch (error) {
    return reportFailure(error, { json, debug: Boolean(flags.debug) });
  }
}

function dockerOnly(context: CliContext): SandboxBackend {
  if (!context.backend.warm) throw new AspError('BAD_INPUT', `warm pools run on Docker only; the ${context.backend.name} backend has none`, 'unset ASP_BACKEND (or set it to docker) for asp pool');
  return context.backend;
}

async function poolUp(flags: UpFlags, context: CliContext): Promise<number> {
  const size = wholeNumber('--size', flags.size, 1, MAX_SIZE);
  const ttlMs = parseDuration(flags.ttl);
  if (ttlMs === undefined || ttlMs < 1000 || ttlMs > MAX_TTL_MS)
    throw new AspError('BAD_INPUT', `--ttl ${flags.ttl} is not a duration from 1s to 24h`, 'pass --ttl how long the pool lives, e.g. --ttl 10m');
  const limits: Record<string, unknown> = {};
  if (flags.memory !== undefined) limits.memory = flags.memory;
  if (flags.cpus !== undefined) limits.cpus = numberFlag('--cpus', flags.cpus, false);
  if (flags.pids !== undefined) limits.pids = numberFlag('--pids', flags.pids, true);
  const asked = poolSpec({ repo: '.', task: '', limits, ...(flags.image ? { image: flags.image } : {}), ...(flags.runtime ? { runtime: flags.runtime } : {}) });
  // The limits a run under this runtime gets (gVisor raises a low pids limit): a pool of any other would never be claimed.
  const fitted = runtimeLimits(asked.runtime, asked.limits);
  if (fitted.note) context.log.warn({}, fitted.note);
  const spec = { ...asked, limits: fitted.limits };
  const backend = dockerOnly(context);
  const info = await backend.describe();
  checkLimitsFit(spec.limits, info);
  checkRuntime(spec.runtime, info);
  const image = await backend.prepareImage({
    image: spec.image,
    onBuildStart: (tag) => context.log.info({ image: tag }, `building the sandbox image ${tag} (first run, or asp changed); this takes a minute`),
  });
  const { memory, cpus, pids, tmpfs } = spec.limits;
  const key = poolKey({ image: image.ref, imageId: image.id, limits: { memory, cpus, pids, tmpfs }, runtime: spec.runtime }, backend.warm?.fingerprint ?? '');
  const home = context.settings.home;
  const now = systemClock.now();
  const known = await readPoolRecord(home, key);
  const keeper = known ? liveKeeper(known) : undefined;
  const record: PoolRecord = {
    key,
    image: image.ref,
    imageId: image.id ?? null,
    limits: { memory, cpus, pids, tmpfs },
    runtime: spec.runtime ?? null,
    size,
    ttlMs,
    expiresAt: new Date(now.getTime() + ttlMs).toISOString(),
    createdAt: known && keeper ? known.createdAt : now.toISOString(),
    id: known && keeper ? known.id : newPoolId(key),
    keeper: keeper ? formatSupervisor(keeper) : null,
  };
  await writePoolRecord(home, record);
  // A live keeper reads the record again now; a new one writes its own name into it first thing (pool-keeper.ts).
  if (!keeper || !signal(keeper.pid, 'SIGHUP')) startKeeper(key, home);
  const ready = await untilFilled(backend, record, home, Boolean(flags.json), context);
  const standby = await untilStandby(home);
  const summary = { key, id: record.id, image: record.image, limits: record.limits, runtime: record.runtime, size, ready, standby, expiresAt: record.expiresAt, log: logPath(home, key) };
  if (flags.json) context.stdout(JSON.stringify(summary) + '\n');
  else
    context.stdout(
      printableLine(
        `pool ${key}: ${ready} of ${size} sandbox(es) ready (${record.image}, memory ${formatBytes(memory)}, cpus ${cpus}, pids ${pids}${record.runtime ? `, runtime ${record.runtime}` : ''})${standby ? ', and a standby asp' : ''} until ${record.expiresAt}; ` +
          `asp run with this image and these limits claims one; asp pool down ends it`,
      ) + '\n',
    );
  return EXIT.ok;
}

/**
 * Waits (bounded) for a standby asp process to listen (src/cli/standby-server.ts), which `asp run` hands its run to; how many are.
 * None when ASP_STANDBY=0, or this asp has no build id (run from the compiled tree).
 */
async function untilStandby(home: string): Promise<number> {
  if (process.env.ASP_STANDBY === '0' || !buildId(process.argv[1])) return 0;
  const until = Date.now() + STANDBY_START_MS;
  for (;;) {
    const count = standbyCount(home);
    if (count > 0 || Date.now() > until) return count;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function standbyCount(home: string): number {
  try {
    return readdirSync(standbyDir(home)).filter((name) => name.endsWith('.sock')).length;
  } catch {
    return 0;
  }
}

/** Waits (bounded) for the pool to hold its size ready, saying how far it got; fails when its keeper died. */
async function untilFilled(backend: SandboxBackend, record: PoolRecord, home: string, quiet: boolean, context: CliContext): Promise<number> {
  const warm = backend.warm;
  if (!warm) return 0;
  const started = Date.now();
  const deadline = started + FILL_TIMEOUT_MS;
  let said = -1;
  for (;;) {
    const ready = (await warm.ready(record.id)).length;
    if (ready >= record.size) return ready;
    if (ready !== said && !quiet) process.stderr.write(`asp: pool ${record.key}: ${ready}/${record.size} ready\n`);
    said = ready;
    const current = await readPoolRecord(home, record.key);
    // A keeper just started may not have written its name yet.
    const starting = current?.keeper === null && Date.now() - started < KEEPER_START_MS;
    if (!current || (!starting && !liveKeeper(current))) {
      throw new AspError(
        'DOCKER_FAILED',
        `the keeper of pool ${record.key} ended before the pool filled: ${lastLine(logPath(home, record.key))}`,
        `read ${logPath(home, record.key)}; asp doctor checks the engine`,
      );
    }
    if (Date.now() > deadline) {
      context.log.warn({}, `pool ${record.key}: ${ready} of ${record.size} ready after ${formatDuration(FILL_TIMEOUT_MS)}; its keeper goes on filling it`);
      return ready;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function logPath(home: string, key: string): string {
  return path.join(poolsDir(home), `${key}.log`);
}

function lastLine(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').pop()?.slice(0, 300) ?? 'no log';
  } catch {
    return 'no log';
  }
}

/** Starts `asp pool keep <key>` on its own (detached, its output in the pool's log). */
function startKeeper(key: string, home: string): void {
  mkdirSync(poolsDir(home), { recursive: true });
  const log = openSync(logPath(home, key), 'a');
  const entry = process.argv[1];
  if (!entry) throw new Error('asp was started without its own path');
  try {
    const child = spawn(process.execPath, [...process.execArgv, entry, 'pool', 'keep', key], { detached: true, stdio: ['ignore', log, log], env: process.env });
    child.unref();
    if (child.pid === undefined) throw new AspError('DOCKER_FAILED', `cannot start the keeper of pool ${key}`, 'check that node can start processes here');
  } finally {
    closeSync(log);
  }
}

async function poolDown(flags: { key?: string; json?: boolean }, context: CliContext): Promise<number> {
  const backend = dockerOnly(context);
  const warm = backend.warm;
  if (!warm) return EXIT.ok;
  if (flags.key !== undefined && !POOL_KEY.test(flags.key)) throw new AspError('BAD_INPUT', `--key ${flags.key} is not a pool key (12 hex digits)`, 'asp pool status lists the pools and their keys');
  const home = context.settings.home;
  const records = (await listPoolRecords(home)).filter((record) => flags.key === undefined || record.key === flags.key);
  if (flags.key !== undefined && !records.length) throw new AspError('NOT_FOUND', `no pool ${flags.key}`, 'asp pool status lists the pools');
  const ended: Array<{ key: string; retired: number; claimed: number }> = [];
  for (const record of records) {
    const keeper = liveKeeper(record);
    // The record goes first: a keeper that looks finds it gone and ends, whatever it was doing.
    await removePoolRecord(home, record.key);
    if (keeper) {
      signal(keeper.pid, 'SIGTERM');
      const until = Date.now() + KEEPER_END_MS;
      while (liveKeeper(record) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // What a dead keeper left, and what a live one did not get to.
    const retired = await retireAll(warm, record.id, (line) => context.log.warn({}, line));
    const claimed = (await backend.listOwned([`${LABEL.managed}=true`, `${LABEL.pool}=${record.id}`])).filter((object) => object.kind === 'sandbox' && object.name.startsWith('asp-claimed-')).length;
    ended.push({ key: record.key, retired, claimed });
  }
  if (flags.json) context.stdout(JSON.stringify({ pools: ended }) + '\n');
  else if (!ended.length) context.stdout('no pools\n');
  else for (const pool of ended) context.stdout(`pool ${pool.key}: ended${pool.claimed ? `; ${pool.claimed} sandbox(es) held by running tasks stay until they end` : ''}\n`);
  return EXIT.ok;
}

async function poolStatus(flags: { json?: boolean }, context: CliContext): Promise<number> {
  const backend = dockerOnly(context);
  const records = await listPoolRecords(context.settings.home);
  const rows = await Promise.all(
    records.map(async (record) => ({
      key: record.key,
      id: record.id,
      image: record.image,
      limits: record.limits,
      runtime: record.runtime,
      size: record.size,
      ready: (await backend.warm?.ready(record.id))?.length ?? 0,
      expiresAt: record.expiresAt,
      keeper: liveKeeper(record) ? 'running' : 'gone',
    })),
  );
  const standby = standbyCount(context.settings.home);
  if (flags.json) context.stdout(JSON.stringify(rows) + '\n');
  else if (!rows.length) context.stdout('no pools (asp pool up starts one)\n');
  else {
    for (const row of rows)
      context.stdout(
        printableLine(
          `pool ${row.key}: ${row.ready}/${row.size} ready, ${row.image}, memory ${formatBytes(row.limits.memory)}, cpus ${row.limits.cpus}, until ${row.expiresAt}, keeper ${row.keeper}`,
        ) + '\n',
      );
    context.stdout(`standby asp processes waiting for asp run: ${standby}\n`);
  }
  return EXIT.ok;
}

/** The keeper itself: its log is its stdout and stderr (the pool's log file). */
async function runKeeper(key: string): Promise<number> {
  if (!POOL_KEY.test(key)) {
    process.stderr.write(`asp: error: ${printableLine(key)} is not a pool key — asp pool up starts keepers\n`);
    return EXIT.badInput;
  }
  const context = makeContext({ json: true });
  const stop = new AbortController();
  const listeners: Array<() => void> = [];
  process.on('SIGTERM', () => stop.abort());
  process.on('SIGINT', () => stop.abort());
  process.on('SIGUSR2', () => listeners.forEach((listener) => listener()));
  process.on('SIGHUP', () => listeners.forEach((listener) => listener()));
  const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${printableLine(line)}\n`);
  try {
    const entry = process.argv[1];
    await keepPool(key, {
      backend: dockerOnly(context),
      home: context.settings.home,
      clock: systemClock,
      log,
      signal: stop.signal,
      nudges: { on: (listener) => listeners.push(listener) },
      standby: (refillDelayMs) => (entry ? keepStandby({ entry, log, refillDelayMs }) : undefined),
    });
    return EXIT.ok;
  } catch (error) {
    log(`pool ${key}: the keeper failed: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT.infrastructure;
  }
}

/** Sends a signal; false when the process is gone already. */
function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

/** The pool's image and limits, checked as asp run checks them; a problem names the flag, as asp run's do. */
function poolSpec(input: Record<string, unknown>): TaskSpec {
  try {
    return parseTaskSpec(input, 'asp pool up');
  } catch (error) {
    if (!(error instanceof AspError) || error.code !== 'BAD_INPUT') throw error;
    const message = error.message.replace(/^asp pool up: limits\.(memory|cpus|pids)\b/, 'asp pool up: --$1').replace(/^asp pool up: (image|runtime)\b/, 'asp pool up: --$1');
    throw new AspError('BAD_INPUT', message, error.hint ?? 'give the limits as asp run takes them (--memory 2g --cpus 1 --pids 512): a run claims only from a pool of its own limits', {
      cause: error,
    });
  }
}
