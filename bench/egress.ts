/**
 * bench/egress (issue 19): a download through the sandbox's egress proxy against the same download directly on the
 * host, measured in one run. A server in this process streams BYTES (default 200 MB) on 127.0.0.1; one Node client
 * (the same script both times) reads it and times itself:
 *
 *   - directly on the host, ROUNDS times;
 *   - in a sandbox, through the proxy, ROUNDS times each as a plain HTTP request (forwarded) and through CONNECT (a
 *     tunnel, as HTTPS goes), all steps of one `asp run --allow-host 127.0.0.1:PORT`;
 *   - the same, with the server paced at PACE MiB/s (default 100: about a 1 Gbit/s link), so the ratio says what the
 *     proxy costs on a link slower than loopback.
 *
 * Goal: at least 50% of direct throughput, the supervisor's RSS under 200 MB. Also printed: the supervisor's CPU per
 * MB moved (its CPU in the download run, less its CPU in a run of the same steps fetching 1 byte), which is what the
 * relay costs the host. Needs Docker and `npm run build`: `npm run bench:egress`.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';

const usageSchema = z.object({ userCPUTime: z.number(), systemCPUTime: z.number(), maxRSS: z.number() });

const BYTES = Number(process.env.BYTES ?? 200 * 1000 * 1000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const PACE_MIB = Number(process.env.PACE ?? 100);
/** The image of the transport's ceiling: any with a shell, cat and date. */
const BASE_IMAGE = process.env.BASE_IMAGE ?? 'node:20-bookworm-slim';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'dist', 'cli', 'asp.cjs');
// eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- typed by scripts/git-fixture.d.mts; loaded by path because the bench runs from dist/bench
const { makeRepoFromDir } = (await import(pathToFileURL(path.join(root, 'scripts', 'git-fixture.mjs')).href)) as typeof import('../scripts/git-fixture.mjs');

/** Reads the URL (through HTTP_PROXY when set, in absolute form or, with --tunnel, through CONNECT) and prints `bytes ms`. */
const CLIENT = String.raw`
const http = require('http');
const url = new URL(process.argv[2]);
const proxy = process.env.HTTP_PROXY ? new URL(process.env.HTTP_PROXY) : undefined;
const started = process.hrtime.bigint();
const read = (response) => {
  let bytes = 0;
  response.on('data', (chunk) => (bytes += chunk.length));
  response.on('end', () => console.log('read ' + bytes + ' ' + Number(process.hrtime.bigint() - started) / 1e6));
};
if (!proxy) http.get(url, read);
else if (!process.argv.includes('--tunnel')) http.get({ host: proxy.hostname, port: proxy.port, path: url.href }, read);
else {
  const connect = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: url.host });
  connect.on('connect', (_answer, socket) => http.get({ createConnection: () => socket, host: url.hostname, path: url.pathname + url.search }, read));
  connect.end();
}
`;

/** Streams `bytes` from one 1 MiB block, paced to `mibps` MiB/s when given. */
function startServer(): Promise<{ port: number; close(): void }> {
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://x');
    const bytes = Number(url.searchParams.get('bytes') ?? BYTES);
    const pace = Number(url.searchParams.get('pace') ?? 0);
    response.writeHead(200, { 'content-length': bytes });
    let sent = 0;
    const started = performance.now();
    const more = () => {
      while (sent < bytes) {
        // Paced: no further than the rate allows by now; come back when it does.
        if (pace && sent > ((performance.now() - started) / 1000) * pace * 1024 * 1024) return void setTimeout(more, 2);
        const piece = block.subarray(0, Math.min(block.length, bytes - sent));
        sent += piece.length;
        if (!response.write(piece)) return void response.once('drain', more);
      }
      response.end();
    };
    more();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({ port: typeof address === 'object' && address ? address.port : 0, close: () => (server.closeAllConnections(), server.close()) });
    }),
  );
}

interface Spawned {
  code: number | null;
  stdout: string;
  stderr: string;
  cpuMs: number;
  maxRssKb: number;
}

/** Runs a Node program; with `usage`, it writes its own CPU time and peak RSS when it exits (a preload). */
function node(args: string[], env: Record<string, string | undefined>, scratch: string): Promise<Spawned> {
  const out = path.join(scratch, `usage-${Math.random().toString(36).slice(2)}.json`);
  const preload = path.join(scratch, 'usage.mjs');
  writeFileSync(preload, `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(process.env.ASP_BENCH_USAGE, JSON.stringify(process.resourceUsage())));\n`);
  const child = spawn(process.execPath, ['--import', preload, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env, ASP_BENCH_USAGE: out }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const usage = usageSchema.parse(JSON.parse(readFileSync(out, 'utf8')));
      resolve({ code, stdout, stderr, cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000, maxRssKb: usage.maxRSS });
    });
  });
}

/** MB/s of each `[<prefix>N] read <bytes> <ms>` line (or bare `read` lines with no prefix), each checked to have read all. */
function rates(text: string, prefix: string | undefined, bytes: number): number[] {
  const lines = text.split('\n').filter((line) => (prefix ? new RegExp(`^\\[${prefix}\\d+\\] read `).test(line) : line.startsWith('read ')));
  if (!lines.length) throw new Error(`no read line${prefix ? ` of ${prefix}` : ''} in:\n${text.slice(-2000)}`);
  return lines.map((line) => {
    const match = /read (\d+) ([\d.]+)/.exec(line);
    if (!match || Number(match[1]) !== bytes) throw new Error(`a client did not read all ${bytes} bytes: ${line}`);
    return bytes / 1e6 / (Number(match[2]) / 1000);
  });
}

