import type { CleanupScope } from '../core/cleanup-stack.js';
import type { EngineInfo, ImageRequest, OwnedObject, PreparedImage, Sandbox, SandboxBackend, SandboxRequest } from '../backend/sandbox-backend.js';
import type { KubernetesBackend, KubernetesOptions } from './k8s-backend.js';

/**
 * The Kubernetes backend as every command gets it: its code (the API client, the manifests, the schemas) is loaded on
 * its first call, so a command on Docker, or one that never makes a sandbox, starts without it. `load()` gives the
 * backend itself, for what only Kubernetes has (dry-run manifests, RBAC checks, its NetworkPolicy).
 */
export class LazyKubernetesBackend implements SandboxBackend {
  readonly name = 'k8s';
  readonly sandboxKind = 'pod';
  private loaded: Promise<KubernetesBackend> | undefined;

  constructor(private readonly options: KubernetesOptions) {}

  load(): Promise<KubernetesBackend> {
    this.loaded ??= import('./k8s-backend.js').then((module) => new module.KubernetesBackend(this.options));
    return this.loaded;
  }

  async describe(): Promise<EngineInfo> {
    return (await this.load()).describe();
  }

  async ping(): Promise<void> {
    await (await this.load()).ping();
  }

  async prepareImage(request: ImageRequest): Promise<PreparedImage> {
    return (await this.load()).prepareImage(request);
  }

  async createSandbox(request: SandboxRequest, scope: CleanupScope): Promise<Sandbox> {
    return (await this.load()).createSandbox(request, scope);
  }

  async listOwned(labelFilters: string[]): Promise<OwnedObject[]> {
    return (await this.load()).listOwned(labelFilters);
  }

  async removeOwned(object: OwnedObject): Promise<void> {
    return (await this.load()).removeOwned(object);
  }

  async removeStaleRuntimes(options: { dryRun: boolean }): Promise<string[]> {
    void options; // a pod's runtime lives and dies with it: nothing to prune
    return (await this.load()).removeStaleRuntimes();
  }
}
