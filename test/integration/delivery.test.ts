import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Settings } from '../../src/config/settings.js';
import { approveTask } from '../../src/delivery/approve-task.js';
import { silentLog } from '../../src/core/log.js';
import { dockerAvailable, leftovers, testSettings } from '../helpers/docker.js';
import { asp } from '../helpers/cli.js';
import { startFakeGitHub, type FakeGitHub } from '../helpers/fake-github.js';
import { startGitDaemon, type GitDaemon } from '../helpers/git-daemon.js';
import { gitIn, repoWith } from '../helpers/repos.js';
import { run, trace } from '../helpers/run.js';

const TOKEN = 'ghp_test-token-0123456789';
const edit = [{ name: 'edit', run: 'echo "fixed" >> README.md' }];

describe.skipIf(!dockerAvailable)('changes delivered: push, pull requests and the HITL gate', () => {
  let daemon: GitDaemon;
  let github: FakeGitHub;
  let settings: Settings;
  let counter = 0;

  /** A fresh upstream repository org/app-N on the git daemon, registered with the fake GitHub. */
  function upstream(canPush: boolean, files: Record<string, string> = { 'README.md': 'app\n' }): { url: string; bare: string; name: string } {
    counter += 1;
    const name = `app-${counter}`;
    const bare = daemon.publish('org', name, repoWith(files));
    github.addRepo({ owner: 'org', name, defaultBranch: 'main', canPush });
    return { url: daemon.url('org', name), bare, name };
  }

  beforeAll(async () => {
    daemon = await startGitDaemon();
    github = await startFakeGitHub({ token: TOKEN, daemon, forkOwner: 'asp-bot' });
    settings = testSettings({ github: { token: TOKEN, apiUrl: github.apiUrl, webHost: '127.0.0.1' } });
  });

  afterAll(async () => {
    await github?.stop();
    await daemon?.stop();
    expect(await leftovers()).toEqual({ containers: [], volumes: [] });
  });

  it('pushes the branch and opens a pull request whose body is the report, and records pr_url', async () => {
    const repo = upstream(true);
    const { result } = await run(settings, { repo: repo.url, task: 'Fix the README', steps: edit, pr: true });
    expect(result.exitCode).toBe(0);
    expect(result.delivery).toMatchObject({ hitlStatus: 'not_required', prUrl: `https://github.example/org/${repo.name}/pull/1` });
    expect(gitIn(repo.bare, 'show', `asp/${result.taskId}:README.md`)).toBe('app\nfixed');
    const pull = github.pulls.find((entry) => entry.name === repo.name);
    expect(pull).toMatchObject({ title: 'Fix the README', head: `asp/${result.taskId}`, base: 'main', draft: false });
    expect(pull?.body).toContain(`# asp task report: ${result.taskId}`);
    expect(pull?.body).toContain(result.traceId);
    expect(trace(result).trace.metadata.pr_url).toBe(result.delivery?.prUrl);
    expect(github.requests.every((request) => request.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);
    // The token never reaches the sandbox, the artifacts or the trace.
    expect(readFileSync(result.tracePath, 'utf8')).not.toContain(TOKEN);
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'events.jsonl'), 'utf8')).not.toContain(TOKEN);
  });

  it('pushes to a fork and opens the PR from it when the token cannot push', async () => {
    const repo = upstream(false);
    const { result } = await run(settings, { repo: repo.url, task: 'Fork me', steps: edit, pr: true, draft: true });
    expect(result.exitCode).toBe(0);
    expect(github.requests.some((request) => request.method === 'POST' && request.url === `/repos/org/${repo.name}/forks`)).toBe(true);
    const fork = path.join(daemon.root, 'asp-bot', `${repo.name}.git`);
    expect(gitIn(fork, 'show', `asp/${result.taskId}:README.md`)).toBe('app\nfixed');
    expect(() => gitIn(repo.bare, 'rev-parse', '--verify', `asp/${result.taskId}`)).toThrow();
    expect(github.pulls.find((entry) => entry.name === repo.name)).toMatchObject({ head: `asp-bot:asp/${result.taskId}`, draft: true });
  });

  it('rejects at the gate with --deny: nothing pushed, the decision in the trace', async () => {
    const repo = upstream(true);
    const { result } = await run(settings, { repo: repo.url, steps: edit, hitl: true, pr: true }, { decision: 'deny' });
    expect(result.exitCode).toBe(0);
    expect(result.delivery).toMatchObject({ hitlStatus: 'rejected', decidedBy: os.userInfo().username });
    expect(() => gitIn(repo.bare, 'rev-parse', '--verify', `asp/${result.taskId}`)).toThrow();
    const document = trace(result);
    expect(document.trace.metadata).toMatchObject({ hitl_required: true, hitl_status: 'rejected', pr_url: null });
    expect(document.scores.find((score) => score.name === 'hitl_decision')?.value).toBe(0);
  });

  it('waits for approval without a TTY, keeps the work, and asp approve finishes it later', async () => {
    const repo = upstream(true);
    const { result } = await run(settings, { repo: repo.url, task: 'Needs review', steps: edit, hitl: true, pr: true });
    expect(result.status).toBe('awaiting_approval');
    expect(result.exitCode).toBe(0);
    expect(result.kept).toBe(true);
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(true);
    expect(trace(result).trace.metadata.hitl_status).toBe('awaiting_approval');
    expect(() => gitIn(repo.bare, 'rev-parse', '--verify', `asp/${result.taskId}`)).toThrow();

    const approved = await approveTask(result.taskId, { deny: false, comment: 'looks right' }, { settings, log: silentLog, warn: () => {} });
    expect(approved).toMatchObject({ status: 'passed', kept: false });
    expect(approved.delivery).toMatchObject({ hitlStatus: 'approved', comment: 'looks right', prUrl: expect.stringContaining(`/org/${repo.name}/pull/`) });
    expect(gitIn(repo.bare, 'show', `asp/${result.taskId}:README.md`)).toBe('app\nfixed');
    const document = trace(result);
    expect(document.trace.metadata).toMatchObject({ hitl_status: 'approved', hitl_comment: 'looks right', pr_url: approved.delivery.prUrl });
    expect(document.trace.metadata.hitl_by).toBe(os.userInfo().username);
    expect(document.scores.find((score) => score.name === 'hitl_decision')).toMatchObject({ value: 1 });
    expect(document.scores.map((score) => score.name)).toEqual(expect.arrayContaining(['probe_accuracy', 'probe_latency_ms']));
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);

    await expect(approveTask(result.taskId, { deny: false }, { settings, log: silentLog, warn: () => {} })).rejects.toThrow('was approved already');
  });

  it('pushes nothing once interrupted after the steps passed: the change waits, deferred, and asp approve pushes it', async () => {
    const repo = upstream(true);
    const interrupt = new AbortController();
    // The interrupt lands while the person is at the gate (after the run, before delivery), and they then approve.
    const ask = () => {
      interrupt.abort();
      return Promise.resolve('approve' as const);
    };
    const { result } = await run(settings, { repo: repo.url, steps: edit, hitl: true, push: true }, { signal: interrupt.signal, ask });
    expect(result).toMatchObject({ status: 'awaiting_approval', kept: true, delivery: { hitlStatus: 'deferred' } });
    expect(() => gitIn(repo.bare, 'rev-parse', '--verify', `asp/${result.taskId}`)).toThrow();
    const approved = await approveTask(result.taskId, { deny: false }, { settings, log: silentLog, warn: () => {} });
    expect(approved).toMatchObject({ status: 'passed', kept: false });
    expect(gitIn(repo.bare, 'show', `asp/${result.taskId}:README.md`)).toBe('app\nfixed');
  });

  it('defers, then a later --deny discards the clone', async () => {
    const repo = upstream(true);
    const { result } = await run(settings, { repo: repo.url, steps: edit, hitl: true, push: true }, { decision: 'defer' });
    expect(result.status).toBe('awaiting_approval');
    expect(result.delivery?.hitlStatus).toBe('deferred');
    const denied = await approveTask(result.taskId, { deny: true, comment: 'not now' }, { settings, log: silentLog, warn: () => {} });
    expect(denied).toMatchObject({ status: 'rejected', kept: false });
    expect(denied.delivery.hitlStatus).toBe('rejected');
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);
    expect(() => gitIn(repo.bare, 'rev-parse', '--verify', `asp/${result.taskId}`)).toThrow();
  });

  /** Someone else already has a different `branch` on the remote: a push of the task's branch is non-fast-forward. */
  function occupy(url: string, branch: string): void {
    const other = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-other-')), 'other');
    gitIn(os.tmpdir(), 'clone', '--quiet', url, other);
    writeFileSync(path.join(other, 'OTHER.md'), 'other\n');
    gitIn(other, 'add', '-A');
    gitIn(other, 'commit', '--quiet', '-m', 'other');
    gitIn(other, 'push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`);
  }

  const cliEnv = () => ({ ASP_WORKSPACES: settings.workspacesRoot, ASP_HOME: settings.home });
  const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown> & { delivery: Record<string, unknown> };

  it('keeps the work when the push is rejected (non-fast-forward), and approve pushes once the way is clear', async () => {
    const repo = upstream(true);
    const id = `nff-${counter}`;
    occupy(repo.url, `asp/${id}`);
    const { result } = await run(settings, { repo: repo.url, id, steps: edit, push: true });
    expect(result.exitCode).toBe(1);
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/rejected: the remote branch asp\/nff-\d+ has commits the task did not start from \(non-fast-forward\)/);
    // The hint can be followed as it is written.
    expect(result.error).toContain(`asp approve ${id} --branch <another-branch> pushes it under another branch`);
    expect(result.kept).toBe(true);
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(true);
    expect(result.artifacts).toContain('change.bundle');

    const again = await approveTask(id, { deny: false }, { settings, log: silentLog, warn: () => {} });
    expect(again).toMatchObject({ status: 'failed', kept: true, error: expect.stringContaining('non-fast-forward') });
    gitIn(repo.bare, 'branch', '-D', `asp/${id}`);
    const retried = await approveTask(id, { deny: false }, { settings, log: silentLog, warn: () => {} });
    expect(retried).toMatchObject({ status: 'passed', kept: false });
    expect(retried.delivery.pushedTo).toBe(repo.url);
    expect(gitIn(repo.bare, 'show', `asp/${id}:README.md`)).toBe('app\nfixed');
  });

  it('a failed push is discarded with approve --deny: clone gone, task rejected, kept false in --json', async () => {
    const repo = upstream(true);
    const id = `deny-${counter}`;
    occupy(repo.url, `asp/${id}`);
    const occupied = gitIn(repo.bare, 'rev-parse', `asp/${id}`);
    const ran = await asp(['run', '--repo', repo.url, '--id', id, '--step', 'edit=echo fixed >> README.md', '--push', '--json'], cliEnv());
    expect(ran.code).toBe(1);
    const result = json(ran.stdout);
    expect(result).toMatchObject({ status: 'failed', kept: true, delivery: { hitlStatus: 'not_required', error: expect.stringContaining('non-fast-forward') } });
    const workspace = String(result.workspacePath);
    const listed = await asp(['workspaces', 'ls', '--json'], cliEnv());
    expect(JSON.parse(listed.stdout).workspaces).toEqual(expect.arrayContaining([expect.objectContaining({ taskId: id, awaitingDecision: true, hasClone: true })]));

    const denied = await asp(['approve', id, '--deny', '--comment', 'not this one', '--json'], cliEnv());
    expect(denied.code).toBe(0);
    expect(json(denied.stdout)).toMatchObject({ taskId: id, status: 'rejected', kept: false, exitCode: 0, delivery: { hitlStatus: 'rejected', comment: 'not this one' } });
    expect(existsSync(path.join(workspace, 'repo'))).toBe(false);
    // Nothing was pushed: the remote branch is still the other one's.
    expect(gitIn(repo.bare, 'rev-parse', `asp/${id}`)).toBe(occupied);
    for (const file of [path.join(workspace, '.asp-host', 'result.json'), path.join(workspace, '.asp', 'result.json')]) {
      expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ status: 'rejected', kept: false, exitCode: 0, delivery: { hitlStatus: 'rejected' } });
    }
    expect(JSON.parse(readFileSync(path.join(workspace, '.asp-owner.json'), 'utf8'))).toMatchObject({ status: 'rejected' });
    expect(JSON.parse(readFileSync(path.join(workspace, '.asp-host', 'trace.json'), 'utf8')).trace.metadata).toMatchObject({ hitl_status: 'rejected', hitl_comment: 'not this one' });
    const relisted = await asp(['workspaces', 'ls', '--json'], cliEnv());
    expect(JSON.parse(relisted.stdout).workspaces).toEqual(expect.arrayContaining([expect.objectContaining({ taskId: id, status: 'rejected', awaitingDecision: false, hasClone: false })]));
    const twice = await asp(['approve', id], cliEnv());
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain(`task ${id} was rejected already`);
  });

  it('a failed push is retried under another branch with approve --branch, kept true until it goes through', async () => {
    const repo = upstream(true);
    const id = `branch-${counter}`;
    occupy(repo.url, `asp/${id}`);
    const ran = await asp(['run', '--repo', repo.url, '--id', id, '--step', 'edit=echo fixed >> README.md', '--push', '--json'], cliEnv());
    expect(ran.code).toBe(1);
    expect(json(ran.stdout)).toMatchObject({ status: 'failed', kept: true });
    // The same branch again: still refused, still kept, and the hint names --branch.
    const same = await asp(['approve', id, '--json'], cliEnv());
    expect(same.code).toBe(1);
    expect(json(same.stdout)).toMatchObject({ status: 'failed', kept: true, exitCode: 1, error: expect.stringContaining('non-fast-forward') });
    expect(same.stderr).toContain(`asp approve ${id} --branch <another-branch>`);
    const bad = await asp(['approve', id, '--branch', '--upload-pack=x'], cliEnv());
    expect(bad.code).toBe(2);

    const pushed = await asp(['approve', id, '--branch', `asp/${id}-2`, '--json'], cliEnv());
    expect(pushed.code).toBe(0);
    expect(json(pushed.stdout)).toMatchObject({ status: 'passed', kept: false, delivery: { hitlStatus: 'not_required', pushedTo: repo.url } });
    expect(gitIn(repo.bare, 'show', `asp/${id}-2:README.md`)).toBe('app\nfixed');
    const workspace = path.join(settings.workspacesRoot, id);
    expect(existsSync(path.join(workspace, 'repo'))).toBe(false);
    expect(JSON.parse(readFileSync(path.join(workspace, '.asp-host', 'result.json'), 'utf8'))).toMatchObject({ status: 'passed', kept: false, exitCode: 0 });
    expect(JSON.parse(readFileSync(path.join(workspace, '.asp-host', 'result.json'), 'utf8')).error).toBeUndefined();
  });

  it('fails clearly and keeps the work when GitHub refuses the token', async () => {
    const repo = upstream(true);
    const bad = { ...settings, github: { ...settings.github, token: 'wrong-token' } };
    const { result } = await run(bad, { repo: repo.url, steps: edit, pr: true });
    expect(result.exitCode).toBe(1);
    expect(result.error).toMatch(/GitHub answered 401: Bad credentials — the token is invalid or expired/);
    expect(result.error).not.toContain('wrong-token');
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(true);
  });

  it('clones a remote through the mirror cache, fetched incrementally on the next run', async () => {
    const repo = upstream(true);
    const first = await run(settings, { repo: repo.url, steps: [{ name: 'look', run: 'git log --format=%s > $ASP_ARTIFACTS/log.txt' }] });
    expect(first.result.exitCode).toBe(0);
    const mirrors = readdirSync(path.join(settings.home, 'mirrors'));
    expect(mirrors.length).toBeGreaterThan(0);
    // A new commit upstream: the next run sees it, through the same mirror.
    const work = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-up-')), 'w');
    gitIn(os.tmpdir(), 'clone', '--quiet', repo.url, work);
    writeFileSync(path.join(work, 'NEW.md'), 'new\n');
    gitIn(work, 'add', '-A');
    gitIn(work, 'commit', '--quiet', '-m', 'second commit');
    gitIn(work, 'push', '--quiet', 'origin', 'HEAD:main');
    const second = await run(settings, { repo: repo.url, steps: [{ name: 'look', run: 'git log --format=%s > $ASP_ARTIFACTS/log.txt' }] });
    expect(readFileSync(path.join(second.result.workspacePath, '.asp', 'log.txt'), 'utf8')).toBe('second commit\ninitial commit\n');
    expect(readdirSync(path.join(settings.home, 'mirrors'))).toEqual(mirrors);
    expect(trace(second.result).trace.metadata.target_repo).toBe(repo.url);
  });

  it('makes shallow and partial clones when asked', async () => {
    const repo = upstream(true);
    const work = path.join(mkdtempSync(path.join(os.tmpdir(), 'asp-up-')), 'w');
    gitIn(os.tmpdir(), 'clone', '--quiet', repo.url, work);
    for (const n of [1, 2, 3]) {
      writeFileSync(path.join(work, `f${n}.md`), `${n}\n`);
      gitIn(work, 'add', '-A');
      gitIn(work, 'commit', '--quiet', '-m', `commit ${n}`);
    }
    gitIn(work, 'push', '--quiet', 'origin', 'HEAD:main');
    const { result } = await run(settings, {
      repo: repo.url,
      clone: { depth: 1, filter: 'blob:none' },
      steps: [{ name: 'count', run: 'git rev-list --count HEAD > $ASP_ARTIFACTS/count.txt' }],
    });
    expect(result.exitCode).toBe(0);
    expect(readFileSync(path.join(result.workspacePath, '.asp', 'count.txt'), 'utf8').trim()).toBe('1');
  });

  it('delivers a multi-repo task: each repository bundled and pushed on its own, the PRs linking each other', async () => {
    const api = upstream(true, { 'README.md': 'api\n' });
    const web = upstream(true, { 'README.md': 'web\n' });
    const edits = 'echo "api change" >> README.md && echo "web change" >> ../repos/web/README.md && echo new > ../repos/web/NEW.md';
    const { result } = await run(settings, { repo: api.url, repos: [{ name: 'web', repo: web.url }], task: 'Change both', steps: [{ name: 'edit', run: edits }], pr: true });
    expect(result.exitCode).toBe(0);
    expect(result.change?.filesChanged).toBe(1);
    expect(result.repos).toEqual([expect.objectContaining({ name: 'web', repo: web.url, change: expect.objectContaining({ commits: 1, filesChanged: 2 }) })]);
    expect(result.artifacts).toEqual(expect.arrayContaining(['change.bundle', 'changes/web.bundle', 'changes/web.patch']));
    expect(gitIn(api.bare, 'show', `asp/${result.taskId}:README.md`)).toBe('api\napi change');
    expect(gitIn(web.bare, 'show', `asp/${result.taskId}:NEW.md`)).toBe('new');
    const apiPull = github.pulls.find((entry) => entry.name === api.name);
    const webPull = github.pulls.find((entry) => entry.name === web.name);
    expect(apiPull?.body).toContain(`## Related pull requests (same task)`);
    expect(apiPull?.body).toContain(`org/${web.name}: https://github.example/org/${web.name}/pull/`);
    expect(webPull?.body).toContain(`org/${api.name}: https://github.example/org/${api.name}/pull/`);
    const metadata = trace(result).trace.metadata;
    expect(metadata.pr_url).toContain(`/org/${api.name}/pull/`);
    expect(metadata.related_pr_urls).toEqual([expect.stringContaining(`/org/${web.name}/pull/`)]);
    expect(existsSync(path.join(result.workspacePath, 'repos'))).toBe(false);
  });

  it('holds every repository of a multi-repo task at the gate, and asp approve delivers them all', async () => {
    const api = upstream(true, { 'README.md': 'api\n' });
    const web = upstream(true, { 'README.md': 'web\n' });
    const edits = 'echo a >> README.md && echo w >> ../repos/web/README.md';
    const { result } = await run(settings, { repo: api.url, repos: [{ name: 'web', repo: web.url }], steps: [{ name: 'edit', run: edits }], hitl: true, push: true });
    expect(result.status).toBe('awaiting_approval');
    expect(existsSync(path.join(result.workspacePath, 'repos', 'web'))).toBe(true);
    await approveTask(result.taskId, { deny: false }, { settings, log: silentLog, warn: () => {} });
    expect(gitIn(api.bare, 'show', `asp/${result.taskId}:README.md`)).toBe('api\na');
    expect(gitIn(web.bare, 'show', `asp/${result.taskId}:README.md`)).toBe('web\nw');
    expect(existsSync(path.join(result.workspacePath, 'repos', 'web'))).toBe(false);
    expect(existsSync(path.join(result.workspacePath, 'repo'))).toBe(false);
  });

  /** A bare upstream and a working clone of it, as a developer has them: --repo names the clone. */
  function workingClone(): { upstream: string; clone: string } {
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'asp-working-clone-'));
    const upstream = path.join(scratch, 'upstream.git');
    const clone = path.join(scratch, 'clone');
    gitIn(scratch, 'clone', '-q', '--bare', repoWith({ 'README.md': 'app\n' }), upstream);
    gitIn(scratch, 'clone', '-q', upstream, clone);
    return { upstream, clone };
  }

  it("--push from a local working clone pushes to the clone's origin, and the summary says where", async () => {
    const { upstream, clone } = workingClone();
    const id = `push-origin-${process.pid}`;
    const ran = await asp(['run', '--repo', clone, '--id', id, '--step', 'edit=echo fixed >> README.md', '--push'], cliEnv());
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stderr).toContain(`  pushed: branch asp/${id} to ${upstream}\n`);
    expect(gitIn(upstream, 'show', `asp/${id}:README.md`)).toBe('app\nfixed');
    // Not into the working clone itself.
    expect(() => gitIn(clone, 'rev-parse', '--verify', '--quiet', `refs/heads/asp/${id}`)).toThrow();
  });

  it('--push-to names another place: the path of the clone itself here', async () => {
    const { upstream, clone } = workingClone();
    const id = `push-to-${process.pid}`;
    const ran = await asp(['run', '--repo', clone, '--id', id, '--step', 'edit=echo fixed >> README.md', '--push', '--push-to', clone, '--json'], cliEnv());
    expect(ran.code, ran.stderr).toBe(0);
    expect(JSON.parse(ran.stdout)).toMatchObject({ delivery: { pushedTo: clone } });
    expect(gitIn(clone, 'show', `asp/${id}:README.md`)).toBe('app\nfixed');
    expect(() => gitIn(upstream, 'rev-parse', '--verify', '--quiet', `refs/heads/asp/${id}`)).toThrow();
  });

  it('refuses --push-to without --push, and a remote the clone does not have, in one line (exit 2) before anything runs', async () => {
    const { clone } = workingClone();
    const dirs = () => (existsSync(settings.workspacesRoot) ? readdirSync(settings.workspacesRoot).length : 0);
    const before = dirs();
    const alone = await asp(['run', '--repo', clone, '--step', 'edit=true', '--push-to', 'origin'], cliEnv());
    expect([alone.code, alone.stderr.trim().split('\n')]).toEqual([2, ['asp: error: --push-to without --push — add --push (or --pr), or leave out --push-to']]);
    const unknown = await asp(['run', '--repo', clone, '--step', 'edit=true', '--push', '--push-to', 'upstream'], cliEnv());
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toEqual([
      `asp: error: --push-to: ${clone} has no remote named upstream (its remotes: origin) — give it a remote of the --repo clone, a git URL or the path of a repository`,
    ]);
    // Nothing ran: no task dir was claimed.
    expect(dirs()).toBe(before);
  });

  it('never runs code from a hostile .git/config on the host, also while pushing', async () => {
    const markers = mkdtempSync(path.join(os.tmpdir(), 'asp-markers-'));
    const source = repoWith({ 'README.md': 'app\n', '.gitattributes': '* filter=evil\n' });
    gitIn(source, 'config', 'core.fsmonitor', `touch ${markers}/fsmonitor`);
    gitIn(source, 'config', 'core.hooksPath', markers);
    gitIn(source, 'config', 'filter.evil.smudge', `sh -c 'touch ${markers}/smudge; cat'`);
    gitIn(source, 'config', 'filter.evil.clean', `sh -c 'touch ${markers}/clean; cat'`);
    writeFileSync(path.join(markers, 'post-checkout'), `#!/bin/sh\ntouch ${markers}/hook\n`, { mode: 0o755 });
    writeFileSync(path.join(markers, 'pre-push'), `#!/bin/sh\ntouch ${markers}/hook\n`, { mode: 0o755 });
    // The sandbox also writes the same traps into its own .git/config before its changes come back.
    const traps = `git config core.fsmonitor "touch ${markers}/sandbox-fsmonitor" && git config core.hooksPath /tmp && echo x >> README.md`;
    // asp clones from it, and pushes back into it: the pre-push hook would run if asp's clone took the source's config.
    const { result } = await run(settings, { repo: source, steps: [{ name: 'trap', run: traps }], push: true });
    expect(result.exitCode).toBe(0);
    expect(result.change?.commits).toBe(1);
    expect(gitIn(source, 'rev-parse', '--verify', `asp/${result.taskId}`)).toBe(result.change?.head);
    // Only the two hook files the test wrote: no marker from fsmonitor, a hook or a filter.
    expect(readdirSync(markers).sort()).toEqual(['post-checkout', 'pre-push']);
  });
});
