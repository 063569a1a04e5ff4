/** Errors are values with a code; the CLI maps each code to an exit code and a one-line message in one place. */
export type AspErrorCode =
  | 'BAD_INPUT' // a flag, a task spec, a pipeline file
  | 'REPO_NOT_FOUND' // the repository or ref does not exist or cannot be read
  | 'DOCKER_UNAVAILABLE' // no daemon answers
  | 'DOCKER_FAILED' // the daemon answered with an error
  | 'DOCKER_CONFLICT' // the daemon refused because the object is in use (409), e.g. a volume a container still mounts
  | 'IMAGE_UNAVAILABLE' // the sandbox image is missing and cannot be built
  | 'RUNTIME_UNAVAILABLE' // --runtime names a runtime the daemon does not have
  | 'HARDENING_IGNORED' // the engine made the sandbox without a hardening field or the runtime asp asked for
  | 'WORKSPACE_FAILED' // the host workspace cannot be made or written
  | 'PROTOCOL_MISMATCH' // the sandbox speaks another protocol version
  | 'NOT_FOUND' // a task, trace or workspace asked for by name does not exist
  | 'FORGE_FAILED' // the code host (GitHub API) refused or did not answer
  | 'K8S_UNAVAILABLE' // the Kubernetes API server does not answer, or asp cannot authenticate to it
  | 'K8S_FORBIDDEN' // the API server refused a verb (RBAC): the message names the verb and the resource
  | 'K8S_FAILED' // the API server or the kubelet answered with another error
  | 'PUSH_REJECTED'; // the remote refused the branch (non-fast-forward, no permission): the work is kept

export class AspError extends Error {
  constructor(
    readonly code: AspErrorCode,
    message: string,
    /** What the user should do about it; shown after the message. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AspError';
  }
}

/** Exit codes of DESIGN.md: the contract CI scripts depend on. */
export const EXIT = {
  ok: 0,
  taskFailed: 1,
  badInput: 2,
  infrastructure: 3,
  deadline: 124,
  interrupted: 130,
} as const;

export function exitCodeFor(code: AspErrorCode): number {
  switch (code) {
    case 'BAD_INPUT':
    case 'REPO_NOT_FOUND':
    case 'NOT_FOUND':
      return EXIT.badInput;
    case 'PUSH_REJECTED':
      return EXIT.taskFailed;
    case 'FORGE_FAILED':
    case 'K8S_UNAVAILABLE':
    case 'K8S_FORBIDDEN':
    case 'K8S_FAILED':
      return EXIT.infrastructure;
    case 'DOCKER_UNAVAILABLE':
    case 'DOCKER_FAILED':
    case 'DOCKER_CONFLICT':
    case 'IMAGE_UNAVAILABLE':
    case 'RUNTIME_UNAVAILABLE':
    case 'HARDENING_IGNORED':
    case 'WORKSPACE_FAILED':
    case 'PROTOCOL_MISMATCH':
      return EXIT.infrastructure;
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The `code` of a Node system error (`ENOENT`, `EEXIST`, ...), or undefined when the error carries none. */
export function systemErrorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}
