import { mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { setStandbyAsk } from './terminal-ask.js';
import { aspHome } from '../config/home-dir.js';
import { logThroughStderrStream } from '../core/log.js';
import { buildId, FrameReader, isPrivateDir, MAX_FRAME_BYTES, standbyDir, writeFrame, type FrameType, type StandbyRequest } from './standby-wire.js';

/** How long a client that connected has to send its request. */
const REQUEST_TIMEOUT_MS = 5000;

/** What the keeper and its standby say over the IPC channel of `child_process.fork`-style spawning. */
export type StandbyNote =
  | { type: 'ready' }
  | { type: 'claimed' }
  /** It cannot be a standby at all (no build id, no private directory): the keeper starts no other. */
  | { type: 'unable'; reason: string };

/**
 * A standby asp process (`asp pool standby`, started by a pool's keeper: src/cli/standby-keeper.ts): asp's run
 * modules loaded and waiting, for the first `asp run` of this user to hand its run over (standby-client.ts). It
 * serves one run, as that client would have run it (its arguments, directory, environment, umask; its output sent
 * back; its Ctrl-C passed on), and ends with it; the keeper starts the next. Until it is claimed it ends when its
 * keeper does (the IPC channel closes) or says retire. It holds no sandbox and no workspace until its run makes them,
 * and then they are its run's, reaped as any run's if it dies.
 */
export async function runStandby(): Promise<number> {
  if (!process.send) {
    process.stderr.write('asp: error: asp pool standby is started by a pool keeper, not by hand — asp pool up starts one\n');
    return 2;
  }
  const entry = process.argv[1];
  const build = buildId(entry);
  if (!build || !entry) return unable('this asp has no build id (it runs from the compiled tree)');
  // What a run loads, loaded now: this is what the client does not wait for.
  const [{ runCli }] = await Promise.all([
    import('./cli-program.js'),
    import('./run-command.js'),
    import('./run-action.js'),
    import('../supervisor/phases/post-session.js'),
    import('../delivery/deliver-task.js'),
    import('../reaper/sweep.js'),
  ]);
  const dir = standbyDir(aspHome(process.env));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!isPrivateDir(dir)) return unable(`${dir} is not a directory of this user's only`);
  const socketPath = path.join(dir, `${process.pid}.sock`);
  const connection = await firstClient(socketPath);
  if (!connection) return 0;
  // From here the keeper starts the next standby; this one is its client's run's, and ends with it.
  process.send({ type: 'claimed' } satisfies StandbyNote);
  process.disconnect();
  const request = await readRequest(connection);
  if (!request) {
    connection.destroy();
    return 0;
  }
  const why = mismatch(request, build) ?? enter(request.cwd);
  if (why) {
    writeFrame(connection, 'D', why);
    connection.end();
    return 0;
  }
  takeOver(request, connection, entry);
  writeFrame(connection, 'A');
  await runCli([process.execPath, entry, ...request.args]);
  return process.exitCode === undefined ? 0 : Number(process.exitCode);
}

/** Listens until the first client connects (then stops listening), or the keeper is gone or says retire (undefined). */
function firstClient(socketPath: string): Promise<net.Socket | undefined> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ pauseOnConnect: true });
    const retire = () => {
      server.close();
      removeSocket(socketPath);
      if (process.connected) process.disconnect();
      resolve(undefined);
    };
    server.once('connection', (socket) => {
      server.close();
      removeSocket(socketPath);
      process.off('disconnect', retire);
      process.off('message', onMessage);
      resolve(socket);
    });
    const onMessage = (message: unknown) => {
      if (typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'retire') retire();
    };
    process.on('disconnect', retire);
    process.on('message', onMessage);
    server.once('error', reject);
    removeSocket(socketPath);
    // Only this user can connect: the directory is its own, and the socket is made under a umask of 077.
    const umask = process.umask(0o077);
    server.listen(socketPath, () => {
      process.umask(umask);
      process.send?.({ type: 'ready' } satisfies StandbyNote);
    });
  });
}

function removeSocket(socketPath: string): void {
  try {
    unlinkSync(socketPath);
  } catch {
    // None yet, or gone.
  }
}

function readRequest(socket: net.Socket): Promise<StandbyRequest | undefined> {
  return new Promise((resolve) => {
    const done = (request: StandbyRequest | undefined) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      resolve(request);
    };
    const timer = setTimeout(() => done(undefined), REQUEST_TIMEOUT_MS);
    const reader = new FrameReader((type: FrameType, payload: Buffer) => {
      if (type !== 'R') return done(undefined);
      try {
        done(requestOf(JSON.parse(payload.toString('utf8'))));
      } catch {
        done(undefined);
      }
    });
    const onData = (chunk: Buffer) => {
      if (!reader.push(chunk)) done(undefined);
    };
    socket.on('data', onData);
    socket.once('close', () => done(undefined));
    socket.resume();
  });
}

/** The request's shape, checked (it comes from a process of this user, but of any version of asp). */
const requestShape = z.object({
  version: z.literal(1),
  args: z.array(z.string()),
  cwd: z.string(),
  env: z.record(z.string(), z.string()),
  umask: z.number().int().min(0).max(0o777),
  build: z.string(),
  execPath: z.string(),
  execArgv: z.array(z.string()),
  nodeVersion: z.string(),
  tty: z.object({ stdin: z.boolean(), stdout: z.boolean(), stderr: z.boolean() }),
  columns: z.object({ stdout: z.number().int().positive().optional(), stderr: z.number().int().positive().optional() }),
});

