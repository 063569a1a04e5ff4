import { z } from 'zod';
import { parseJsonWith } from '../config/task-spec.js';
import { AspError, errorMessage } from '../core/asp-error.js';
import { ownerAndName, redact, type Forge, type ForgeRepo, type PullRequest, type PullRequestInput } from './forge.js';

const REQUEST_TIMEOUT_MS = 30_000;
/** A new fork takes a moment to exist on GitHub's side; poll this long before giving up. */
const FORK_READY_MS = 60_000;

/** The fields asp reads of GitHub's answers: the network is outside, so they are checked before use. */
const repoSchema = z.object({
  name: z.string(),
  owner: z.object({ login: z.string() }),
  default_branch: z.string(),
  clone_url: z.string(),
  permissions: z.object({ push: z.boolean().optional() }).optional(),
});
type GitHubRepoJson = z.infer<typeof repoSchema>;
const pullSchema = z.object({ html_url: z.string(), number: z.number() });
const errorSchema = z.object({ message: z.string().optional(), errors: z.array(z.object({ message: z.string().optional() })).optional() });

/**
 * GitHub's REST API (and GitHub Enterprise's, through GITHUB_API_URL), with the host's token
 * (GITHUB_TOKEN or GH_TOKEN). Errors name the call and what to do; the token is never in a message.
 */
export class GitHubForge implements Forge {
  readonly name = 'github';

  constructor(
    private readonly apiUrl: string,
    private readonly token: string,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  ) {}

  async repository(remoteUrl: string): Promise<ForgeRepo> {
    const parsed = ownerAndName(remoteUrl);
    if (!parsed) throw new AspError('BAD_INPUT', `cannot tell owner and name from the repository URL ${redact(remoteUrl)}`, 'use a URL such as https://github.com/owner/name.git');
    return this.toRepo(await this.call('GET', `/repos/${parsed.owner}/${parsed.name}`, undefined, 'read the repository', repoSchema));
  }

  async fork(repo: ForgeRepo): Promise<ForgeRepo> {
    const fork = this.toRepo(await this.call('POST', `/repos/${repo.owner}/${repo.name}/forks`, { default_branch_only: true }, 'create a fork', repoSchema));
    // The fork API answers at once and creates the fork in the background.
    const deadline = performance.now() + FORK_READY_MS;
    for (;;) {
      const ready = await this.call('GET', `/repos/${fork.owner}/${fork.name}`, undefined, 'read the fork', repoSchema).then(
        (json) => this.toRepo(json),
        () => undefined,
      );
      if (ready) return { ...ready, canPush: true };
      if (performance.now() > deadline) throw new AspError('FORGE_FAILED', `the fork ${fork.owner}/${fork.name} did not become ready`, 'try again in a minute');
      await this.sleep(2000);
    }
  }

  async openPullRequest(input: PullRequestInput): Promise<PullRequest> {
    const head = input.head.owner === input.target.owner ? input.head.branch : `${input.head.owner}:${input.head.branch}`;
    const json = await this.call(
      'POST',
      `/repos/${input.target.owner}/${input.target.name}/pulls`,
      { title: input.title, head, base: input.base, body: input.body, draft: input.draft, maintainer_can_modify: true },
      'open the pull request',
      pullSchema,
    );
    return { url: json.html_url, number: json.number };
  }

  async updatePullRequestBody(repo: { owner: string; name: string }, number: number, body: string): Promise<void> {
    await this.call('PATCH', `/repos/${repo.owner}/${repo.name}/pulls/${number}`, { body }, 'link the pull requests', z.unknown());
  }

  private toRepo(json: GitHubRepoJson): ForgeRepo {
    return { owner: json.owner.login, name: json.name, defaultBranch: json.default_branch, canPush: Boolean(json.permissions?.push), pushUrl: json.clone_url };
  }

  private async call<T extends z.ZodType>(method: string, route: string, body: unknown, what: string, schema: T): Promise<z.infer<T>> {
    let response: Response;
    try {
      response = await fetch(`${this.apiUrl}${route}`, {
        method,
        headers: {
          accept: 'application/vnd.github+json',
          authorization: `Bearer ${this.token}`,
          'x-github-api-version': '2022-11-28',
          'user-agent': 'asp-runner',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw new AspError('FORGE_FAILED', `cannot ${what}: ${this.apiUrl} does not answer (${errorMessage(error)})`, 'check GITHUB_API_URL and the network');
    }
    const text = await response.text();
    if (!response.ok) {
      const message = safeMessage(text);
      const hint =
        response.status === 401
          ? 'the token is invalid or expired: set GITHUB_TOKEN (or GH_TOKEN)'
          : response.status === 403 || response.status === 404
            ? 'the token lacks access to this repository (repo scope, or contents and pull-request permissions)'
            : response.status === 422
              ? 'a pull request for this branch may exist already'
              : 'see the message';
      throw new AspError('FORGE_FAILED', `cannot ${what}: GitHub answered ${response.status}${message ? `: ${message}` : ''}`, hint);
    }
    const parsed = parseJsonWith(text, schema);
    if (!('value' in parsed)) {
      const problem = 'notJson' in parsed ? 'not JSON' : `not what asp expects (${parsed.issues})`;
      throw new AspError('FORGE_FAILED', `cannot ${what}: GitHub's answer is ${problem}`, 'check GITHUB_API_URL: it must be the REST API root (https://api.github.com, or https://HOST/api/v3)');
    }
    return parsed.value;
  }
}

function safeMessage(text: string): string {
  const parsed = parseJsonWith(text, errorSchema);
  if (!('value' in parsed)) return text.slice(0, 200);
  const json = parsed.value;
  return [json.message, ...(json.errors ?? []).map((error) => error.message)].filter(Boolean).join('; ').slice(0, 300);
}
