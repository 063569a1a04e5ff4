import os from 'node:os';
import path from 'node:path';
import { AspError } from '../core/asp-error.js';
import { parseDuration } from './units.js';
import { aspHome } from './home-dir.js';

/** Everything asp reads from the environment, read in one place and passed down. */
export interface Settings {
  /** Root of the per-task host dirs: `<workspaces>/<task-id>/{repo,.asp}`. */
  workspacesRoot: string;
  /** asp's own state: the trace store and outbox. */
  home: string;
  /** How long `.asp/` of finished tasks is kept, in ms. */
  retentionMs: number;
  /** How long a call to the engine may go unanswered (ASP_DOCKER_TIMEOUT, default 30 s). */
  dockerTimeoutMs: number;
  /** The program (and its options) that carries an ssh:// daemon connection (ASP_SSH_COMMAND, default ssh). */
  sshCommand: string | undefined;
  /** Where sandboxes run (ASP_BACKEND, `--backend`): a Docker engine, or a Kubernetes cluster. */
  backend: BackendName;
  k8s: KubernetesSettings;
  langfuse: { publicKey: string; secretKey: string; baseUrl: string } | undefined;
  /** What every trace says of where and by whom it was made, Langfuse or not (a trace may be pushed later). */
  trace: TraceSettings;
  /** GitHub (or GitHub Enterprise) for --push/--pr: the token stays on the host. */
  github: { token: string | undefined; apiUrl: string; webHost: string };
  debug: boolean;
  /** Model providers for the host's model gateway: the keys stay on the host, the sandbox never sees them. */
  models: ModelSettings;
  /** The host environment, for the explicit `--env NAME` allowlist only. */
  hostEnv: Readonly<Record<string, string | undefined>>;
}

export interface TraceSettings {
  /** LANGFUSE_TRACING_ENVIRONMENT, default `default`: on every span and every score. */
  environment: string;
  /** LANGFUSE_RELEASE: the release of what the traces are of (a deploy, a model version). */
  release: string | undefined;
  /** Langfuse's user: ASP_TRACE_USER, else the CI actor (GITHUB_ACTOR, GITLAB_USER_LOGIN, ...), else the host user. */
  user: string | undefined;
}

export const BACKENDS = ['docker', 'k8s'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface KubernetesSettings {
  /** ASP_K8S_NAMESPACE (`--namespace` wins); else the kubeconfig context's namespace. */
  namespace: string | undefined;
  /** ASP_K8S_CONTEXT; else the kubeconfig's current context. */
  context: string | undefined;
  /** ASP_K8S_IMAGE: asp's sandbox image as the cluster pulls it (a registry's name for it); else its local tag. */
  image: string | undefined;
  /** ASP_K8S_SECCOMP_PROFILE: asp's seccomp profile as a Localhost profile on the nodes (path under the kubelet's seccomp dir). */
  seccompProfile: string | undefined;
  /** ASP_K8S_START_TIMEOUT: how long a pod may take to be scheduled and pull its image (default 5m). */
  startTimeoutMs: number;
}

export interface ModelSettings {
  /** `ASP_MODEL=<provider>:<model>` (openai, anthropic) or `cassette:<file>`. */
  model: string | undefined;
  openai: { apiKey: string; baseUrl: string } | undefined;
  anthropic: { apiKey: string; baseUrl: string } | undefined;
  /** `ASP_RECORD_CASSETTE=<file>`: save every reply of the real provider as a cassette for offline replay. */
  recordCassette: string | undefined;
  /** `ASP_MODEL_PRICE=<input>,<output>`: USD per million tokens, for a model the price table does not know. */
  price: { input: number; output: number } | undefined;
}

export const LANGFUSE_DEFAULT_BASE_URL = 'https://cloud.langfuse.com';

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const retention = env.ASP_RETENTION ?? '7d';
  const retentionMs = parseDuration(/^\d+$/.test(retention) ? `${retention}d` : retention);
  if (retentionMs === undefined) {
    throw new AspError('BAD_INPUT', `ASP_RETENTION="${retention}" is not a duration`, 'use a number of days (7) or a duration such as 36h');
  }
  const publicKey = env.LANGFUSE_PUBLIC_KEY?.trim();
  const secretKey = env.LANGFUSE_SECRET_KEY?.trim();
  return {
    workspacesRoot: path.resolve(env.ASP_WORKSPACES || '/tmp/asp-workspaces'),
    home: aspHome(env),
    retentionMs,
    dockerTimeoutMs: dockerTimeout(env),
    sshCommand: env.ASP_SSH_COMMAND?.trim() || undefined,
    backend: backendName(env.ASP_BACKEND, 'ASP_BACKEND') ?? 'docker',
    k8s: kubernetesSettings(env),
    langfuse: publicKey && secretKey ? { publicKey, secretKey, baseUrl: (env.LANGFUSE_BASE_URL || env.LANGFUSE_HOST || LANGFUSE_DEFAULT_BASE_URL).replace(/\/+$/, '') } : undefined,
    github: githubSettings(env),
    trace: traceSettings(env),
    debug: env.ASP_DEBUG === '1',
    models: modelSettings(env),
    hostEnv: env,
  };
}

