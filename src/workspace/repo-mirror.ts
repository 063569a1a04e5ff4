import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { AspError, errorMessage } from '../core/asp-error.js';
import { hostGit, tokenConfig } from './host-git.js';
import type { RepoSource } from './repository.js';

/**
 * Bare mirrors of remote repositories under `<home>/mirrors/`, fetched at most once per batch: a repository
 * used by fifty tasks is downloaded once, and each task clones locally from the mirror.
 */
export class RepoMirrors {
  private readonly pending = new Map<string, Promise<RepoSource>>();
  /** How many fetches this batch made: one per distinct remote repository. */
  fetches = 0;

  constructor(
    private readonly dir: string,
    private readonly env: Readonly<Record<string, string | undefined>>,
    private readonly token?: { value: string; host: string } | undefined,
  ) {}

  /** The source to clone from: the mirror for a remote repository, the source itself for a local one. */
  resolve(source: RepoSource): Promise<RepoSource> {
    if (source.kind === 'local') return Promise.resolve(source);
    let mirror = this.pending.get(source.location);
    if (!mirror) {
      mirror = this.refresh(source);
      this.pending.set(source.location, mirror);
    }
    return mirror;
  }

  private async refresh(source: RepoSource): Promise<RepoSource> {
    this.fetches += 1;
    const target = path.join(this.dir, `${createHash('sha256').update(source.location).digest('hex').slice(0, 16)}.git`);
    await mkdir(this.dir, { recursive: true });
    const git = hostGit({ env: this.env, timeoutMs: 600_000, secretConfig: tokenConfig(source.location, this.token) });
    try {
      if (existsSync(target)) await git.cwd(target).raw(['remote', 'update', '--prune']);
      else await git.raw(['clone', '--mirror', source.location, target]);
    } catch (error) {
      await rm(target, { recursive: true, force: true });
      throw new AspError(
        'REPO_NOT_FOUND',
        `cannot fetch ${source.display}: ${
          errorMessage(error)
            .split('\n')
            .find((line) => line.startsWith('fatal:')) ?? errorMessage(error)
        }`,
        'check that the repository exists and that you can read it',
      );
    }
    return { kind: 'local', location: target, display: source.display };
  }
}
