/**
 * The API server's error bodies: `Status` objects with the reason, code and details kube-apiserver gives, and messages
 * worded as it words them (k8s.io/apimachinery/pkg/api/errors), so a client's error handling meets what a cluster says.
 */
export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
}

export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** A resource as the API names it: `pods` in the core group, `networkpolicies` in networking.k8s.io. */
export interface ResourceName {
  group: string;
  plural: string;
  /** The kind, for Invalid (which names it: `Pod "x" is invalid`). */
  kind: string;
}

export const RESOURCES = {
  pods: { group: '', plural: 'pods', kind: 'Pod' },
  namespaces: { group: '', plural: 'namespaces', kind: 'Namespace' },
  networkpolicies: { group: 'networking.k8s.io', plural: 'networkpolicies', kind: 'NetworkPolicy' },
  runtimeclasses: { group: 'node.k8s.io', plural: 'runtimeclasses', kind: 'RuntimeClass' },
} as const satisfies Record<string, ResourceName>;

/** Thrown by a handler; the server answers with its Status. */
export class KubeError extends Error {
  constructor(readonly status: KubeStatus) {
    super(status.message);
    this.name = 'KubeError';
  }
}

function failure(code: number, reason: string, message: string, details?: StatusDetails): KubeError {
  return new KubeError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code });
}

/** `pods` or `networkpolicies.networking.k8s.io`: how messages name a resource. */
function qualified(resource: ResourceName): string {
  return resource.group ? `${resource.plural}.${resource.group}` : resource.plural;
}

function detailsOf(resource: ResourceName, name: string | undefined): StatusDetails {
  return { ...(name !== undefined ? { name } : {}), ...(resource.group ? { group: resource.group } : {}), kind: resource.plural };
}

export function notFound(resource: ResourceName, name: string): KubeError {
  return failure(404, 'NotFound', `${qualified(resource)} "${name}" not found`, detailsOf(resource, name));
}

export function alreadyExists(resource: ResourceName, name: string): KubeError {
  return failure(409, 'AlreadyExists', `${qualified(resource)} "${name}" already exists`, detailsOf(resource, name));
}

/** `why` is the part after "is forbidden: " (RBAC's sentence, or an admission plugin's). */
export function forbidden(resource: ResourceName, name: string | undefined, why: string): KubeError {
  const subject = name !== undefined ? `${qualified(resource)} "${name}"` : qualified(resource);
  return failure(403, 'Forbidden', `${subject} is forbidden: ${why}`, detailsOf(resource, name));
}

/** RBAC's sentence for a refused verb (kube-apiserver's forbiddenMessage). */
export function rbacRefusal(user: string, verb: string, resource: string, group: string, namespace: string | undefined): string {
  const scope = namespace !== undefined ? `in the namespace "${namespace}"` : 'at the cluster scope';
  return `User "${user}" cannot ${verb} resource "${resource}" in API group "${group}" ${scope}`;
}

/** 422: one message per cause, bracketed when there are several (field.ErrorList's aggregate). */
export function invalid(resource: ResourceName, name: string, causes: StatusCause[]): KubeError {
  const parts = causes.map((cause) => (cause.field ? `${cause.field}: ${cause.message}` : cause.message));
  const listed = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`;
  return failure(422, 'Invalid', `${resource.kind} "${name}" is invalid: ${listed}`, { name, ...(resource.group ? { group: resource.group } : {}), kind: resource.kind, causes });
}

export function badRequest(message: string): KubeError {
  return failure(400, 'BadRequest', message);
}

export function unauthorized(): KubeError {
  return failure(401, 'Unauthorized', 'Unauthorized');
}

export function pathNotFound(): KubeError {
  return failure(404, 'NotFound', 'the server could not find the requested resource', {});
}

export function methodNotAllowed(): KubeError {
  return failure(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {});
}

/** A watch from a resourceVersion older than the history the server keeps. */
export function expired(message: string): KubeError {
  return failure(410, 'Expired', message);
}

/** A DELETE of an object without graceful deletion answers with this (the generic registry's success). */
export function deleted(resource: ResourceName, name: string, uid: string | undefined): KubeStatus {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { ...detailsOf(resource, name), ...(uid ? { uid } : {}) }, code: 200 };
}

/** A cause for a 422, as field.Error words it. */
export const cause = {
  required: (field: string, detail?: string): StatusCause => ({ reason: 'FieldValueRequired', message: detail ? `Required value: ${detail}` : 'Required value', field }),
  invalid: (field: string, value: unknown, detail: string): StatusCause => ({ reason: 'FieldValueInvalid', message: `Invalid value: ${shown(value)}: ${detail}`, field }),
  notSupported: (field: string, value: unknown, supported: string[], note?: string): StatusCause => ({
    reason: 'FieldValueNotSupported',
    message: `Unsupported value: ${shown(value)}: supported values: ${supported.map((entry) => `"${entry}"`).join(', ')}${note ? ` (${note})` : ''}`,
    field,
  }),
  forbidden: (field: string, detail: string): StatusCause => ({ reason: 'FieldValueForbidden', message: `Forbidden: ${detail}`, field }),
  duplicate: (field: string, value: unknown): StatusCause => ({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${shown(value)}`, field }),
  notFound: (field: string, value: unknown): StatusCause => ({ reason: 'FieldValueNotFound', message: `Not found: ${shown(value)}`, field }),
};

function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value) ?? 'null';
}
