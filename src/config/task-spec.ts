import { z } from 'zod';
import { BACKENDS } from './settings.js';
import { AspError } from '../core/asp-error.js';
import { CREDENTIALS_HINT, hasCredentials } from './repo-url.js';
import { parseDuration, parseSize } from './units.js';
import { formatAllowEntry, parseAllowEntry } from './allowlist.js';

/** Langfuse's observation types a step's span may be (the pipeline's `"type"`), beyond span/generation/event. */
export const OBSERVATION_KINDS = ['span', 'agent', 'tool', 'chain', 'evaluator', 'retriever', 'guardrail', 'embedding'] as const;
export type ObservationKind = (typeof OBSERVATION_KINDS)[number];

/** Task ids name host dirs, volumes and labels: keep them to a safe alphabet. */
export const TASK_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Step names become `.asp/<step>.json`; a few names are the runner's own files. */
export const STEP_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** A branch asp pushes to: plain characters, never an option (`-…`), never a range (`..`). */
export const BRANCH_NAME_PATTERN = /^(?!-)(?!.*\.\.)(?!.*\/\/)[A-Za-z0-9._/-]{1,200}(?<![./])$/;
export const BRANCH_NAME_RULE = 'must be a plain git branch name (letters, digits, ".", "_", "-", "/")';
const RESERVED_STEP_NAMES = new Set(['task', 'trace', 'events', 'usage', 'report', 'result', 'owner', 'delivery']);

const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = typeof value === 'number' ? value * 1000 : parseDuration(value);
  if (ms === undefined || !(ms > 0)) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration: use e.g. 90s, 10m, 1h` });
    return z.NEVER;
  }
  return ms;
});

const size = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const bytes = typeof value === 'number' ? value : parseSize(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size: use e.g. 512m, 2g` });
    return z.NEVER;
  }
  return bytes;
});

export const REPORT_GLOBS_MAX = 16;
/**
 * A report glob: plain path segments with `*` and `?` inside one segment, under the repository. Nothing that climbs
 * out (`..`), starts at the root, or needs a glob engine (`**`, `[...]`, `{a,b}`): the runner matches it itself.
 */
const reportGlob = z.string().refine(
  // Checked by hand, length first: the pipeline may be the repository's own, so no regex runs on a long string.
  (glob) =>
    glob.length <= 200 &&
    !glob.includes('**') &&
    glob.split('/').every((segment) => segment.length > 0 && segment !== '.' && segment !== '..' && /^[A-Za-z0-9._*?-]+$/.test(segment)) &&
    glob.split('/').length <= 8,
  { message: 'must be a path under the repository (letters, digits, ".", "_", "-", with * or ? inside a segment; no "..", no leading /, no **)' },
);

export const stepSchema = z.strictObject({
  name: z
    .string()
    .regex(STEP_NAME_PATTERN, 'must be letters, digits, ".", "_" or "-" (at most 63), starting with a letter or digit')
    .refine((name) => !RESERVED_STEP_NAMES.has(name), { message: "is reserved for asp's own files; pick another name" }),
  // A command line for the image's shell, or an argv list run as it is, without a shell (for images that have none).
  run: z.union(
    [
      z.string().min(1, 'must be a shell command'),
      z
        .array(z.string().max(64 * 1024))
        .min(1, 'must name a program')
        .max(256),
    ],
    {
      error: 'must be a shell command (a string) or a program with its arguments (a list of strings)',
    },
  ),
  timeout: duration.optional(),
  /** Langfuse's observation type of the step's span (default: `agent` for `*_agent` steps, `evaluator` for review agents, else `tool`). */
  type: z.enum(OBSERVATION_KINDS).optional(),
  /** The file the step writes under `.asp/` that is its result: its span's output in the trace (an agent's artifact). */
  artifact: z
    .string()
    .regex(/^(?!.*\.\.)[A-Za-z0-9._-]{1,100}(\/[A-Za-z0-9._-]{1,100}){0,3}$/, 'must be a file name under .asp/ (letters, digits, ".", "_", "-", up to 4 levels, no "..")')
    .optional(),
  /**
   * The test reports (JUnit XML, TAP) the step writes in the repository, as globs relative to it
   * (`test-results/*.xml`): the runner copies what they match into `.asp/reports/<step>/` after the step.
   */
  reports: z.array(reportGlob).min(1).max(REPORT_GLOBS_MAX).optional(),
});

/** A list of steps with unique names. */
const stepList = z
  .array(stepSchema)
  .max(100)
  .superRefine((steps, ctx) => {
    const seen = new Set<string>();
    steps.forEach((step, index) => {
      if (seen.has(step.name)) ctx.addIssue({ code: 'custom', path: [index, 'name'], message: `"${step.name}" is used twice: step names must be unique` });
      seen.add(step.name);
    });
  });

