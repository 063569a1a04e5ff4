import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The house as drawn from its imports (DESIGN.md, Layout): one room per concern, the ground floor (src/core/) under
 * everything, and Docker behind its own door. These read the sources, so a new arrow that runs back up fails here,
 * in review, rather than in the next refactor.
 */
const SRC = path.resolve('src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Each relative import of a file under src/, as the folder (room) it comes from and the one it goes to. */
function arrows(): Array<{ file: string; from: string; to: string }> {
  return sourceFiles(SRC).flatMap((file) => {
    const from = path.relative(SRC, file).split(path.sep)[0] ?? '';
    return [...readFileSync(file, 'utf8').matchAll(/from '(\.{1,2}\/[^']+)'/g)].flatMap((match) => {
      const target = path.relative(SRC, path.resolve(path.dirname(file), match[1] ?? ''));
      const to = target.split(path.sep)[0] ?? '';
      return to && !to.startsWith('..') && !to.endsWith('.js') && to !== from ? [{ file: path.relative(SRC, file), from, to }] : [];
    });
  });
}

describe('the layout', () => {
  it('has no folder that imports, directly or through others, a folder that imports it back', () => {
    const next = new Map<string, Set<string>>();
    for (const { from, to } of arrows()) next.set(from, (next.get(from) ?? new Set()).add(to));
    const cycles: string[] = [];
    const walk = (start: string, at: string, trail: string[]) => {
      for (const to of next.get(at) ?? []) {
        if (to === start) cycles.push([...trail, to].join(' → '));
        else if (!trail.includes(to)) walk(start, to, [...trail, to]);
      }
    };
    for (const room of next.keys()) walk(room, room, [room]);
    expect(cycles).toEqual([]);
  });

  it('keeps the ground floor free of every other room', () => {
    expect(arrows().filter((arrow) => arrow.from === 'core')).toEqual([]);
  });

  it('lets only the Docker backend itself and the CLI that builds it import src/docker/', () => {
    const outside = arrows().filter((arrow) => arrow.to === 'docker' && arrow.from !== 'cli');
    expect(outside).toEqual([]);
  });

  it('has the supervisor, the reaper and batch reach sandboxes through the backend seam only', () => {
    const engines = new Set(['docker', 'k8s']);
    const direct = arrows().filter((arrow) => ['supervisor', 'reaper', 'batch'].includes(arrow.from) && engines.has(arrow.to));
    expect(direct).toEqual([]);
    expect(arrows().some((arrow) => arrow.from === 'supervisor' && arrow.to === 'backend')).toBe(true);
  });

  it('runs delivery after the run: the supervisor never imports delivery', () => {
    expect(arrows().filter((arrow) => arrow.from === 'supervisor' && arrow.to === 'delivery')).toEqual([]);
  });
});
