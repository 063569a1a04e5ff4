import { AspError, errorMessage } from '../core/asp-error.js';
import { checkRuntime } from '../backend/sandbox-policy.js';
import type { KubernetesBackend } from '../k8s/k8s-backend.js';

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** A failed check that does not stop asp from working. */
  advisory?: boolean;
}

const said = (error: unknown) => `${errorMessage(error)}${error instanceof AspError && error.hint ? ` — ${error.hint}` : ''}`;

/**
 * `asp doctor --backend k8s`: the cluster answers, asp may do what it needs in the namespace (each missing verb
 * named), and what the pods will run under. What the API cannot show (whether the network plugin enforces policies,
 * whether the nodes can pull asp's image) is said as a note.
 */
export async function kubernetesChecks(backend: KubernetesBackend, runtime: string | undefined): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  let info;
  try {
    info = await backend.describe();
    checks.push({
      name: 'k8s',
      ok: true,
      detail: `Kubernetes ${info.serverVersion} (${info.os}/${info.arch}) at ${info.endpoint}${info.source ? ` (${info.source})` : ''}; runtime classes: ${info.runtimesUnknown ? 'not listable with these credentials' : info.runtimes.join(', ') || 'none'}`,
    });
  } catch (error) {
    checks.push({ name: 'k8s', ok: false, detail: said(error) });
    return checks;
  }
  try {
    const missing = await backend.missingPermissions();
    checks.push(
      missing.length
        ? { name: 'rbac', ok: false, detail: `asp may not ${missing.join(', ')} in the namespace — grant them (examples/k8s/rbac.yaml)` }
        : { name: 'rbac', ok: true, detail: 'asp may create, watch and delete pods, attach to them, and keep its NetworkPolicy' },
    );
  } catch (error) {
    checks.push({ name: 'rbac', ok: false, advisory: true, detail: `cannot ask the API server what asp may do: ${said(error)}` });
  }
  if (runtime) {
    try {
      checkRuntime(runtime, info);
      checks.push({ name: 'runtime', ok: true, detail: `RuntimeClass ${runtime}${info.runtimesUnknown ? ' (not listable: the pod create will say whether it exists)' : ' present'}` });
    } catch (error) {
      checks.push({ name: 'runtime', ok: false, detail: said(error) });
    }
  }
  const placement = await backend.placement();
  checks.push({
    name: 'network',
    ok: true,
    advisory: true,
    detail:
      `pods get asp's deny-all NetworkPolicy in ${placement.namespace}; the API cannot show whether the cluster's network plugin enforces it ` +
      '(Calico, Cilium and Antrea do; flannel alone does not): without enforcement a pod has the network its CNI gives (README: Kubernetes)',
  });
  checks.push({
    name: 'seccomp',
    ok: true,
    advisory: placement.seccomp === 'RuntimeDefault',
    detail:
      placement.seccomp === 'RuntimeDefault'
        ? "RuntimeDefault: install asp's profile on the nodes (asp image seccomp-profile > FILE) and set ASP_K8S_SECCOMP_PROFILE for asp's own"
        : `${placement.seccomp} (must exist on every node under the kubelet's seccomp dir)`,
  });
  checks.push({
    name: 'image',
    ok: true,
    advisory: true,
    detail: `pods run ${placement.runnerImage}: the nodes must be able to pull it (kind: kind load docker-image ${placement.runnerImage}; else push it and set ASP_K8S_IMAGE)`,
  });
  return checks;
}
