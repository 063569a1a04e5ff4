import { LABEL } from '../backend/ownership-labels.js';
import { warmNames, type IdleEntry, type Sandbox, type WarmEntry, type WarmRequest, type WarmSandboxes } from '../backend/sandbox-backend.js';
import type { CleanupScope } from '../core/cleanup-stack.js';
import { containerSpec } from './container-spec.js';
import { createHardenedContainer } from './hardened-container.js';
import type { DockerPort } from './port.js';

/**
 * Warm sandboxes on Docker: a container made, read back and started exactly as a task's (containerSpec), on an empty
 * workspace volume, its runner waiting for its first input. Being claimed is a rename (`asp-pool-…` to
 * `asp-claimed-…`): the engine gives a name to one container only, so of several claims exactly one succeeds, on
 * one engine or from several hosts. Being retired (for removal) is the same rename to `asp-retired-…`.
 */
export class DockerWarmSandboxes implements WarmSandboxes {
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
      return seq && container.name === warmNames(seq).ready ? [{ seq, pool, running: container.state === 'running' }] : [];
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
    // Undone in reverse: the container, then the workspace it mounts, then the marker that said who held them.
    if (marker) scope.defer(`claim ${marker}`, () => docker.removeVolume(marker), { keepable: true });
    scope.defer(`volume ${names.workspace}`, () => docker.removeVolume(names.workspace), { keepable: true });
    scope.defer(`container ${names.claimed}`, () => docker.removeContainer(names.claimed), { keepable: true });
    return this.sandboxFor(names.claimed, { started: true });
  }

  async retire(entry: WarmEntry): Promise<boolean> {
    const names = warmNames(entry.seq);
    if (!(await this.docker.renameContainer(names.ready, names.retired))) return false;
    await this.docker.removeContainer(names.retired);
    await this.docker.removeVolume(names.workspace);
    return true;
  }
}
