import { lstatSync, readdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { aspHome } from '../config/home-dir.js';
import { buildId, FrameReader, isPrivateDir, standbyDir, writeFrame, type FrameType, type StandbyRequest } from './standby-wire.js';

/** How long a standby has to accept or decline a request before the run goes on without it. */
const ACCEPT_TIMEOUT_MS = 3000;
/** Exit codes of DESIGN.md (asp-error.ts, not loaded here: this module is all `asp run` loads when a standby serves it). */
const EXIT_INFRASTRUCTURE = 3;
const EXIT_INTERRUPTED = 130;

type Attempt = { kind: 'served'; exitCode: number } | { kind: 'declined' } | { kind: 'gone' };

/**
 * `asp run` handed to a standby asp process of a warm pool (standby-server.ts), when one is up under this ASP_HOME:
 * it has asp's modules loaded already, and runs the task as this process would, with this process's arguments,
 * directory and environment, its output coming back here. Resolves the exit code when one served the run, undefined
 * when none could (none up, all taken, another build of asp): the caller then runs the task itself.
 */
export async function runOnStandby(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  if (env.ASP_STANDBY === '0') return undefined;
  const dir = standbyDir(aspHome(env));
  // Only a directory of this user's own: a socket another user planted would be handed this environment.
  if (!isPrivateDir(dir)) return undefined;
  const build = buildId(process.argv[1]);
  if (!build) return undefined;
  let sockets: string[];
  try {
    sockets = readdirSync(dir).filter((name) => name.endsWith('.sock'));
  } catch {
    return undefined;
  }
  if (!sockets.length) return undefined;
  const request: StandbyRequest = {
    version: 1,
    args,
    cwd: process.cwd(),
    env: Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined)),
    umask: process.umask(),
    build,
    execPath: process.execPath,
    execArgv: process.execArgv,
    nodeVersion: process.version,
    tty: { stdin: Boolean(process.stdin.isTTY), stdout: Boolean(process.stdout.isTTY), stderr: Boolean(process.stderr.isTTY) },
    columns: { stdout: process.stdout.columns, stderr: process.stderr.columns },
  };
  // Several runs at once start at different standbys, so fewer of them meet one just taken.
  for (const name of sockets.sort(() => Math.random() - 0.5)) {
    const socketPath = path.join(dir, name);
    if (!ownSocket(socketPath)) continue;
    const attempt = await tryStandby(socketPath, request);
    if (attempt.kind === 'served') return attempt.exitCode;
    if (attempt.kind === 'gone') removeStale(socketPath);
  }
  return undefined;
}

function ownSocket(socketPath: string): boolean {
  try {
    const stat = lstatSync(socketPath);
    return stat.isSocket() && (process.getuid === undefined || stat.uid === process.getuid());
  } catch {
    return false;
  }
}

/** A socket nobody listens on: its standby died without removing it. */
function removeStale(socketPath: string): void {
  try {
    unlinkSync(socketPath);
  } catch {
    // Gone already.
  }
}

function tryStandby(socketPath: string, request: StandbyRequest): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    let accepted = false;
    let signalled = false;
    let exitCode: number | undefined;
    let settled = false;
    const settle = (attempt: Attempt) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(attempt);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      settle({ kind: 'declined' });
    }, ACCEPT_TIMEOUT_MS);
    // Ctrl-C goes to this process (the standby is in no terminal's process group): passed on, so the run stops as
    // it would here; the standby's own interrupt handling does the rest, a second one included.
    const onSignal = (name: NodeJS.Signals) => {
      signalled = true;
      writeFrame(socket, 'S', name);
    };
    const reader = new FrameReader((type: FrameType, payload: Buffer) => {
      if (type === 'A' && !accepted) {
        accepted = true;
        clearTimeout(timer);
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      } else if (type === 'D' && !accepted) {
        socket.destroy();
        settle({ kind: 'declined' });
      } else if (type === 'O' && accepted) process.stdout.write(payload);
      else if (type === 'E' && accepted) process.stderr.write(payload);
      else if (type === 'Q' && accepted) void answer(socket, payload);
      else if (type === 'X' && accepted) exitCode = Number(payload.toString('utf8'));
    });
    socket.on('connect', () => writeFrame(socket, 'R', JSON.stringify(request)));
    socket.on('data', (chunk: Buffer) => {
      if (!reader.push(chunk)) socket.destroy();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (!accepted) settle({ kind: error.code === 'ECONNREFUSED' ? 'gone' : 'declined' });
    });
    socket.on('close', () => {
      if (!accepted) return settle({ kind: 'declined' });
      if (exitCode !== undefined && Number.isInteger(exitCode)) return settle({ kind: 'served', exitCode });
      // Killed by the signal it was passed (before its handlers were up), as this process would have been.
      if (signalled) return settle({ kind: 'served', exitCode: EXIT_INTERRUPTED });
      process.stderr.write(`asp: error: the standby asp process that ran this task ended without its exit code — its pool's log (asp pool status) may say why\n`);
      settle({ kind: 'served', exitCode: EXIT_INFRASTRUCTURE });
    });
  });
}

/** The HITL gate's question, asked at this terminal (the standby has none); the decision goes back as N. */
async function answer(socket: net.Socket, payload: Buffer): Promise<void> {
  const { askAtTerminal } = await import('./hitl-prompt.js');
  // eslint-disable-next-line @typescript-eslint/no-unsafe-type-assertion -- the standby's own GateSummary, sent as JSON by standby-server.ts
  const summary = JSON.parse(payload.toString('utf8')) as Parameters<typeof askAtTerminal>[0];
  writeFrame(socket, 'N', await askAtTerminal(summary));
}
