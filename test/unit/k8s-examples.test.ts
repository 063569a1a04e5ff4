import { readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { Job } from 'kubernetes-models/batch/v1';
import { PersistentVolumeClaim, ServiceAccount } from 'kubernetes-models/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { REQUIRED_PERMISSIONS } from '../../src/k8s/k8s-backend.js';

const examples = path.resolve(import.meta.dirname, '..', '..', 'examples', 'k8s');
const documents = (file: string) => yaml.loadAll(readFileSync(path.join(examples, file), 'utf8')) as Array<{ kind: string; metadata: { name: string } }>;
const MODELS: Record<string, new (data: never) => { validate(): void }> = { Job, PersistentVolumeClaim, ServiceAccount, Role, RoleBinding };

describe('examples/k8s', () => {
  it.each(['rbac.yaml', 'batch-indexed-job.yaml'])('%s holds only objects the Kubernetes API schemas accept', (file) => {
    const found = documents(file);
    expect(found.length).toBeGreaterThan(0);
    for (const document of found) {
      const Model = MODELS[document.kind];
      expect(Model, document.kind).toBeDefined();
      expect(() => new Model!(document as never).validate(), `${file}: ${document.kind} ${document.metadata.name}`).not.toThrow();
    }
  });

  it('the Role grants exactly the verbs asp asks for, no more', () => {
    const role = documents('rbac.yaml').find((document) => document.kind === 'Role') as unknown as { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> };
    const granted = role.rules.flatMap((rule) => rule.resources.flatMap((resource) => rule.verbs.map((verb) => `${rule.apiGroups[0]}|${resource}|${verb}`))).sort();
    const needed = REQUIRED_PERMISSIONS.map((need) => `${need.group}|${need.resource}${need.subresource ? `/${need.subresource}` : ''}|${need.verb}`).sort();
    expect(granted).toEqual(needed);
  });

  it('the Indexed Job shards the list by its completion index', () => {
    const job = documents('batch-indexed-job.yaml').find((document) => document.kind === 'Job') as unknown as {
      spec: { completionMode: string; completions: number; template: { spec: { containers: Array<{ args: string[] }> } } };
    };
    expect(job.spec.completionMode).toBe('Indexed');
    expect(job.spec.template.spec.containers[0]?.args.join(' ')).toContain(`--shard "$JOB_COMPLETION_INDEX/${job.spec.completions}"`);
  });
});
