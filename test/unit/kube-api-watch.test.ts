import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { KubeApi } from '../../src/k8s/kube-api.js';

// A watch the server holds open and never writes to, as an API server does for a pod that stays Pending.
let server: http.Server;
let api: KubeApi;
let watches = 0;
beforeAll(async () => {
  server = http.createServer((request, response) => {
    watches += 1;
    response.writeHead(200, { 'Content-Type': 'application/json' });
    response.flushHeaders();
    request.on('close', () => response.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  api = new KubeApi({ server: `http://127.0.0.1:${port}`, source: 'test', context: 'test', namespace: 'asp', authorize: async () => {} }, 5_000);
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const purpose = { verb: 'watch', resource: 'pods' } as const;
const pods = '/api/v1/namespaces/asp/pods';

describe('a watch and an interrupt', () => {
  it('a signal aborted before the watch is asked for ends it at once (an interrupt between the read and the watch)', async () => {
    const abort = new AbortController();
    abort.abort();
    const started = performance.now();
    const before = watches;
    await expect(api.watch(pods, {}, purpose, z.unknown(), () => false, abort.signal, 60_000)).resolves.toBe(true);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(watches).toBe(before);
  });

  it('a signal aborted once the server answered with headers ends the watch as done', async () => {
    const abort = new AbortController();
    const before = watches;
    const watching = api.watch(pods, {}, purpose, z.unknown(), () => false, abort.signal, 60_000);
    while (watches === before) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 50));
    abort.abort();
    await expect(watching).resolves.toBe(true);
  });

  it('a watch nobody aborts runs to its client bound (false: watch again)', async () => {
    await expect(api.watch(pods, {}, purpose, z.unknown(), () => false, undefined, 300)).resolves.toBe(false);
  });
});
