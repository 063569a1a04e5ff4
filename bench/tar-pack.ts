/**
 * bench/tar-pack (issue 15 item 4): asp's own tar writer (src/workspace/tar-pack.ts, behind packForSandbox) against
 * tar-fs pack() set up to write the same entries. The question: is asp's writer still measurably faster, or can
 * tar-fs (already a dependency) replace it?
 *
 * Three generated workspaces, laid out as run-task.ts packs them (`repo/` of a real clone, .git included, plus the
 * two host files under their sandbox names): a small repository, a medium one with a few big binaries, and one
 * made of edge cases (links, empty dirs, modes, long and non-ASCII names, a hard link, a fifo).
 *
 * First both tars of each tree are read back and compared entry by entry: a difference is a correctness finding,
 * and speed means nothing until the two write the same archive. Then, ROUNDS times each and alternating which goes
 * first (so neither always runs on a warmer machine):
 *  - drained in-process the way sendTar reads it (for await, one frame header per chunk): pack cost alone;
 *  - fed through the real feedSandbox into a pipe (`cat > /dev/null`), which is what a container's stdin does.
 * Both also report the longest the event loop went without a turn: asp's writer reads synchronously, and a stall
 * there delays every other task the supervisor runs. With a consumer that never waits (the first) nothing yields,
 * so that figure is the whole pack; the pipe's backpressure is what shows the stall in production.
 * Peak RSS comes from one child process per writer and tree (maxRSS only ever grows within one process).
 *
 * Needs `npm run build` and git; no Docker. ROUNDS changes the number of rounds.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import tarFs from 'tar-fs';
import tarStream from 'tar-stream';
import { z } from 'zod';
import { packForSandbox, SANDBOX_GID, SANDBOX_UID } from '../src/workspace/workspace-tar.js';
import type { PackEntry } from '../src/workspace/tar-pack.js';
import { encodeHostMessage } from '../src/protocol/host-messages.js';
import type { SandboxTask } from '../src/protocol/messages.js';
import { feedSandbox } from '../src/supervisor/workspace-feed.js';
import { hostFilePath, taskTextEntry } from '../src/workspace/host-state.js';
import { HOST_STATE_DIR } from '../src/workspace/host-workspace.js';

const ROUNDS = Number(process.env.ROUNDS ?? 12);
const self = fileURLToPath(import.meta.url);

type Writer = 'asp' | 'tar-fs';
const WRITERS: readonly Writer[] = ['asp', 'tar-fs'];

interface Tree {
  label: string;
  dir: string;
  entries: PackEntry[];
}

function pack(writer: Writer, dir: string, entries: PackEntry[]): Readable {
  return writer === 'asp' ? packForSandbox(dir, entries) : packWithTarFs(dir, entries);
}

/** tar-fs told everything packForSandbox does implicitly; each option below closes a difference found by the read-back. */
function packWithTarFs(dir: string, entries: PackEntry[]): Readable {
  const renamed = new Map<string, string>();
  const sources = entries.map((entry) => {
    if (typeof entry === 'string') return entry;
    renamed.set(entry.from, entry.as);
    return entry.from;
  });
  const options: tarFs.PackOptions & { sort: boolean; umask: number } = {
    entries: sources,
    // asp sorts every directory's names; tar-fs would follow readdir order.
    sort: true,
    // asp keeps the modes on disk; tar-fs would mask them with the supervisor's umask (an executable 0775 → 0755).
    umask: 0,
    // asp leaves out fifos, sockets and devices; by default tar-fs fails the whole pack on a fifo.
    strict: false,
    // asp renames only single-file entries (the host files), so an exact-name lookup is all it takes here.
    map: (header) => Object.assign(header, { name: renamed.get(header.name) ?? header.name, uid: SANDBOX_UID, gid: SANDBOX_GID, uname: 'asp', gname: 'asp' }),
  };
  // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- a streamx stream: typed apart from node's Readable, but read the same way (async iteration, pipeline)
  return tarFs.pack(dir, options) as unknown as Readable;
}

// ---------------------------------------------------------------------------------------------------------------
// Trees

/** Seeded, so every run (and both writers) see the same bytes. */
function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

