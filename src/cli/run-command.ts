import type { Command } from 'commander';

export interface RunFlags {
  repo: string;
  task?: string;
  ref?: string;
  id?: string;
  step: string[];
  check: string[];
  checkDir?: string;
  taskFile?: string;
  pipeline?: string;
  image?: string;
  runtime?: string;
  timeout?: string;
  memory?: string;
  cpus?: string;
  pids?: string;
  disk?: string;
  branch?: string;
  depth?: string;
  filter?: string;
  env: string[];
  allowHost: string[];
  egressBytes?: string;
  egressConnections?: string;
  egressTimeout?: string;
  outputCap?: string;
  keep?: boolean;
  hitl?: boolean;
  approve?: boolean;
  deny?: boolean;
  push?: boolean;
  pushTo?: string;
  pr?: boolean;
  draft?: boolean;
  trace?: string;
  maxCost?: string;
  maxTokens?: string;
  backend?: string;
  namespace?: string;
  session?: string;
  user?: string;
  dryRun?: boolean;
  json?: boolean;
  debug?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run one task in a fresh, locked-down container and trace it')
    .requiredOption('--repo <url|path>', 'git URL or local path of the repository')
    .option('--task <text>', 'the instruction, given to steps as ASP_TASK (and whole in the file $ASP_TASK_FILE)')
    .option('--task-file <file>', 'read the instruction from a file (up to 1 MiB) instead of --task')
    .option('--ref <ref>', 'branch, tag or commit to check out (default: the remote HEAD)')
    .option('--id <id>', 'task id (default: task-<date>-<time>-<slug of --task>)')
    .option('--step <name=command>', 'a step to run (repeatable, in order)', collect, [])
    .option('--check <name=command>', "a clean-room check step (repeatable): runs in a fresh sandbox on the base commit plus the steps' change, and decides the verdict", collect, [])
    .option('--check-dir <dir>', 'files only the check sees (e.g. hidden tests), read-only at /workspace/check ($ASP_CHECK_DIR)')
    .option('--pipeline <file>', 'a pipeline JSON file ({"steps":[{"name","run","timeout"}]}), or asp for the built-in ASP agent pipeline')
    .option('--max-cost <usd>', 'model budget of the task in USD, enforced on the host (needs a model: OPENAI_API_KEY, ANTHROPIC_API_KEY or ASP_MODEL)')
    .option('--max-tokens <n>', 'model budget of the task in tokens, enforced on the host')
    .option('--image <image>', 'run in this image instead of the asp sandbox image')
    .option('--runtime <name>', 'container runtime, e.g. runsc (gVisor) where installed; on Kubernetes a RuntimeClass')
    .option('--backend <name>', 'where the sandbox runs: docker or k8s (default: ASP_BACKEND, else docker)')
    .option('--namespace <name>', "Kubernetes namespace of the pod (default: ASP_K8S_NAMESPACE, else the kubeconfig context's)")
    .option('--session <id>', 'Langfuse session of the trace, to group runs (default: none)')
    .option('--user <name>', 'Langfuse user of the trace (default: ASP_TRACE_USER, the CI actor, else the host user)')
    .option('--dry-run', 'print what would be created (the pod and its NetworkPolicy on k8s, the container on docker) and stop')
    .option('--timeout <duration>', 'deadline for the whole task', '30m')
    .option('--memory <size>', 'memory limit (no swap)', '2g')
    .option('--cpus <n>', 'CPU limit', '1')
    .option('--pids <n>', 'process limit', '512')
    .option('--depth <n>', 'shallow clone of this many commits (big repositories)')
    .option('--filter <spec>', 'partial clone: blob:none or tree:0')
    .option('--disk <size>', 'size limit of the workspace (repository and .asp/)', '4g')
    .option('--branch <name>', 'branch the sandbox commits its changes on (default: asp/<task-id>)')
    .option('--env <NAME>', 'let this host variable into the sandbox (repeatable)', collect, [])
    .option('--allow-host <name[:port]>', "let steps reach this host through asp's proxy (repeatable; port 443 unless given; *.example.org for one label; an IP address only exactly)", collect, [])
    .option('--egress-bytes <size>', 'cap on the bytes of all allowed connections together, both ways (default 2g)')
    .option('--egress-connections <n>', 'cap on allowed connections open at once (default 32)')
    .option('--egress-timeout <duration>', 'cap on how long one allowed connection stays open (default 10m)')
    .option('--output-cap <size>', 'output kept per step', '10m')
    .option('--keep', 'keep the container, volume and host clone for debugging')
    .option('--hitl', 'stop for a human decision before the changes are pushed (approve / reject / defer)')
    .option('--approve', 'answer the HITL gate with approve (for scripts)')
    .option('--deny', 'answer the HITL gate with reject (for scripts)')
    .option('--push', 'push the changes to a branch of the repository (a local working clone: of its upstream remote, else origin; or of your fork)')
    .option('--push-to <remote|url>', 'with --push or --pr: push there instead (a remote of the --repo clone, a git URL, or the path of a repository)')
    .option('--pr', 'push and open a pull request (needs GITHUB_TOKEN or GH_TOKEN)')
    .option('--draft', 'open the pull request as a draft')
    .option('--trace <mode>', 'langfuse | json | off: send the trace now, queue it for asp traces push, or keep it local (default: langfuse when LANGFUSE_* keys are set)')
    .option('--json', 'print one JSON result on stdout; logs go to stderr')
    .option('--debug', 'verbose logs and stack traces')
    .action(async (flags: RunFlags) => {
      // The run's machinery loads only when a run starts: `asp run --help` and a usage error pay for none of it.
      const { runCommand } = await import('./run-action.js');
      process.exitCode = await runCommand(flags);
    });
}