/** Langfuse's rule for an environment: lower case letters, digits, "-" and "_", not starting with "langfuse". */
const ENVIRONMENT_NAME = /^(?!langfuse)[a-z0-9_-]{1,40}$/;

function traceSettings(env: NodeJS.ProcessEnv): TraceSettings {
  const environment = env.LANGFUSE_TRACING_ENVIRONMENT?.trim() || 'default';
  if (!ENVIRONMENT_NAME.test(environment)) {
    throw new AspError(
      'BAD_INPUT',
      `LANGFUSE_TRACING_ENVIRONMENT="${environment}" is not an environment name Langfuse takes`,
      'use at most 40 lower-case letters, digits, "-" and "_", not starting with "langfuse" (e.g. ci, staging)',
    );
  }
  return { environment, release: env.LANGFUSE_RELEASE?.trim() || undefined, user: traceUser(env) };
}

/** A Langfuse session or user id from a flag (`origin`): 1 to 200 printable characters; undefined when not given. */
export function traceName(origin: string, text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const name = text.trim();
  if (!name || name.length > 200 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new AspError(
      'BAD_INPUT',
      `${origin} ${JSON.stringify(name.slice(0, 60))} is not a name Langfuse can group by`,
      `give ${origin} 1 to 200 printable characters, e.g. ${origin} nightly-2026-12-01`,
    );
  }
  return name;
}

/** Who a trace is by: the user asp is told, the person a CI job runs for, or whoever runs it here. */
function traceUser(env: NodeJS.ProcessEnv): string | undefined {
  for (const name of ['ASP_TRACE_USER', 'GITHUB_ACTOR', 'GITLAB_USER_LOGIN', 'CIRCLE_USERNAME', 'BUILDKITE_BUILD_CREATOR', 'BITBUCKET_STEP_TRIGGERER_UUID']) {
    const value = env[name]?.trim();
    if (value) return value.slice(0, 200);
  }
  try {
    return os.userInfo().username || undefined;
  } catch {
    // A uid with no passwd entry (a container run as an arbitrary user): no user rather than no run.
    return env.USER?.trim() || undefined;
  }
}

function dockerTimeout(env: NodeJS.ProcessEnv): number {
  const text = env.ASP_DOCKER_TIMEOUT?.trim();
  if (!text) return 30_000;
  const ms = parseDuration(/^\d+$/.test(text) ? `${text}s` : text);
  if (ms === undefined || ms < 1000) {
    throw new AspError('BAD_INPUT', `ASP_DOCKER_TIMEOUT="${text}" is not a duration of a second or more`, 'use seconds (30) or a duration such as 2m');
  }
  return ms;
}

/** A backend's name from a flag or a variable (`origin` says which); undefined when unset. */
export function backendName(text: string | undefined, origin: string): BackendName | undefined {
  const name = text?.trim();
  if (!name) return undefined;
  const known = BACKENDS.find((backend) => backend === name);
  if (known) return known;
  throw new AspError('BAD_INPUT', `${origin} "${name}" is not a backend`, `use ${BACKENDS.join(' or ')}`);
}