const WORDS = [
  'const',
  'return',
  'function',
  'await',
  'import',
  'export',
  'if',
  'else',
  'for',
  'of',
  'new',
  'this',
  'value',
  'result',
  'error',
  'index',
  'length',
  'options',
  '=',
  '=>',
  '{',
  '}',
  '(',
  ')',
  ';',
  '.',
  ',',
];

/** Text that compresses like source code does, so .git gets packs of a realistic size rather than raw copies. */
function sourceText(random: () => number, bytes: number): Buffer {
  const lines: string[] = [];
  let length = 0;
  while (length < bytes) {
    const words = Array.from({ length: 3 + Math.floor(random() * 9) }, () => WORDS[Math.floor(random() * WORDS.length)]);
    const line = `${'  '.repeat(Math.floor(random() * 4))}${words.join(' ')} name${Math.floor(random() * 5000)};`;
    lines.push(line);
    length += line.length + 1;
  }
  return Buffer.from(lines.join('\n')).subarray(0, bytes);
}

/** Incompressible: stands in for images, fixtures, vendored archives. */
function binary(random: () => number, bytes: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  for (let offset = 0; offset + 4 <= bytes; offset += 4) buffer.writeUInt32LE(Math.floor(random() * 2 ** 32), offset);
  return buffer;
}

function write(file: string, content: Buffer, mode?: number): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  // Set explicitly: writeFileSync's mode goes through the umask, and the point is to see modes survive.
  if (mode !== undefined) chmodSync(file, mode);
}

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'bench',
  GIT_AUTHOR_EMAIL: 'bench@example.invalid',
  GIT_COMMITTER_NAME: 'bench',
  GIT_COMMITTER_EMAIL: 'bench@example.invalid',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
};

