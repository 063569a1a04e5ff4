import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findKubeTarget } from '../../src/k8s/kube-config.js';
import { KubeApi } from '../../src/k8s/kube-api.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'asp-kubeconfig-'));
const file = (name: string, text: string) => {
  const at = path.join(dir, name);
  writeFileSync(at, text);
  return at;
};
const clusters = file(
  'clusters.yaml',
  `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: { server: "https://prod.example:6443/" }
- name: kind
  cluster: { server: "https://127.0.0.1:40001" }
users:
- name: ci
  user: { token: "t0ken" }
contexts:
- name: prod
  context: { cluster: prod, user: ci, namespace: agents }
- name: kind-asp
  context: { cluster: kind, user: ci }
`,
);
const current = file('current.yaml', 'apiVersion: v1\nkind: Config\ncurrent-context: kind-asp\n');

describe('finding the cluster as kubectl does', () => {
  it('merges the files KUBECONFIG lists: the current context may come from any of them', async () => {
    const target = await findKubeTarget({ KUBECONFIG: `${clusters}:${current}`, HOME: dir });
    expect(target).toMatchObject({ server: 'https://127.0.0.1:40001', context: 'kind-asp', namespace: 'default' });
    expect(target.source).toBe(`KUBECONFIG ${clusters}:${current}, context kind-asp`);
  });

  it('a name two files define is the first file’s, as with kubectl (client-node alone would throw on it)', async () => {
    const shadow = file('shadow.yaml', 'apiVersion: v1\nkind: Config\nclusters:\n- name: kind\n  cluster: { server: "https://shadow.example" }\ncurrent-context: kind-asp\n');
    expect((await findKubeTarget({ KUBECONFIG: `${clusters}:${shadow}` })).server).toBe('https://127.0.0.1:40001');
  });

  it('ASP_K8S_CONTEXT picks another context, with its namespace; the trailing slash of a server goes', async () => {
    const target = await findKubeTarget({ KUBECONFIG: `${clusters}:${current}` }, 'prod');
    expect(target).toMatchObject({ server: 'https://prod.example:6443', context: 'prod', namespace: 'agents' });
  });

  it('puts the credentials on a request', async () => {
    const target = await findKubeTarget({ KUBECONFIG: `${clusters}:${current}` });
    const options: { headers: Record<string, string> } = { headers: {} };
    await target.authorize(options);
    expect(options.headers.Authorization).toBe('Bearer t0ken');
  });

  it('~/.kube/config when KUBECONFIG is unset', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'asp-kubehome-'));
    const { mkdirSync, copyFileSync, readFileSync } = await import('node:fs');
    mkdirSync(path.join(home, '.kube'));
    copyFileSync(clusters, path.join(home, '.kube', 'config'));
    writeFileSync(path.join(home, '.kube', 'config'), readFileSync(clusters, 'utf8') + 'current-context: prod\n');
    expect(await findKubeTarget({ HOME: home })).toMatchObject({ context: 'prod', source: `kubeconfig ${path.join(home, '.kube', 'config')}, context prod` });
  });

  it('says what is wrong: no file, an unknown context, no current context, a file that is not YAML', async () => {
    await expect(findKubeTarget({ HOME: dir })).rejects.toThrow(/^no kubeconfig: .*\.kube\/config does not exist and asp does not run in a cluster$/);
    await expect(findKubeTarget({ KUBECONFIG: `${clusters}:${current}` }, 'staging')).rejects.toThrow('the kubeconfig has no context "staging" (it has: prod, kind-asp)');
    await expect(findKubeTarget({ KUBECONFIG: clusters })).rejects.toThrow(/has no current context with a cluster/);
    await expect(findKubeTarget({ KUBECONFIG: file('broken.yaml', 'clusters: [\n') })).rejects.toThrow(/^the kubeconfig .*broken\.yaml cannot be read: /);
  });
});

describe('what a 403 means', () => {
  const api = async () => new KubeApi(await findKubeTarget({ KUBECONFIG: `${clusters}:${current}` }), 1000);
  const purpose = { verb: 'create', resource: 'pods' } as const;
  const status = (message: string) => JSON.stringify({ kind: 'Status', message, code: 403 });
  it('RBAC: names the verb to grant', async () => {
    const error = (await api()).refused(403, status('pods is forbidden: User "x" cannot create resource "pods" in API group "" in the namespace "asp"'), purpose);
    expect([error.code, error.hint]).toEqual(['K8S_FORBIDDEN', 'grant "create pods" in the namespace (examples/k8s/rbac.yaml has every verb asp needs)']);
  });
  it('Pod Security: says the namespace needs the privileged level', async () => {
    const error = (await api()).refused(
      403,
      status('pods "asp-t" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "task" must not include "DAC_READ_SEARCH")'),
      purpose,
    );
    expect(error.hint).toMatch(/pod-security\.kubernetes\.io\/enforce=privileged/);
  });
  it('a quota, a RuntimeClass, another admission refusal', async () => {
    expect((await api()).refused(403, status('pods "p" is forbidden: exceeded quota: compute, requested: cpu=1'), purpose).hint).toMatch(/ResourceQuota/);
    expect((await api()).refused(403, status('pod rejected: RuntimeClass "kata" not found'), purpose).code).toBe('RUNTIME_UNAVAILABLE');
    expect((await api()).refused(403, status('admission webhook "deny.example" denied the request'), purpose).hint).toMatch(/admission policy/);
  });
});

describe('a server without a scheme', () => {
  it('is https://, as kubectl takes it; one that is no URL is said at once', async () => {
    const bare = file(
      'bare.yaml',
      'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: { server: "10.0.0.1:6443" }\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context: { cluster: c, user: u }\ncurrent-context: x\n',
    );
    expect((await findKubeTarget({ KUBECONFIG: bare })).server).toBe('https://10.0.0.1:6443');
    const broken = file(
      'broken-url.yaml',
      'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: { server: "ftp://host" }\nusers:\n- name: u\n  user: {}\ncontexts:\n- name: x\n  context: { cluster: c, user: u }\ncurrent-context: x\n',
    );
    await expect(findKubeTarget({ KUBECONFIG: broken })).rejects.toThrow(/the kubeconfig's server "ftp:\/\/host" .* is not an http\(s\) URL/);
  });
});