function requestOf(value: unknown): StandbyRequest | undefined {
  const parsed = requestShape.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** Why this standby cannot be the client's asp: another build, another node, other node flags, a command not `run`. */
function mismatch(request: StandbyRequest, build: string): string | undefined {
  if (request.args[0] !== 'run') return 'a standby runs asp run only';
  if (request.build !== build) return 'another build of asp';
  if (request.execPath !== process.execPath || request.nodeVersion !== process.version) return 'another node';
  if (JSON.stringify(request.execArgv) !== JSON.stringify(process.execArgv)) return 'other node flags';
  return undefined;
}

/** Goes to the client's directory; why it cannot, when it cannot (the run then stays the client's own). */
function enter(cwd: string): string | undefined {
  try {
    process.chdir(cwd);
    return undefined;
  } catch {
    return `its directory ${cwd} cannot be entered`;
  }
}

/** Says why this process cannot be a standby, to its log and to its keeper (which then starts no other), then ends. */
async function unable(reason: string): Promise<number> {
  process.stderr.write(`asp: standby: ${reason}: no standby\n`);
  // Sent before the process ends (a message still queued at exit is lost).
  await new Promise<void>((resolve) => (process.send ? process.send({ type: 'unable', reason } satisfies StandbyNote, () => resolve()) : resolve()));
  return 0;
}

/**
 * This process becomes its client's `asp run`: its environment (all of it, nothing of the keeper's left), umask and
 * arguments; its stdout and stderr go to the client (blocking, as a terminal's or a pipe's writes are, so that
 * nothing written before an exit is lost); the client's signals come here as its own; the HITL gate asks at the
 * client's terminal. A client that goes away is an interrupt: the run stops and cleans up, as after Ctrl-C.
 */
function takeOver(request: StandbyRequest, connection: net.Socket, entry: string): void {
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, request.env);
  process.umask(request.umask);
  process.argv = [process.execPath, entry, ...request.args];
  // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- Node's Pipe handle: setBlocking is on every libuv stream handle
  (connection as unknown as { _handle?: { setBlocking?: (blocking: boolean) => number } })._handle?.setBlocking?.(true);
  let gone = false;
  const send = (type: 'O' | 'E') =>
    function write(chunk: string | Uint8Array, encoding?: BufferEncoding | ((error?: Error | null) => void), callback?: (error?: Error | null) => void): boolean {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8') : Buffer.from(chunk);
      for (let offset = 0; !gone && offset < bytes.length; offset += MAX_FRAME_BYTES) writeFrame(connection, type, bytes.subarray(offset, offset + MAX_FRAME_BYTES));
      const done = typeof encoding === 'function' ? encoding : callback;
      done?.(null);
      return true;
    };
  process.stdout.write = send('O') as typeof process.stdout.write;
  process.stderr.write = send('E') as typeof process.stderr.write;
  for (const [stream, isTTY, columns] of [
    [process.stdout, request.tty.stdout, request.columns.stdout],
    [process.stderr, request.tty.stderr, request.columns.stderr],
    [process.stdin, request.tty.stdin, undefined],
  ] as const) {
    Object.defineProperty(stream, 'isTTY', { value: isTTY || undefined, configurable: true, writable: true });
    if (columns !== undefined) Object.defineProperty(stream, 'columns', { value: columns, configurable: true, writable: true });
  }
  logThroughStderrStream();
  let pendingAnswer: ((decision: string) => void) | undefined;
  // The gate asks at the client's terminal when it has one (stdin and stderr), else nobody is asked, as there.
  setStandbyAsk(
    request.tty.stdin && request.tty.stderr
      ? async (summary) => {
          writeFrame(connection, 'Q', JSON.stringify(summary));
          const decision = await new Promise<string>((resolve) => (pendingAnswer = resolve));
          return decision === 'approve' || decision === 'deny' ? decision : 'defer';
        }
      : undefined,
  );
  const reader = new FrameReader((type: FrameType, payload: Buffer) => {
    const text = payload.toString('utf8');
    if (type === 'S' && (text === 'SIGINT' || text === 'SIGTERM')) process.kill(process.pid, text);
    else if (type === 'N' && pendingAnswer) {
      const resolve = pendingAnswer;
      pendingAnswer = undefined;
      resolve(text);
    }
  });
  connection.on('data', (chunk: Buffer) => {
    if (!reader.push(chunk)) connection.destroy();
  });
  const onGone = () => {
    if (gone) return;
    gone = true;
    pendingAnswer?.('defer');
    // Nobody reads the output any more; the run stops as at Ctrl-C, and cleans up.
    if (!exiting) process.kill(process.pid, 'SIGTERM');
  };
  connection.on('close', onGone);
  connection.on('error', onGone);
  let exiting = false;
  process.on('exit', (code) => {
    exiting = true;
    if (!gone) writeFrame(connection, 'X', String(code));
  });
  connection.resume();
  // The connection does not keep the run alive: the process ends when its run does, as the client's would have.
  connection.unref();
}
