import { existsSync } from 'node:fs';
import path from 'node:path';
import type { RequestOptions } from 'node:https';
import { AspError, errorMessage } from '../core/asp-error.js';

/** The in-cluster service account's files, as every pod that mounts one has them. */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Which cluster asp talks to, as it was found, and how to authenticate a request to it. */
export interface KubeTarget {
  /** The API server's URL (`https://…`), no trailing slash. */
  server: string;
  /** Where it came from: the kubeconfig file(s) and context, or the in-cluster service account. */
  source: string;
  context: string;
  /** The namespace of the context (kubectl's default when the command names none), `default` when it has none. */
  namespace: string;
  /** Adds the credentials, the CA and an agent to request options (a new token from an exec plugin each time). */
  authorize(options: RequestOptions): Promise<void>;
}

/**
 * Finds the cluster as kubectl does: `KUBECONFIG` (a list of files, merged, the first that sets the current context
 * wins), else `~/.kube/config`, else the service account of the pod asp runs in. `context` overrides the current
 * context (ASP_K8S_CONTEXT). client-node's KubeConfig reads the files and does the authentication (tokens, client
 * certificates, exec plugins, OIDC); it is loaded only when a command uses Kubernetes (it costs ~0.3 s to import).
 */
export async function findKubeTarget(env: Readonly<Record<string, string | undefined>>, context?: string): Promise<KubeTarget> {
  const { KubeConfig } = await import('@kubernetes/client-node/dist/config.js');
  const config = new KubeConfig();
  const listed = (env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  const home = env.HOME ? path.join(env.HOME, '.kube', 'config') : undefined;
  const files = listed.length ? listed.filter((file) => existsSync(file)) : home && existsSync(home) ? [home] : [];
  let source: string;
  if (files.length) {
    for (const [index, file] of files.entries()) {
      try {
        if (index === 0) config.loadFromFile(file);
        else {
          // kubectl's rule: the first file to name a cluster, user or context, or the current context, wins.
          const more = new KubeConfig();
          more.loadFromFile(file);
          if (!config.getCurrentContext() && more.getCurrentContext()) config.setCurrentContext(more.getCurrentContext());
          for (const cluster of more.getClusters()) if (!config.getCluster(cluster.name)) config.addCluster(cluster);
          for (const user of more.getUsers()) if (!config.getUser(user.name)) config.addUser(user);
          for (const entry of more.getContexts()) if (!config.getContextObject(entry.name)) config.addContext(entry);
        }
      } catch (error) {
        throw new AspError(
          'BAD_INPUT',
          `the kubeconfig ${file} cannot be read: ${errorMessage(error).split('\n')[0]}`,
          'fix the file, or point KUBECONFIG at a valid one (kubectl config view checks it)',
        );
      }
    }
    source = `${listed.length ? 'KUBECONFIG' : 'kubeconfig'} ${files.join(path.delimiter)}`;
  } else if (env.KUBERNETES_SERVICE_HOST && existsSync(path.join(SERVICE_ACCOUNT_DIR, 'token'))) {
    config.loadFromCluster();
    source = 'the in-cluster service account';
  } else {
    throw new AspError(
      'BAD_INPUT',
      listed.length
        ? `no kubeconfig: none of the files KUBECONFIG names exists (${listed.join(path.delimiter)})`
        : `no kubeconfig: ${home ?? '~/.kube/config'} does not exist and asp does not run in a cluster`,
      'point KUBECONFIG at your cluster’s kubeconfig (kind get kubeconfig > FILE), or use --backend docker',
    );
  }
  if (context) {
    if (!config.getContextObject(context)) {
      throw new AspError(
        'BAD_INPUT',
        `the kubeconfig has no context "${context}" (it has: ${
          config
            .getContexts()
            .map((entry) => entry.name)
            .join(', ') || 'none'
        })`,
        'set ASP_K8S_CONTEXT to one of those, or unset it',
      );
    }
    config.setCurrentContext(context);
  }
  const current = config.getCurrentContext();
  const cluster = config.getCurrentCluster();
  if (!current || !cluster?.server) {
    throw new AspError('BAD_INPUT', `the kubeconfig (${source}) has no current context with a cluster`, 'run kubectl config use-context NAME, or set ASP_K8S_CONTEXT');
  }
  // kubectl takes a server without a scheme as https://; one that is no URL at all is said here, not at the first call.
  const server = /^[a-z][a-z0-9+.-]*:\/\//i.test(cluster.server) ? cluster.server : `https://${cluster.server}`;
  if (!URL.canParse(server) || !/^https?:$/.test(new URL(server).protocol)) {
    throw new AspError('BAD_INPUT', `the kubeconfig's server "${cluster.server}" (${source}) is not an http(s) URL`, 'fix the cluster’s server in the kubeconfig, e.g. https://10.0.0.1:6443');
  }
  return {
    server: server.replace(/\/+$/, ''),
    source: `${source}, context ${current}`,
    context: current,
    namespace: config.getContextObject(current)?.namespace || 'default',
    authorize: async (options) => {
      try {
        await config.applyToHTTPSOptions(options);
      } catch (error) {
        throw new AspError(
          'K8S_UNAVAILABLE',
          `cannot authenticate to the Kubernetes API server ${cluster.server}: ${errorMessage(error).split('\n')[0]}`,
          'check the user of your kubeconfig context (kubectl auth whoami)',
        );
      }
    },
  };
}
