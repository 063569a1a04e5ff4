import { LABEL } from '../backend/ownership-labels.js';
import { warmNames, type IdleEntry, type Sandbox, type WarmEntry, type WarmRequest, type WarmSandboxes } from '../backend/sandbox-backend.js';
import type { CleanupScope } from '../core/cleanup-stack.js';
import { containerSpec } from './container-spec.js';
import { createHardenedContainer } from './hardened-container.js';
import { ASP_VERSION } from '../core/version.js';
import type { DockerPort } from './port.js';
import { imageContext } from './sandbox-image.js';

/**
 * Warm sandboxes on Docker: a container made, read back and started exactly as a task's (containerSpec), on an empty
 * workspace volume, its runner waiting for its first input. Being claimed is a rename (`asp-pool-…` to
 * `asp-claimed-…`): the engine gives a name to one container only, so of several claims exactly one succeeds, on
 * one engine or from several hosts. Being retired (for removal) is the same rename to `asp-retired-…`.
 */
export class DockerWarmSandboxes implements WarmSandboxes {
  readonly fingerprint = `${ASP_VERSION}/${imageContext().tag}`;

  constructor(
    private readonly docker: DockerPort,
    /** The runtime volume the image's sandboxes mount (not asp's own image), as the backend prepared it. */
    private readonly runnerRuntimeFor: (image: string) => Promise<string | undefined>,
    private readonly sandboxFor: (container: string, options: { started: boolean }) => Sandbox,
  ) {}

  async prepare(request: WarmRequest): Promise<WarmEntry> {
    const { docker } = this;
    const names = warmNames(request.seq);
    const pool = request.labels[LABEL.pool];
    if (!pool) throw new Error(`a warm sandbox needs its ${LABEL.pool} label`);
    const labels = { ...request.labels, [LABEL.poolSandbox]: request.seq };
    const runnerRuntime = await this.runnerRuntimeFor(request.image);
    await docker.createVolume(names.workspace, labels);
    try {
      const id = await createHardenedContainer(
        docker,
        containerSpec({
          name: names.ready,
          image: request.image,
          volume: names.workspace,
          labels,
          limits: request.limits,
          // Nothing of a task's: its --env values go over the protocol once it is claimed (envOverProtocol).
          allowedEnv: {},
          runtime: request.runtime,
          runnerRuntime,
          helloAfterInput: true,
        }),
      );
      try {
        await docker.start(id);
      } catch (error) {
        await docker.removeContainer(id).catch(() => {});
        throw error;
      }
    } catch (error) {
      await docker.removeVolume(names.workspace).catch(() => {});
      throw error;
    }
    return { seq: request.seq, pool };
  }

  async ready(pool: string): Promise<WarmEntry[]> {
    return (await this.idle(pool)).filter((entry) => entry.running).map(({ seq }) => ({ seq, pool }));
  }

  async idle(pool: string): Promise<IdleEntry[]> {
    const containers = await this.docker.listContainers([`${LABEL.managed}=true`, `${LABEL.pool}=${pool}`]);
    return containers.flatMap((container) => {
      const seq = container.labels[LABEL.poolSandbox];
      if (!seq) return [];
      const names = warmNames(seq);
      if (container.name === names.ready) return [{ seq, pool, running: container.state === 'running' }];
      return container.name === names.retired ? [{ seq, pool, running: false, retired: true }] : [];
    });
  }

  async claim(entry: WarmEntry, scope: CleanupScope, claim?: { labels: Record<string, string>; id: string }): Promise<Sandbox | undefined> {
    const { docker } = this;
    const names = warmNames(entry.seq);
    const marker = claim ? `asp-claim-${claim.id}` : undefined;
    // The marker first: a held sandbox is never without one, so the reaper never judges it by its keeper alone.
    if (marker && claim) await docker.createVolume(marker, { ...claim.labels, [LABEL.claims]: entry.seq });
    const won = await docker.renameContainer(names.ready, names.claimed).catch(async (error: unknown) => {
      if (marker) await docker.removeVolume(marker).catch(() => {});
      throw error;
    });
    if (!won) {
      if (marker) await docker.removeVolume(marker).catch(() => {});
      return undefined;
    }
    // In this order, each only once the one before is gone: the marker says who holds the sandbox for as long as
    // any of it is left, so a removal that fails leaves it the task's, for the reaper to judge by the task.
    scope.defer(
      `sandbox ${names.claimed}`,
      async () => {
        await docker.removeContainer(names.claimed);
        await docker.removeVolume(names.workspace);
        if (marker) await docker.removeVolume(marker);
      },
      { keepable: true },
    );
    return this.sandboxFor(names.claimed, { started: true });
  }

  async retire(entry: WarmEntry | IdleEntry): Promise<boolean> {
    const names = warmNames(entry.seq);
    const retired = 'retired' in entry && entry.retired === true;
    if (!retired && !(await this.docker.renameContainer(names.ready, names.retired))) return false;
    await this.docker.removeContainer(names.retired);
    await this.docker.removeVolume(names.workspace);
    return true;
  }
}
