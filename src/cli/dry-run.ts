import type { TaskSpec } from '../config/task-spec.js';
import { generateTaskId } from '../config/task-id.js';
import { sandboxName, type SandboxRequest } from '../backend/sandbox-backend.js';
import { currentSupervisor, expiryOf, ownershipLabels } from '../backend/ownership-labels.js';
import { systemClock } from '../core/clock.js';
import { containerSpec } from '../docker/container-spec.js';
import { imageContext } from '../docker/sandbox-image.js';
import { LazyKubernetesBackend } from '../k8s/lazy-backend.js';
import { resolveTask } from '../supervisor/phases/resolve-task.js';
import type { CliContext } from './cli-context.js';

/** The run id a dry run's names carry: no run happens. */
const DRY_RUN_ID = 'dry-run';

/**
 * What `asp run --dry-run` would make for one task, without making it: on Kubernetes the deny-all NetworkPolicy and
 * the pod, on Docker the container's create body. Nothing is cloned, pulled or sent; only the kubeconfig is read
 * (for the namespace), so reviewers can read exactly what runs.
 */
export async function dryRunManifests(spec: TaskSpec, context: CliContext, cwd = process.cwd()): Promise<object[]> {
  const resolved = await resolveTask(spec, { settings: context.settings, cwd, clock: systemClock });
  // The values of `--env` variables are the host's (often secrets): a dry run's output goes to CI logs, so it names
  // where each would come from instead.
  const plan = { ...resolved, sandboxEnv: Object.fromEntries(Object.keys(resolved.sandboxEnv).map((name) => [name, `<from the host: ${name}>`])) };
  const taskId = plan.spec.id ?? generateTaskId(plan.spec.task, plan.startedAt);
  const labels = ownershipLabels({ taskId, runId: DRY_RUN_ID, supervisor: currentSupervisor(), expiresAt: expiryOf(plan.startedAt, plan.spec.limits.timeout), keep: plan.spec.keep });
  const backend = spec.backend ? context.backendFor(spec.backend) : context.backend;
  if (backend instanceof LazyKubernetesBackend) {
    const k8s = await backend.load();
    const prepared = await k8s.prepareImage({ image: plan.spec.image });
    const request: SandboxRequest = {
      taskId,
      runId: DRY_RUN_ID,
      role: 'task',
      image: prepared.ref,
      labels,
      limits: plan.spec.limits,
      env: plan.sandboxEnv,
      runtime: plan.spec.runtime,
      checkDir: false,
    };
    const { pod, networkPolicy } = await k8s.manifests(request);
    return [networkPolicy, pod];
  }
  const image = plan.spec.image ?? imageContext().tag;
  return [
    containerSpec({
      name: sandboxName({ taskId, runId: DRY_RUN_ID, role: 'task' }),
      image,
      volume: `asp-ws-${taskId}-${DRY_RUN_ID}`,
      labels,
      limits: plan.spec.limits,
      allowedEnv: plan.sandboxEnv,
      runtime: plan.spec.runtime,
      // The runtime volume's name is known only to a daemon that made it: shown as what it is.
      runnerRuntime: plan.spec.image ? 'asp-runtime-<asp image>' : undefined,
    }),
  ];
}

/** Manifests as YAML documents (kubectl's form), or one JSON array with `--json`; a batch's shared NetworkPolicy once. */
export async function formatManifests(all: object[], json: boolean): Promise<string> {
  const seen = new Set<string>();
  const manifests = all.filter((manifest) => {
    if (!('kind' in manifest) || manifest.kind !== 'NetworkPolicy') return true;
    const text = JSON.stringify(manifest);
    if (seen.has(text)) return false;
    seen.add(text);
    return true;
  });
  if (json) return JSON.stringify(manifests, null, 2) + '\n';
  // Loaded only for a dry run: `asp run` itself never pays for a YAML library.
  const { dump } = await import('js-yaml');
  return manifests.map((manifest) => `---\n${dump(manifest, { noRefs: true, lineWidth: -1 })}`).join('');
}
