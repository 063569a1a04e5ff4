import { currentSupervisor, ownershipLabels } from '../backend/ownership-labels.js';
import { limitsSchema } from '../config/task-spec.js';
import { errorMessage } from '../core/asp-error.js';
import { containerSpec } from './container-spec.js';
import type { DockerPort } from './port.js';

/** A probe is gone within this long, or counted as failed (its container is removed either way). */
const PROBE_MS = 30_000;

/**
 * Whether the engine can start a sandbox as asp makes them: a container of asp's image, hardened as every sandbox
 * (Init, the limits, seccomp, no network) but with no volume and `true` for its command, created, started, waited
 * for and removed. `asp doctor` runs it on Podman, whose prerequisites (an init binary it finds, rlimits the host
 * allows) only show when a container starts. Labelled as a task's sandbox of this process, so `asp reap` removes it
 * if doctor dies in between. Undefined: it ran and ended 0; otherwise what failed, in the engine's words.
 */
export async function probeSandboxStart(docker: DockerPort, aspImage: string): Promise<string | undefined> {
  const taskId = `doctor-probe-${process.pid}`;
  const labels = ownershipLabels({ taskId, runId: 'doctor', supervisor: currentSupervisor(), expiresAt: new Date(Date.now() + PROBE_MS), keep: false });
  const spec = containerSpec({ name: `asp-${taskId}`, image: aspImage, volume: 'unused', labels, limits: limitsSchema.parse({}), allowedEnv: {} });
  let id: string | undefined;
  try {
    id = await docker.createContainer({ ...spec, Cmd: ['true'], HostConfig: { ...spec.HostConfig, Mounts: [] } });
    await docker.start(id);
    const status = await Promise.race([docker.wait(id), new Promise<number>((resolve) => setTimeout(() => resolve(-1), PROBE_MS).unref())]);
    return status === 0 ? undefined : status === -1 ? `the probe container did not end within ${PROBE_MS / 1000} s` : `the probe container exited ${status}`;
  } catch (error) {
    return errorMessage(error);
  } finally {
    if (id) await docker.removeContainer(id).catch(() => undefined);
  }
}