/** A Kubernetes namespace name (RFC 1123 label), as `--namespace` or ASP_K8S_NAMESPACE gives it. */
export function namespaceName(text: string | undefined, origin: string): string | undefined {
  const name = text?.trim();
  if (!name) return undefined;
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) {
    throw new AspError('BAD_INPUT', `${origin} "${name}" is not a namespace name`, 'use at most 63 lower-case letters, digits and "-", starting and ending with a letter or digit');
  }
  return name;
}

function kubernetesSettings(env: NodeJS.ProcessEnv): KubernetesSettings {
  const start = env.ASP_K8S_START_TIMEOUT?.trim();
  const startTimeoutMs = start ? parseDuration(/^\d+$/.test(start) ? `${start}s` : start) : 5 * 60_000;
  if (startTimeoutMs === undefined || startTimeoutMs < 1000) {
    throw new AspError('BAD_INPUT', `ASP_K8S_START_TIMEOUT="${start}" is not a duration of a second or more`, 'use seconds (300) or a duration such as 5m');
  }
  const profile = env.ASP_K8S_SECCOMP_PROFILE?.trim() || undefined;
  if (profile && (profile.startsWith('/') || profile.split('/').includes('..'))) {
    throw new AspError('BAD_INPUT', `ASP_K8S_SECCOMP_PROFILE="${profile}" is not a path relative to the kubelet's seccomp dir`, 'give it as the nodes know it, e.g. profiles/asp.json');
  }
  return {
    namespace: namespaceName(env.ASP_K8S_NAMESPACE, 'ASP_K8S_NAMESPACE'),
    context: env.ASP_K8S_CONTEXT?.trim() || undefined,
    image: env.ASP_K8S_IMAGE?.trim() || undefined,
    seccompProfile: profile,
    startTimeoutMs,
  };
}

function githubSettings(env: NodeJS.ProcessEnv): Settings['github'] {
  const apiUrl = (env.GITHUB_API_URL || 'https://api.github.com').replace(/\/+$/, '');
  let webHost = 'github.com';
  try {
    const host = new URL(apiUrl).host;
    // GitHub Enterprise serves the API under https://<host>/api/v3 and git from the same host.
    webHost = host === 'api.github.com' ? 'github.com' : host;
  } catch {
    throw new AspError('BAD_INPUT', `GITHUB_API_URL="${apiUrl}" is not a URL`, 'set it to e.g. https://api.github.com or https://ghe.example.com/api/v3');
  }
  return { token: env.GITHUB_TOKEN?.trim() || env.GH_TOKEN?.trim() || undefined, apiUrl, webHost };
}

function modelSettings(env: NodeJS.ProcessEnv): ModelSettings {
  const openaiKey = env.OPENAI_API_KEY?.trim();
  const anthropicKey = env.ANTHROPIC_API_KEY?.trim();
  return {
    model: env.ASP_MODEL?.trim() || undefined,
    openai: openaiKey ? { apiKey: openaiKey, baseUrl: (env.OPENAI_BASE_URL?.trim() || 'https://api.openai.com/v1').replace(/\/+$/, '') } : undefined,
    anthropic: anthropicKey ? { apiKey: anthropicKey, baseUrl: (env.ANTHROPIC_BASE_URL?.trim() || 'https://api.anthropic.com').replace(/\/+$/, '') } : undefined,
    recordCassette: env.ASP_RECORD_CASSETTE?.trim() || undefined,
    price: modelPrice(env.ASP_MODEL_PRICE),
  };
}

function modelPrice(text: string | undefined): ModelSettings['price'] {
  if (!text?.trim()) return undefined;
  const [input, output] = text.split(',').map((part) => Number(part.trim()));
  if (input === undefined || output === undefined || !Number.isFinite(input) || !Number.isFinite(output) || input < 0 || output < 0) {
    throw new AspError('BAD_INPUT', `ASP_MODEL_PRICE="${text}" is not <input>,<output>`, 'give USD per million tokens, e.g. ASP_MODEL_PRICE=0.15,0.6');
  }
  return { input, output };
}

/** The forge token as host-side git and the forge use it: the value, and the one host it may be sent to. */
export function githubToken(settings: Pick<Settings, 'github'>): { value: string; host: string } | undefined {
  return settings.github.token ? { value: settings.github.token, host: settings.github.webHost } : undefined;
}
