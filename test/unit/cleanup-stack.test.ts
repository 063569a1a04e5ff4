import { describe, expect, it } from 'vitest';
import { CleanupStack, type CleanupFailure } from '../../src/core/cleanup-stack.js';

/** A stack whose undos write to `undone`, and whose failures are heard in `heard`. */
function recorded() {
  const undone: string[] = [];
  const heard: string[] = [];
  const stack = new CleanupStack((failure: CleanupFailure) => heard.push(`${failure.what}: ${String(failure.error)}`));
  const undo = (what: string) => () => {
    undone.push(what);
  };
  return { stack, undone, heard, undo };
}

describe('cleanup stack', () => {
  it('undoes the keepable entries early when asked (newest first), and a disposal then waits for them, in their place', async () => {
    const { stack, undone, heard, undo } = recorded();
    let finishVolume: (() => void) | undefined;
    stack.defer('workspace claim', undo('workspace claim'));
    stack.defer('volume', () => new Promise<void>((resolve) => (finishVolume = () => (undone.push('volume'), resolve()))), { keepable: true });
    stack.defer('container', () => Promise.reject(new Error('engine gone')), { keepable: true });
    stack.defer('events file', undo('events file'));
    stack.undoKeepableNow();
    // The container's undo ran (and failed) at once; the volume's is under way.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(heard).toEqual(['container: Error: engine gone']);
    expect(stack.pending).toEqual(['workspace claim', 'volume, container', 'events file']);
    stack.undoKeepableNow();
    const disposed = stack.dispose();
    await new Promise((resolve) => setTimeout(resolve, 5));
    // The events file went; the workspace claim waits until the volume is gone.
    expect(undone).toEqual(['events file']);
    finishVolume?.();
    await disposed;
    expect(undone).toEqual(['events file', 'volume', 'workspace claim']);
    expect(heard).toEqual(['container: Error: engine gone']);
  });

  it('undoes what was deferred newest first', async () => {
    const { stack, undone, undo } = recorded();
    stack.defer('workspace claim', undo('workspace claim'));
    stack.defer('volume', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      undone.push('volume');
    });
    stack.defer('container', undo('container'));

    expect(stack.pending).toEqual(['workspace claim', 'volume', 'container']);
    await stack.dispose();
    expect(undone).toEqual(['container', 'volume', 'workspace claim']);
    expect(stack.pending).toEqual([]);
  });

  it('undoes nothing twice: a second dispose and the end of an `await using` scope return the first failures', async () => {
    const { stack, undone, heard, undo } = recorded();
    const refused = new Error('refused');
    {
      await using scoped = stack;
      scoped.defer('volume', undo('volume'));
      scoped.defer('container', () => {
        undone.push('container');
        throw refused;
      });
      const first = await scoped.dispose();
      expect(first).toEqual([{ what: 'container', error: refused }]);
      expect(await scoped.dispose()).toBe(first);
    }
    expect(undone).toEqual(['container', 'volume']);
    expect(heard).toEqual(['container: Error: refused']);
  });

  it('reports a failing undo to onFailure, runs the rest, and never throws', async () => {
    const { stack, undone, heard, undo } = recorded();
    stack.defer('volume', undo('volume'));
    stack.defer('container', async () => {
      throw new Error('daemon gone');
    });
    stack.defer('events file', undo('events file'));

    const failures = await stack.dispose();
    expect(failures.map((failure) => failure.what)).toEqual(['container']);
    expect(heard).toEqual(['container: Error: daemon gone']);
    expect(undone).toEqual(['events file', 'volume']);
  });

  it('with keep, leaves the keepable entries alone and undoes the others', async () => {
    const { stack, undone, undo } = recorded();
    stack.defer('workspace claim', undo('workspace claim'));
    stack.defer('volume', undo('volume'), { keepable: true });
    stack.defer('container', undo('container'), { keepable: true });
    stack.defer('events file', undo('events file'));

    await stack.dispose({ keep: true });
    expect(undone).toEqual(['events file', 'workspace claim']);
  });

  it('without keep, undoes the keepable entries too', async () => {
    const { stack, undone, undo } = recorded();
    stack.defer('volume', undo('volume'), { keepable: true });
    stack.defer('events file', undo('events file'));

    await stack.dispose();
    expect(undone).toEqual(['events file', 'volume']);
  });

  it('undoes at once what is deferred after disposal (a creation that was in flight), after what was disposed', async () => {
    const { stack, undone, heard, undo } = recorded();
    stack.defer('events file', async () => {
      // Deferred while the disposal runs: waits for it, then goes too.
      stack.defer('late volume', undo('late volume'));
      await new Promise((resolve) => setTimeout(resolve, 5));
      undone.push('events file');
    });
    stack.defer('container', undo('container'));
    await stack.dispose();
    await stack.dispose();
    expect(undone).toEqual(['container', 'events file', 'late volume']);

    stack.defer('late container', () => {
      undone.push('late container');
      throw new Error('gone wrong');
    });
    await stack.dispose();
    expect(undone.at(-1)).toBe('late container');
    // Its failure is still heard, though the disposal it missed has long returned.
    expect(heard).toEqual(['late container: Error: gone wrong']);
  });

  it('keeps what is deferred after a disposal with keep, whatever a later dispose asks', async () => {
    const { stack, undone, undo } = recorded();
    await stack.dispose({ keep: true });
    await stack.dispose();
    stack.defer('late container', undo('late container'), { keepable: true });
    stack.defer('late events file', undo('late events file'));
    await stack.dispose();
    await new Promise((resolve) => setImmediate(resolve));

    expect(undone).toEqual(['late events file']);
  });

  it('disposes at the end of an `await using` scope, also one left by a throw', async () => {
    const { stack, undone, undo } = recorded();
    const scope = async () => {
      await using scoped = stack;
      scoped.defer('container', undo('container'));
      expect(undone).toEqual([]);
      throw new Error('the phase failed');
    };

    await expect(scope()).rejects.toThrow('the phase failed');
    expect(undone).toEqual(['container']);
  });
});
