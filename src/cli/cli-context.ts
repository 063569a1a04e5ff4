import '../core/zod-setup.js';
import { AspError, errorMessage, EXIT, exitCodeFor } from '../core/asp-error.js';
import { backendName, namespaceName, readSettings, type BackendName, type Settings } from '../config/settings.js';
import { LazyKubernetesBackend } from '../k8s/lazy-backend.js';
import { imageContext } from '../docker/sandbox-image.js';
import { EngineAdapter } from '../docker/engine-adapter.js';
import type { DockerPort } from '../docker/port.js';
import { DockerBackend } from '../docker/docker-backend.js';
import type { SandboxBackend } from '../backend/sandbox-backend.js';
import { printable, printableLines } from '../core/printable.js';
import { humanLog, jsonLog, type Log } from '../core/log.js';

/**
 * What every command gets: settings, a log, the sandbox backend (and, for the commands that look at the engine itself:
 * doctor, image, the Docker port under it), and how to print its result. Built per command, never at import.
 */
export interface CliContext {
  settings: Settings;
  log: Log;
  docker: DockerPort;
  /** The backend of `--backend` (else ASP_BACKEND, else docker). */
  backend: SandboxBackend;
  /** Each backend by name, made on first use (a batch line may name its own). */
  backendFor: (name: BackendName) => SandboxBackend;
  json: boolean;
  debug: boolean;
  stdout: (text: string) => void;
}

export function makeContext(options: { json?: boolean; debug?: boolean; backend?: string; namespace?: string }): CliContext {
  const read = readSettings();
  const namespace = namespaceName(options.namespace, '--namespace');
  const settings: Settings = {
    ...read,
    backend: backendName(options.backend, '--backend') ?? read.backend,
    k8s: { ...read.k8s, ...(namespace ? { namespace } : {}) },
  };
  const debug = Boolean(options.debug) || settings.debug;
  const json = Boolean(options.json);
  // Found on the first call (DOCKER_HOST, a context, the usual sockets): a command that never talks to Docker never looks.
  const docker = EngineAdapter.fromEnvironment(settings.hostEnv, { timeoutMs: settings.dockerTimeoutMs, sshCommand: settings.sshCommand });
  const log = json ? jsonLog(debug) : humanLog(debug);
  const made = new Map<BackendName, SandboxBackend>();
  const backendFor = (name: BackendName): SandboxBackend => {
    let backend = made.get(name);
    if (!backend) {
      backend = name === 'k8s' ? kubernetesBackend(settings, log) : new DockerBackend(docker);
      made.set(name, backend);
    }
    return backend;
  };
  return {
    settings,
    debug,
    json,
    log,
    docker,
    backend: backendFor(settings.backend),
    backendFor,
    // Tables, timelines and reports carry task, step and file names from sandboxes: printed escaped. JSON output
    // passes unchanged in meaning (printable keeps it valid JSON of the same value).
    stdout: (text) => process.stdout.write(printable(text)),
  };
}

/** The Kubernetes backend as the settings say: its API is found (kubeconfig) on its first call, not here. */
export function kubernetesBackend(settings: Settings, log: Log): LazyKubernetesBackend {
  return new LazyKubernetesBackend({
    env: settings.hostEnv,
    namespace: settings.k8s.namespace,
    context: settings.k8s.context,
    runnerImage: settings.k8s.image ?? imageContext().tag,
    seccompProfile: settings.k8s.seccompProfile,
    timeoutMs: settings.dockerTimeoutMs,
    startTimeoutMs: settings.k8s.startTimeoutMs,
    warn: (message) => log.warn({}, message),
  });
}

/**
 * The one place errors become exit codes and one-line messages. With --json the error is also the result
 * object on stdout, so a script always gets JSON.
 */
export function reportFailure(error: unknown, options: { json: boolean; debug: boolean }): number {
  const known = error instanceof AspError;
  const exitCode = known ? exitCodeFor(error.code) : EXIT.infrastructure;
  const message = known ? error.message : `unexpected error: ${errorMessage(error)}`;
  const hint = known ? error.hint : 'rerun with --debug and report it';
  // The message may quote a file name, a ref or a line of a file: escaped, so it cannot drive the terminal.
  process.stderr.write(`asp: error: ${printableLines(`${message}${hint ? ` — ${hint}` : ''}`)}\n`);
  if (options.debug && error instanceof Error && error.stack) process.stderr.write(`${printable(error.stack)}\n`);
  if (options.json) {
    process.stdout.write(printable(JSON.stringify({ status: 'error', exitCode, error: { code: known ? error.code : 'INTERNAL', message, ...(hint ? { hint } : {}) } })) + '\n');
  }
  return exitCode;
}
