import type { IncomingMessage } from 'node:http';

/** What a Docker 20.10 says of itself on GET /version: the stand-in daemons of the unit tests answer this. */
export const DOCKER_20_VERSION = { Version: '20.10.24', ApiVersion: '1.41', MinAPIVersion: '1.12', Os: 'linux', Arch: 'amd64', Components: [{ Name: 'Engine' }] };

/**
 * "METHOD /path" of a request, without the query and without the API version every path but the first /version
 * carries (`/v1.41/containers/create` → `POST /containers/create`).
 */
export function routeOf(request: IncomingMessage): string {
  return `${request.method} ${(request.url ?? '').split('?')[0]?.replace(/^\/v\d+\.\d+\//, '/')}`;
}