export const pipelineSchema = z.strictObject({
  $schema: z.string().optional(),
  steps: stepList.min(1, 'needs at least one step'),
  /** The clean-room check: run in a fresh sandbox on the base commit plus the steps' change; it decides the verdict. */
  check: stepList.min(1, 'needs at least one step when given').optional(),
});

/** Longest task text asp takes, in UTF-8 bytes. */
export const MAX_TASK_BYTES = 1024 * 1024;

/** Static bounds of the limits; see limits-fit.ts for the check against the daemon's machine. */
export const MAX_CPUS = 256;
export const MAX_TIMEOUT_MS = 7 * 86_400_000;

export const limitsSchema = z.strictObject({
  // The task's own backstop and its objects' expiry (what the reaper trusts once the supervisor is gone) count from
  // it: a deadline of months would keep a runaway task and its volume for months.
  timeout: duration.refine((ms) => ms <= MAX_TIMEOUT_MS, { message: 'must be at most 7d' }).default(30 * 60_000),
  memory: size.refine((bytes) => bytes >= 6 * 1024 ** 2, { message: "must be at least 6m (Docker's minimum)" }).default(2 * 1024 ** 3),
  // Docker's floor is 0.01 CPU (below it the container fails to start, after everything is made). Above, a static
  // ceiling catches typos in task lists before any work; the daemon's own core count is checked when a task starts.
  cpus: z.number().positive('must be more than 0').min(0.01, 'must be at least 0.01').max(MAX_CPUS, `must be at most ${MAX_CPUS}`).default(1),
  pids: z.number().int().min(16, 'must be at least 16').max(1_000_000).default(512),
  tmpfs: size.default(512 * 1024 ** 2),
  /** Size limit of the workspace volume (the repository and .asp/). */
  disk: size.refine((bytes) => bytes >= 1024 ** 2, { message: 'must be at least 1m' }).default(4 * 1024 ** 3),
});

/** One `--allow-host` entry: NAME[:PORT], `*.name` for one label, an IP address; kept in its normal form (`name:443`). */
const allowEntry = z.string().transform((text, ctx) => {
  const entry = parseAllowEntry(text);
  if (typeof entry === 'string') {
    ctx.addIssue({ code: 'custom', message: entry });
    return z.NEVER;
  }
  return formatAllowEntry(entry);
});

export const DEFAULT_EGRESS_BYTES = 2 * 1024 ** 3;
export const DEFAULT_EGRESS_CONNECTIONS = 32;
export const DEFAULT_EGRESS_TIMEOUT_MS = 10 * 60_000;

/**
 * Egress through the host (`--allow-host`): the hosts steps may reach over the runner's loopback proxy, and the caps
 * on it. An empty list is no egress at all: no proxy, no variables, exactly as without the field.
 */
export const networkSchema = z.strictObject({
  allow: z.array(allowEntry).max(256, 'takes at most 256 hosts').default([]),
  /** Bytes both ways, all connections together. */
  maxBytes: size.default(DEFAULT_EGRESS_BYTES),
  /** Connections open at once. */
  maxConnections: z.number().int('must be a whole number').min(1, 'must be at least 1').max(1024, 'must be at most 1024').default(DEFAULT_EGRESS_CONNECTIONS),
  /** How long one connection may stay open. */
  connectionTimeout: duration.default(DEFAULT_EGRESS_TIMEOUT_MS),
});

export type Step = z.infer<typeof stepSchema>;
export type Limits = z.infer<typeof limitsSchema>;

