import type { ServerResponse } from 'node:http';
import { expired, type KubeStatus } from './api-status.js';

/**
 * resourceVersions and watches: one counter for every object (as etcd's revision is), a bounded history of changes
 * for a watch that starts from a resourceVersion, and the open watch streams, each a chunked answer of one JSON event
 * per line.
 */
export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface VersionedObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

interface Change {
  version: number;
  type: EventType;
  resource: string;
  namespace: string;
  object: VersionedObject;
}

interface Watcher {
  resource: string;
  namespace: string;
  matches: (object: VersionedObject) => boolean;
  response: ServerResponse;
  timer: NodeJS.Timeout;
}

/** How many changes a watch can start behind; an older resourceVersion gets 410 Expired, as after a compaction. */
const HISTORY = 5000;

export class ObjectFeed {
  private counter = 0;
  private readonly history: Change[] = [];
  private readonly watchers = new Set<Watcher>();

  /** The newest resourceVersion (a list's metadata.resourceVersion). */
  get version(): string {
    return String(this.counter);
  }

  /** Gives the object the next resourceVersion. */
  stamp<T extends VersionedObject>(object: T): T {
    this.counter += 1;
    object.metadata = { ...object.metadata, resourceVersion: String(this.counter) };
    return object;
  }

  /** Records a change (the object already stamped) and sends it to every watch it matches. */
  publish(type: EventType, resource: string, namespace: string, object: VersionedObject): void {
    const copy = structuredClone(object);
    const change: Change = { version: Number(copy.metadata?.resourceVersion ?? this.counter), type, resource, namespace, object: copy };
    this.history.push(change);
    if (this.history.length > HISTORY) this.history.shift();
    for (const watcher of this.watchers) if (this.concerns(watcher, change)) send(watcher.response, type, copy);
  }

  /**
   * Starts a watch on `response`. Without a resourceVersion (or with "0") it begins with an ADDED for each object that
   * matches now, as a list followed by a watch would; with one, it replays the changes after it.
   */
  watch(
    response: ServerResponse,
    spec: { resource: string; namespace: string; matches: (object: VersionedObject) => boolean; resourceVersion: string | undefined; timeoutSeconds: number; current: () => VersionedObject[] },
  ): void {
    response.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    response.flushHeaders();
    const timer = setTimeout(() => this.end(watcher), spec.timeoutSeconds * 1000);
    const watcher: Watcher = { resource: spec.resource, namespace: spec.namespace, matches: spec.matches, response, timer };
    const from = spec.resourceVersion === undefined || spec.resourceVersion === '' || spec.resourceVersion === '0' ? undefined : Number(spec.resourceVersion);
    if (from === undefined) {
      for (const object of spec.current()) if (spec.matches(object)) send(response, 'ADDED', structuredClone(object));
    } else {
      // Only once the history has dropped changes can a resourceVersion be older than what it still holds.
      const oldest = this.history.length >= HISTORY ? (this.history[0]?.version ?? 0) : 0;
      if (!Number.isInteger(from) || from < oldest - 1) {
        sendError(response, expired(`too old resource version: ${spec.resourceVersion} (${Math.max(oldest - 1, 0)})`).status);
        clearTimeout(timer);
        response.end();
        return;
      }
      for (const change of this.history) if (change.version > from && this.concerns(watcher, change)) send(response, change.type, change.object);
    }
    this.watchers.add(watcher);
    response.on('close', () => this.end(watcher));
  }

  /** Ends every open watch (the server is closing). */
  closeAll(): void {
    for (const watcher of [...this.watchers]) this.end(watcher);
  }

  private concerns(watcher: Watcher, change: Change): boolean {
    return watcher.resource === change.resource && watcher.namespace === change.namespace && watcher.matches(change.object);
  }

  private end(watcher: Watcher): void {
    clearTimeout(watcher.timer);
    if (!this.watchers.delete(watcher) && watcher.response.writableEnded) return;
    if (!watcher.response.writableEnded) watcher.response.end();
  }
}

function send(response: ServerResponse, type: EventType, object: VersionedObject): void {
  if (!response.writableEnded) response.write(`${JSON.stringify({ type, object })}\n`);
}

function sendError(response: ServerResponse, status: KubeStatus): void {
  response.write(`${JSON.stringify({ type: 'ERROR', object: status })}\n`);
}
