import { AspError } from '../../src/core/asp-error.js';
import type { ContainerSummary, DockerPort, VolumeSummary } from '../../src/docker/port.js';

/**
 * A DockerPort that holds containers and volumes in memory, for the reaper's unit tests. It follows the
 * adapter's contract (removing what is gone is success; a mounted volume is DOCKER_CONFLICT) and records
 * every call, so tests can check order, count and concurrency.
 */
export class FakeDocker implements DockerPort {
  containers = new Map<string, ContainerSummary & { volume?: string }>();
  volumes = new Map<string, VolumeSummary>();
  calls: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Set to make every call fail as a daemon that is gone. */
  down = false;
  /** Volumes that stay "in use" for this many more removal attempts. */
  busyVolumes = new Map<string, number>();
  removalDelayMs = 0;

  addContainer(id: string, labels: Record<string, string>, options: { volume?: string; createdAt?: Date } = {}): void {
    this.containers.set(id, { id, name: `c-${id}`, state: 'running', labels, createdAt: options.createdAt ?? new Date(0), ...(options.volume ? { volume: options.volume } : {}) });
  }

  addVolume(name: string, labels: Record<string, string>, options: { createdAt?: Date | undefined } = { createdAt: new Date(0) }): void {
    this.volumes.set(name, { name, labels, createdAt: options.createdAt });
  }

  async listContainers(filters: string[]): Promise<ContainerSummary[]> {
    this.record('listContainers');
    return [...this.containers.values()].filter((container) => matches(container.labels, filters));
  }

  async renameContainer(currentName: string, newName: string): Promise<boolean> {
    this.record('renameContainer');
    const found = [...this.containers.values()].find((container) => container.name === currentName);
    if (!found || [...this.containers.values()].some((container) => container.name === newName)) return false;
    found.name = newName;
    return true;
  }

  async listVolumes(filters: string[]): Promise<VolumeSummary[]> {
    this.record('listVolumes');
    return [...this.volumes.values()].filter((volume) => matches(volume.labels, filters));
  }

  async inspectVolume(name: string): Promise<VolumeSummary | undefined> {
    this.record('inspectVolume');
    return this.volumes.get(name);
  }

  async removeContainer(id: string): Promise<void> {
    await this.slow(`removeContainer ${id}`, () => {
      this.containers.delete(id);
    });
  }

  async removeVolume(name: string): Promise<void> {
    await this.slow(`removeVolume ${name}`, () => {
      const busy = this.busyVolumes.get(name) ?? 0;
      const mounted = [...this.containers.values()].some((container) => container.volume === name);
      if (busy > 0 || mounted) {
        this.busyVolumes.set(name, busy - 1);
        throw new AspError('DOCKER_CONFLICT', `cannot remove volume ${name}: volume is in use`);
      }
      this.volumes.delete(name);
    });
  }

  private record(call: string): void {
    this.calls.push(call);
    if (this.down) throw new AspError('DOCKER_UNAVAILABLE', 'cannot list: Docker at unix:///fake does not answer (ECONNREFUSED)', 'start the Docker daemon');
  }

  private async slow(call: string, action: () => void): Promise<void> {
    this.record(call);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((resolve) => setTimeout(resolve, this.removalDelayMs));
      action();
    } finally {
      this.inFlight -= 1;
    }
  }

  info = unused;
  ping = unused;
  imageExists = unused;
  inspectImage = unused;
  buildImage = unused;
  createVolume = unused;
  createContainer = unused;
  inspectContainer = unused;
  getArchive = unused;
  attach = unused;
  start = unused;
  wait = unused;
  oomKilled = unused;
  kill = unused;
}

function unused(): never {
  throw new Error('not used by the reaper');
}

function matches(labels: Record<string, string>, filters: string[]): boolean {
  return filters.every((filter) => {
    const [key, value] = filter.split('=') as [string, string | undefined];
    return value === undefined ? key in labels : labels[key] === value;
  });
}