/** One task as `asp run` flags and `asp batch` lines describe it. */
export const taskSpecSchema = z.strictObject({
  id: z.string().regex(TASK_ID_PATTERN, 'must match [a-z0-9][a-z0-9._-]{0,62}').optional(),
  repo: z
    .string()
    .min(1, 'is required: a local path or a git URL')
    .refine((repo) => !hasCredentials(repo), { message: `contains credentials: ${CREDENTIALS_HINT}` }),
  ref: z.string().min(1).max(255).optional(),
  /** More repositories for a multi-repo task: each cloned to /workspace/repos/<name>, bundled and pushed on its own. */
  repos: z
    .array(
      z.strictObject({
        name: z.string().regex(TASK_ID_PATTERN, 'must match [a-z0-9][a-z0-9._-]{0,62}'),
        repo: z
          .string()
          .min(1, 'is required: a local path or a git URL')
          .refine((repo) => !hasCredentials(repo), { message: `contains credentials: ${CREDENTIALS_HINT}` }),
        ref: z.string().min(1).max(255).optional(),
      }),
    )
    .max(10, 'takes at most 10 repositories')
    .superRefine((repos, ctx) => {
      const seen = new Set<string>();
      repos.forEach((entry, index) => {
        if (seen.has(entry.name)) ctx.addIssue({ code: 'custom', path: [index, 'name'], message: `"${entry.name}" is used twice: give each repository its own name` });
        seen.add(entry.name);
      });
    })
    .optional(),
  // The task reaches steps whole as a file ($ASP_TASK_FILE) and in $ASP_TASK cut to fit the kernel's limit on one
  // variable; past this asp's own limit it is bad input, before anything is made.
  task: z
    .string()
    .refine((text) => Buffer.byteLength(text) <= MAX_TASK_BYTES, { message: `is longer than ${MAX_TASK_BYTES} bytes (1 MiB): put the details in a file of the repository and point the task at it` })
    .default(''),
  steps: pipelineSchema.shape.steps.optional(),
  /** Clean-room check steps (`--check`); without them, the pipeline file's `check`, if it has one. */
  check: stepList.optional(),
  /** Files only the check sees, e.g. hidden tests (`--check-dir`): a host directory, never in the agent's sandbox. */
  checkDir: z.string().min(1).optional(),
  pipeline: z.string().min(1).optional(),
  image: z.string().min(1).optional(),
  runtime: z.string().min(1).optional(),
  /** Where this task's sandbox runs (`--backend`, a batch line's "backend"); default: ASP_BACKEND, else docker. */
  backend: z.enum(BACKENDS).optional(),
  limits: limitsSchema.default(limitsSchema.parse({})),
  env: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')).default([]),
  keep: z.boolean().default(false),
  outputCap: size.default(10 * 1024 ** 2),
  /** How to clone big repositories: shallow (depth) and/or partial (filter). Either skips the mirror cache. */
  clone: z
    .strictObject({
      depth: z.number().int().positive('must be a positive whole number').max(1_000_000).optional(),
      filter: z.enum(['blob:none', 'tree:0']).optional(),
    })
    .optional(),
  /** Stop before pushing for a human decision (the seed's HITL gate). */
  hitl: z.boolean().default(false),
  /** Push the changes' branch to the repository (or a fork). */
  push: z.boolean().default(false),
  /** Open a pull request (implies push). */
  pr: z.boolean().default(false),
  draft: z.boolean().default(false),
  /** The task's model budget, enforced by the host's gateway (`--max-cost` USD, `--max-tokens`). */
  budget: z
    .strictObject({
      maxCostUsd: z.number().positive('must be more than 0').optional(),
      maxTokens: z.number().int('must be a whole number').positive('must be more than 0').optional(),
    })
    .optional(),
  /** The branch the sandbox commits its changes on; default asp/<task-id>. */
  branch: z.string().regex(BRANCH_NAME_PATTERN, BRANCH_NAME_RULE).optional(),
  /** Hosts the steps may reach through the host (`--allow-host`), and the caps on it. */
  network: networkSchema.optional(),
});

export type TaskSpecInput = z.input<typeof taskSpecSchema>;
export type TaskSpec = z.infer<typeof taskSpecSchema>;

/** Validates a task spec; the error names the field and says what is wanted. */
export function parseTaskSpec(input: unknown, origin = 'task'): TaskSpec {
  return parseWith(taskSpecSchema, input, origin);
}

export function parseWith<T extends z.ZodType>(schema: T, input: unknown, origin: string): z.infer<T> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new AspError('BAD_INPUT', `${origin}: ${describeIssue(parsed.error)}`);
}

/**
 * JSON text asp reads back (its own state, an artifact a sandbox wrote), checked with `schema`. Never throws: the
 * value, or what is wrong with it, the JSON itself or, in one line, its first few problems against the schema.
 */
export function parseJsonWith<T extends z.ZodType>(text: string, schema: T): { value: z.infer<T> } | { notJson: true } | { issues: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { notJson: true };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { value: parsed.data } : { issues: describeIssue(parsed.error) };
}

/** The first few problems, each as "field what-is-wrong", so one line says everything to fix. */
export function describeIssue(error: z.ZodError): string {
  const described = error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length ? issue.path.map(String).join('.') : '(top level)';
    if (issue.code === 'unrecognized_keys') return `${where}: unknown field(s) ${issue.keys.map((key) => `"${key}"`).join(', ')}`;
    if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) return `${where} is required`;
    return `${where} ${issue.message}`;
  });
  return described.join('; ') || 'invalid';
}