function git(cwd: string, ...args: string[]): void {
  execFileSync('git', args, { cwd, env: GIT_ENV, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A workspace as the host lays it out: `repo/` cloned (not just `git init`ed, so .git has a pack, an index, hooks
 * and logs like a real clone) from an origin built by `build`, which commits as often as it likes.
 */
function workspace(scratch: string, label: string, build: (origin: string, commit: (message: string) => void) => void): Tree {
  const origin = path.join(scratch, `${label}-origin`);
  const dir = path.join(scratch, label);
  mkdirSync(origin, { recursive: true });
  git(origin, 'init', '-q', '-b', 'main');
  build(origin, (message) => {
    git(origin, 'add', '-A');
    git(origin, 'commit', '-q', '-m', message);
  });
  mkdirSync(dir);
  // --no-local: a clone over the pack protocol, as from a forge, rather than hard links to the origin's objects.
  git(dir, 'clone', '-q', '--no-local', origin, 'repo');
  const stateDir = path.join(dir, HOST_STATE_DIR);
  const paths = { dir, stateDir };
  write(hostFilePath(paths, 'task'), Buffer.from(JSON.stringify({ taskId: label, steps: [{ name: 'test', run: 'npm test' }] })));
  write(path.join(stateDir, 'task.txt'), Buffer.from('Make the tests pass.\n'));
  // The same list run-task.ts passes packForSandbox.
  const entries: PackEntry[] = ['repo', { from: path.relative(dir, hostFilePath(paths, 'task')), as: '.asp/task.json' }, taskTextEntry(paths)];
  return { label, dir, entries };
}

function smallTree(scratch: string): Tree {
  const random = prng(1);
  return workspace(scratch, 'small', (origin, commit) => {
    const files = Array.from({ length: 200 }, (_, index) => path.join(origin, `src/mod${index % 12}/file${index}.ts`));
    for (const file of files) write(file, sourceText(random, 1024 + Math.floor(random() * 5 * 1024)));
    commit('initial');
    // A little history, so .git holds more than one commit's worth of objects.
    for (let round = 0; round < 4; round += 1) {
      for (let change = 0; change < 20; change += 1) {
        const file = files[Math.floor(random() * files.length)];
        if (file) write(file, sourceText(random, 1024 + Math.floor(random() * 5 * 1024)));
      }
      commit(`change ${round}`);
    }
  });
}

function mediumTree(scratch: string): Tree {
  const random = prng(2);
  return workspace(scratch, 'medium', (origin, commit) => {
    for (let index = 0; index < 5000; index += 1) {
      const file = path.join(origin, `packages/pkg${index % 25}/src/mod${Math.floor(index / 25) % 8}/file${index}.ts`);
      write(file, sourceText(random, 512 + Math.floor(random() * 9 * 1024)));
    }
    commit('initial');
    // Sizes on both sides of tar-pack.ts's READ_BYTES (1 MiB), where it switches from one read to pieces.
    for (const [name, megabytes] of [
      ['logo.png', 0.25],
      ['fixture.bin', 1.5],
      ['model.onnx', 4],
      ['dataset.parquet', 8],
    ] as const) {
      write(path.join(origin, 'assets', name), binary(random, Math.round(megabytes * 1024 * 1024)));
    }
    commit('assets');
  });
}

/** Everything a workspace may hold that a plain file tree does not, and where two tar writers might disagree. */
function edgeTree(scratch: string): Tree {
  const random = prng(3);
  const tree = workspace(scratch, 'edge', (origin, commit) => {
    write(path.join(origin, 'README.md'), sourceText(random, 2000));
    write(path.join(origin, 'src/index.ts'), sourceText(random, 3000));
    write(path.join(origin, 'bin/run.sh'), Buffer.from('#!/bin/sh\necho run\n'), 0o755);
    commit('initial');
  });
  const repo = path.join(tree.dir, 'repo');
  // After the clone: git tracks neither these modes nor empty dirs, fifos or hard links, but a workspace has them.
  write(path.join(repo, 'bin/tool'), binary(random, 4096), 0o775);
  write(path.join(repo, 'private/key'), Buffer.from('not a key\n'), 0o600);
  chmodSync(path.join(repo, 'private'), 0o700);
  mkdirSync(path.join(repo, 'empty/nested/deeper'), { recursive: true });
  mkdirSync(path.join(repo, 'empty-top'));
  mkdirSync(path.join(repo, 'links'));
  symlinkSync('../README.md', path.join(repo, 'links/file'));
  symlinkSync('../src', path.join(repo, 'links/dir'));
  symlinkSync('../nowhere', path.join(repo, 'links/dangling'));
  symlinkSync('/etc/hostname', path.join(repo, 'links/absolute'));
  symlinkSync(`${'../x/'.repeat(25)}target`, path.join(repo, 'links/long-target')); // over ustar's 100 bytes
  symlinkSync('file', path.join(repo, 'links/chain'));
  // A path over 100 bytes that splits into prefix + name, and one segment too long to split at all (PAX).
  write(path.join(repo, `${'deep/'.repeat(22)}split-me.txt`), Buffer.from('split\n'));
  write(path.join(repo, 'long', `${'n'.repeat(120)}.txt`), Buffer.from('long\n'));
  write(path.join(repo, 'unicode/café-日本.txt'), Buffer.from('utf-8\n'));
  mkdirSync(path.join(repo, 'unicode/目录'));
  write(path.join(repo, 'sizes/zero'), Buffer.alloc(0));
  write(path.join(repo, 'sizes/one-block'), binary(random, 512));
  write(path.join(repo, 'sizes/one-mib'), binary(random, 1024 * 1024));
  write(path.join(repo, 'sizes/one-mib-and-one'), binary(random, 1024 * 1024 + 1));
  write(path.join(repo, 'hard/a'), Buffer.from('shared inode\n'));
  linkSync(path.join(repo, 'hard/a'), path.join(repo, 'hard/b'));
  execFileSync('mkfifo', [path.join(repo, 'fifo')]);
  return tree;
}

// ---------------------------------------------------------------------------------------------------------------
// Read-back

interface Entry {
  name: string;
  type: string;
  size: number;
  mode: string;
  owner: string;
  linkname: string;
  mtime: number;
  sha256: string;
}

/** Every field of an Entry, in its order; the mapped type makes one left out a compile error. */
const ENTRY_FIELDS = Object.values({
  name: 'name',
  type: 'type',
  size: 'size',
  mode: 'mode',
  owner: 'owner',
  linkname: 'linkname',
  mtime: 'mtime',
  sha256: 'sha256',
} satisfies { [K in keyof Entry]: K });

async function readBack(tar: Readable): Promise<Entry[]> {
  const entries: Entry[] = [];
  const extract = tarStream.extract();
  extract.on('entry', (header, stream, next) => {
    const hash = createHash('sha256');
    // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- streamx types the data of an entry unknown; tar-stream's entries emit the archive's bytes as Buffers
    stream.on('data', (chunk) => hash.update(chunk as Buffer));
    stream.on('end', () => {
      entries.push({
        name: header.name,
        type: header.type ?? 'file',
        size: header.size ?? 0,
        mode: (header.mode ?? 0).toString(8),
        owner: `${header.uid}:${header.gid} ${header.uname}:${header.gname}`,
        linkname: header.linkname ?? '',
        mtime: header.mtime?.getTime() ?? 0,
        sha256: hash.digest('hex').slice(0, 16),
      });
      next();
    });
  });
  await pipeline(tar, extract);
  return entries;
}

/**
 * Lines describing every way the two archives differ, entry by entry; empty when they hold the same. Entries are
 * matched without a directory's trailing slash: asp writes `dir/`, tar-stream `dir` (its encoder checks a typeflag
 * it never sets). Both are valid ustar and the sandbox's tar reads either, so that is counted apart, not listed.
 * An mtime one second apart is real, not noise: tar-fs passes stat.mtime, a Date that Node rounds to the nearest
 * millisecond, so a file stamped in the last half millisecond of a second gets the next one; asp truncates.
 */
function differences(asp: Entry[], other: Entry[]): { found: string[]; slashOnly: number } {
  const key = (entry: Entry) => (entry.type === 'directory' ? entry.name.replace(/\/$/, '') : entry.name);
  const byName = (list: Entry[]) => new Map(list.map((entry) => [key(entry), entry]));
  const [left, right] = [byName(asp), byName(other)];
  const found: string[] = [];
  let slashOnly = 0;
  for (const name of left.keys()) if (!right.has(name)) found.push(`only in asp's: ${name}`);
  for (const name of right.keys()) if (!left.has(name)) found.push(`only in tar-fs's: ${name}`);
  for (const [name, mine] of left) {
    const theirs = right.get(name);
    if (!theirs) continue;
    if (mine.name !== theirs.name && mine.type === 'directory' && theirs.type === 'directory') slashOnly += 1;
    for (const field of ENTRY_FIELDS) {
      if (field !== 'name' && mine[field] !== theirs[field]) found.push(`${name}: ${field} ${String(mine[field])} (asp) vs ${String(theirs[field])} (tar-fs)`);
    }
  }
  if (asp.length !== left.size || other.length !== right.size) found.push(`duplicate names: asp ${asp.length - left.size}, tar-fs ${other.length - right.size}`);
  return { found, slashOnly };
}

// ---------------------------------------------------------------------------------------------------------------
// Timing

interface Sample {
  wallMs: number;
  cpuMs: number;
  stallMs: number;
}

interface Counts {
  bytes: number;
  chunks: number;
}

type Consumer = (tar: Readable) => Promise<unknown>;

/**
 * CPU is process.cpuUsage: every thread of the process, so tar-fs's reads on the libuv pool count as well as the
 * main thread. The stall is the longest gap between ticks of a 1 ms timer, closed by one more turn of the loop
 * after the run: monitorEventLoopDelay only samples when the loop turns, so a run that never yields reads as 0.
 */
async function measure(run: () => Promise<unknown>): Promise<Sample> {
  let last = performance.now();
  let stallMs = 0;
  const tick = () => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  };
  const probe = setInterval(tick, 1);
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run();
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  await new Promise((resolve) => setImmediate(resolve));
  tick();
  clearInterval(probe);
  return { wallMs, cpuMs: (used.user + used.system) / 1000, stallMs };
}

/** Reads the tar as sendTar does, framing each chunk, with nothing downstream to wait on. */
async function drain(tar: Readable): Promise<Counts> {
  let bytes = 0;
  let chunks = 0;
  for await (const chunk of tar as AsyncIterable<Buffer>) {
    if (!chunk.length) continue;
    encodeHostMessage({ type: 'workspace.data', bytes: chunk.length });
    bytes += chunk.length;
    chunks += 1;
  }
  return { bytes, chunks };
}

const FEED_TASK: SandboxTask = {
  taskId: 'bench',
  task: 'bench',
  steps: [{ name: 'test', run: 'true', timeoutMs: 1000 }],
  deadlineAt: 0,
  outputCapBytes: 1024,
  diskLimitBytes: 1024 ** 3,
  baseCommit: 'a'.repeat(40),
  branch: 'asp/bench',
  secretEnv: [],
};

/**
 * The host side of the production path: feedSandbox into a pipe with a reader at the other end, so the feed waits
 * on backpressure as it does on a container's stdin. One reader serves every round: starting a process per round
 * would put a fork in every measurement.
 */
async function withPipe<T>(use: (consume: Consumer) => Promise<T>): Promise<T> {
  const reader = spawn('sh', ['-c', 'cat > /dev/null'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const closed = new Promise<void>((resolve) => reader.on('close', () => resolve()));
  const stdin = reader.stdin;
  try {
    return await use(async (tar) => {
      await feedSandbox(stdin, FEED_TASK, tar);
      // Done when the last frame has left the process, not when it was queued.
      if (stdin.writableLength) await new Promise((resolve) => stdin.once('drain', resolve));
    });
  } finally {
    stdin.end();
    await closed;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  // NaN for no values, as the arithmetic on missing ones always gave.
  const at = (index: number) => sorted[index] ?? Number.NaN;
  return sorted.length % 2 ? at(middle) : (at(middle - 1) + at(middle)) / 2;
}

/** ROUNDS of each writer, alternating who goes first, after one unmeasured warm-up each (JIT, page cache). */
async function rounds(tree: Tree, consume: Consumer): Promise<Record<Writer, Sample[]>> {
  const samples: Record<Writer, Sample[]> = { asp: [], 'tar-fs': [] };
  for (const writer of WRITERS) await consume(pack(writer, tree.dir, tree.entries));
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = round % 2 ? [...WRITERS].reverse() : WRITERS;
    for (const writer of order) samples[writer].push(await measure(() => consume(pack(writer, tree.dir, tree.entries))));
  }
  return samples;
}

/** Peak RSS of one pack in a fresh process, over that process's own baseline (node plus both writers loaded). */
function peakRss(writer: Writer, tree: Tree): { peakMb: number; overBaselineMb: number } {
  const result = spawnSync(process.execPath, [self, '--rss', writer, tree.dir, JSON.stringify(tree.entries)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`rss child failed: ${result.stderr.slice(-800)}`);
  const { before, after } = rssReport.parse(JSON.parse(result.stdout));
  return { peakMb: after / 1024, overBaselineMb: (after - before) / 1024 };
}

// ---------------------------------------------------------------------------------------------------------------
// Report

const mb = (bytes: number) => bytes / (1024 * 1024);

function row(label: string, asp: number, other: number, digits = 1, ratio = true): string {
  const cells = [asp.toFixed(digits).padStart(10), other.toFixed(digits).padStart(10)];
  return `    ${label.padEnd(34)}${cells.join('')}${ratio ? (other / asp).toFixed(2).padStart(12) : ''}`;
}

async function benchTree(tree: Tree): Promise<void> {
  const [mine, theirs] = [await readBack(pack('asp', tree.dir, tree.entries)), await readBack(pack('tar-fs', tree.dir, tree.entries))];
  const { found, slashOnly } = differences(mine, theirs);
  const files = mine.filter((entry) => entry.type === 'file');
  const content = files.reduce((sum, entry) => sum + entry.size, 0);
  console.log(`\n  ${tree.label}: ${mine.length} entries (${files.length} files, ${mb(content).toFixed(1)} MB of content)`);
  const bare = (entry: Entry | undefined) => entry?.name.replace(/\/$/, '');
  const sameOrder = mine.length === theirs.length && mine.every((entry, index) => bare(entry) === bare(theirs[index]));
  console.log(
    `    read-back: ${found.length ? `${found.length} DIFFERENCES` : 'same entries (name, type, size, mode, owner, link, mtime, content)'}; order ${sameOrder ? 'same' : 'differs'}; ${slashOnly} directory names differ only by the trailing slash`,
  );
  for (const line of found.slice(0, 12)) console.log(`      ${line}`);
  if (found.length > 12) console.log(`      … and ${found.length - 12} more`);

  // One value per writer, in WRITERS order, as a pair that row() spreads into its asp and tar-fs columns.
  const both = <T>(compute: (writer: Writer, index: 0 | 1) => T): [T, T] => [compute('asp', 0), compute('tar-fs', 1)];
  const counts = await Promise.all(both((writer) => drain(pack(writer, tree.dir, tree.entries))));
  const drained = await rounds(tree, drain);
  const fed = await withPipe((consume) => rounds(tree, consume));
  const pick = (samples: Record<Writer, Sample[]>, field: keyof Sample) => both((writer) => median(samples[writer].map((sample) => sample[field])));
  const [aspCounts, tarFsCounts] = counts;
  const rss = both((writer) => peakRss(writer, tree));
  const drainedWall = pick(drained, 'wallMs');
  const drainedCpu = pick(drained, 'cpuMs');

  console.log(`    ${`median of ${ROUNDS} rounds`.padEnd(34)}${'asp'.padStart(10)}${'tar-fs'.padStart(10)}${'tar-fs/asp'.padStart(12)}`);
  console.log(row('tar MB', mb(aspCounts.bytes), mb(tarFsCounts.bytes), 2));
  console.log(row('chunks (one frame each)', aspCounts.chunks, tarFsCounts.chunks, 0));
  console.log('    drained in-process (pack cost):');
  console.log(row('  wall ms', ...drainedWall, 1));
  console.log(row('  CPU ms', ...drainedCpu, 1));
  console.log(row('  CPU µs per entry', ...both((_, index) => (drainedCpu[index] * 1000) / mine.length), 1));
  console.log(row('  MB/s', ...both((_, index) => mb(counts[index].bytes) / (drainedWall[index] / 1000)), 0));
  console.log(row('  longest loop gap ms (1 ms timer)', ...pick(drained, 'stallMs'), 1));
  console.log('    feedSandbox into a pipe (production path):');
  console.log(row('  wall ms', ...pick(fed, 'wallMs'), 1));
  console.log(row('  CPU ms', ...pick(fed, 'cpuMs'), 1));
  console.log(row('  longest loop gap ms (1 ms timer)', ...pick(fed, 'stallMs'), 1));
  console.log(row('peak RSS MB (one pack, own process)', rss[0].peakMb, rss[1].peakMb, 1));
  console.log(row("  over that process's baseline", rss[0].overBaselineMb, rss[1].overBaselineMb, 1, false));
}

async function main(): Promise<void> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-tar-'));
  try {
    const generating = performance.now();
    const trees = [smallTree(scratch), mediumTree(scratch), edgeTree(scratch)];
    console.log(
      `bench/tar-pack: asp's tar writer vs tar-fs ${ROUNDS} rounds each (trees generated in ${((performance.now() - generating) / 1000).toFixed(1)} s; node ${process.version}, ${os.cpus().length} CPUs)`,
    );
    for (const tree of trees) await benchTree(tree);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** What the child side of peakRss prints. */
const rssReport = z.object({ before: z.number(), after: z.number() });

/** The argv of the child side of peakRss after `--rss`, as peakRss passes it: the writer, the dir, the entries as JSON. */
const rssArgs = z.tuple([
  z.enum(WRITERS),
  z.string(),
  z
    .string()
    .transform((text): unknown => JSON.parse(text))
    .pipe(z.array(z.union([z.string(), z.object({ from: z.string(), as: z.string() })]))),
]);

/** The child side of peakRss: one pack, drained, and this process's maxRSS (KiB) before and after it. */
async function rssChild(writer: Writer, dir: string, entries: PackEntry[]): Promise<void> {
  const before = process.resourceUsage().maxRSS;
  await drain(pack(writer, dir, entries));
  console.log(JSON.stringify({ before, after: process.resourceUsage().maxRSS }));
}

if (process.argv[2] === '--rss') await rssChild(...rssArgs.parse(process.argv.slice(3)));
else await main();