/** Milliseconds a container takes to read `bytes` from its stdin through `docker run -i` (cat to /dev/null). */
function attachMs(bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const script = 's=$(date +%s%N); cat >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))';
    const child = spawn('sh', ['-c', `head -c ${bytes} /dev/zero | docker run -i --rm --network none ${BASE_IMAGE} sh -c '${script}'`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`docker run -i exited ${code}`))));
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-bench-egress-'));
  const server = await startServer();
  try {
    const source = path.join(scratch, 'source');
    writeFileSync(path.join(scratch, 'client.js'), CLIENT);
    mkdirSync(source);
    writeFileSync(path.join(source, 'client.js'), CLIENT);
    const repo = path.join(scratch, 'repo');
    makeRepoFromDir(source, repo);
    const env = { DOCKER_HOST: process.env.DOCKER_HOST, ASP_WORKSPACES: path.join(scratch, 'workspaces'), ASP_HOME: path.join(scratch, 'home') };
    const bytesOf = (query: string) => Number(new URLSearchParams(query).get('bytes'));
    const url = (query: string) => `http://127.0.0.1:${server.port}/blob?${query}`;

    const direct = async (query: string) => {
      const values: number[] = [];
      for (let round = 0; round < ROUNDS; round += 1) values.push(...rates((await node([path.join(scratch, 'client.js'), url(query)], {}, scratch)).stdout, undefined, bytesOf(query)));
      return median(values);
    };
    const proxied = async (query: string) => {
      const steps: string[] = [];
      for (let round = 0; round < ROUNDS; round += 1)
        steps.push('--step', `plain${round}=NO_PROXY= node client.js '${url(query)}'`, '--step', `tunnel${round}=NO_PROXY= node client.js '${url(query)}' --tunnel`);
      const ran = await node([cli, 'run', '--repo', repo, '--allow-host', `127.0.0.1:${server.port}`, '--egress-bytes', '100g', '--timeout', '30m', ...steps], env, scratch);
      if (ran.code !== 0) throw new Error(`asp run exited ${ran.code}: ${ran.stderr.slice(-2000)}`);
      return { plain: median(rates(ran.stdout, 'plain', bytesOf(query))), tunnel: median(rates(ran.stdout, 'tunnel', bytesOf(query))), run: ran };
    };

    // A run of the same steps moving one byte each: what asp costs without the bytes.
    const idle = await proxied('bytes=1');
    const fast = { direct: await direct(`bytes=${BYTES}`), proxy: await proxied(`bytes=${BYTES}`) };
    const paced = { direct: await direct(`bytes=${BYTES}&pace=${PACE_MIB}`), proxy: await proxied(`bytes=${BYTES}&pace=${PACE_MIB}`) };

    // The transport's own ceiling: the bytes into a container's stdin through `docker run -i`, timed inside it.
    const ceilings: number[] = [];
    for (let round = 0; round < ROUNDS; round += 1) ceilings.push(BYTES / 1e6 / ((await attachMs(BYTES)) / 1000));
    const ceiling = median(ceilings);
    const mb = (BYTES / 1e6) * ROUNDS * 2;
    const cpuPerMb = (fast.proxy.run.cpuMs - idle.run.cpuMs) / mb;
    const ratio = (value: number, against: number) => (value / against).toFixed(2);
    const line = (label: string, value: number, against?: number) => `  ${label.padEnd(58)} ${value.toFixed(0).padStart(6)} MB/s${against ? `   ratio ${ratio(value, against)}` : ''}`;
    console.log(`bench/egress: ${BYTES / 1e6} MB per download, median of ${ROUNDS}, on ${os.cpus().length} cores`);
    console.log(line('loopback, directly on the host', fast.direct));
    console.log(line('loopback, through the proxy (plain HTTP)', fast.proxy.plain, fast.direct));
    console.log(line('loopback, through the proxy (CONNECT)', fast.proxy.tunnel, fast.direct));
    console.log(line(`docker run -i stdin alone (the transport's ceiling)`, ceiling, fast.direct));
    console.log(line(`paced at ${PACE_MIB} MiB/s, directly on the host`, paced.direct));
    console.log(line(`paced at ${PACE_MIB} MiB/s, through the proxy (plain HTTP)`, paced.proxy.plain, paced.direct));
    console.log(line(`paced at ${PACE_MIB} MiB/s, through the proxy (CONNECT)`, paced.proxy.tunnel, paced.direct));
    console.log(
      `  supervisor: ${cpuPerMb.toFixed(2)} ms CPU per MB moved (${fast.proxy.run.cpuMs.toFixed(0)} ms for ${mb} MB, less ${idle.run.cpuMs.toFixed(0)} ms without them); peak RSS ${(Math.max(fast.proxy.run.maxRssKb, paced.proxy.run.maxRssKb) / 1024).toFixed(0)} MiB (goal < 200)`,
    );
    console.log(
      `  goal: at least 0.50 of direct: loopback ${ratio(Math.min(fast.proxy.plain, fast.proxy.tunnel), fast.direct)}, paced ${ratio(Math.min(paced.proxy.plain, paced.proxy.tunnel), paced.direct)}`,
    );
  } finally {
    server.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
