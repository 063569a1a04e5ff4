import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GitDaemon } from './git-daemon.js';

interface RepoEntry {
  owner: string;
  name: string;
  defaultBranch: string;
  canPush: boolean;
}

export interface RecordedRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: unknown;
}

/**
 * The GitHub REST calls asp uses, on 127.0.0.1: repository info, fork, create pull request. It checks the
 * bearer token and records every request; forks become real bare repositories in the git daemon.
 */
export interface FakeGitHub {
  apiUrl: string;
  requests: RecordedRequest[];
  pulls: Array<{ owner: string; name: string; title: string; head: string; base: string; body: string; draft: boolean }>;
  addRepo(entry: RepoEntry): void;
  stop(): Promise<void>;
}

export async function startFakeGitHub(options: { token: string; daemon: GitDaemon; forkOwner: string }): Promise<FakeGitHub> {
  const repos = new Map<string, RepoEntry>();
  const requests: RecordedRequest[] = [];
  const pulls: FakeGitHub['pulls'] = [];
  const json = (entry: RepoEntry) => ({
    name: entry.name,
    owner: { login: entry.owner },
    default_branch: entry.defaultBranch,
    clone_url: options.daemon.url(entry.owner, entry.name),
    permissions: { push: entry.canPush },
  });
  const server = http.createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      const body = text ? JSON.parse(text) : undefined;
      requests.push({ method: request.method ?? '', url: request.url ?? '', authorization: request.headers.authorization, body });
      const send = (status: number, payload: unknown) => {
        response.writeHead(status, { 'content-type': 'application/json' });
        response.end(JSON.stringify(payload));
      };
      if (request.headers.authorization !== `Bearer ${options.token}`) return send(401, { message: 'Bad credentials' });
      const update = /^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/.exec(request.url ?? '');
      if (update && request.method === 'PATCH') {
        const pull = pulls[Number(update[3]) - 1];
        if (!pull || pull.owner !== update[1] || pull.name !== update[2]) return send(404, { message: 'Not Found' });
        pull.body = (body as { body: string }).body;
        return send(200, { number: Number(update[3]) });
      }
      const match = /^\/repos\/([^/]+)\/([^/]+)(\/forks|\/pulls)?$/.exec(request.url ?? '');
      if (!match) return send(404, { message: 'Not Found' });
      const [, owner, name, action] = match as unknown as [string, string, string, string | undefined];
      const repo = repos.get(`${owner}/${name}`);
      if (!repo) return send(404, { message: 'Not Found' });
      if (!action && request.method === 'GET') return send(200, json(repo));
      if (action === '/forks' && request.method === 'POST') {
        const fork: RepoEntry = { owner: options.forkOwner, name, defaultBranch: repo.defaultBranch, canPush: true };
        if (!repos.has(`${fork.owner}/${name}`)) {
          options.daemon.publish(fork.owner, name, `${options.daemon.root}/${owner}/${name}.git`);
          repos.set(`${fork.owner}/${name}`, fork);
        }
        return send(202, json(fork));
      }
      if (action === '/pulls' && request.method === 'POST') {
        const number = pulls.length + 1;
        pulls.push({ owner, name, ...(body as { title: string; head: string; base: string; body: string; draft: boolean }) });
        return send(201, { number, html_url: `https://github.example/${owner}/${name}/pull/${number}` });
      }
      return send(404, { message: 'Not Found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    apiUrl: `http://127.0.0.1:${port}`,
    requests,
    pulls,
    addRepo: (entry) => repos.set(`${entry.owner}/${entry.name}`, entry),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
