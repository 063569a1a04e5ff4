import { describe, expect, it } from 'vitest';
import { commitMessage, SUBJECT_MAX_CHARS } from '../../sandbox/change-bundle.js';

const subjectOf = (message: string) => message.split('\n')[0] ?? '';
const bodyOf = (message: string) => message.split('\n').slice(2).join('\n');

describe('the commit message of a task', () => {
  it('is the task itself when it is one short line, with no body', () => {
    expect(commitMessage('Fix the auth bug', 'auth-fix')).toBe('asp: Fix the auth bug\n');
  });

  it('is named after the task id when there is no task text', () => {
    expect(commitMessage('  \n', 'auth-fix')).toBe('asp: auth-fix\n');
  });

  it('cuts a long first line at a word, ends it with an ellipsis, and keeps the whole task in the body', () => {
    const task = 'Refactor the authentication middleware so that expired refresh tokens are rejected before the session lookup, and add tests';
    const message = commitMessage(task, 'auth');
    const subject = subjectOf(message);
    expect(Array.from(subject).length).toBeLessThanOrEqual(SUBJECT_MAX_CHARS);
    expect(subject).toBe('asp: Refactor the authentication middleware so that expired refresh…');
    // Cut where a word ends: what comes before the ellipsis is a prefix of the task ending at a space.
    const kept = subject.slice('asp: '.length, -1);
    expect(task.startsWith(`${kept} `)).toBe(true);
    expect(bodyOf(message)).toBe(`${task}\n`);
  });

  it('makes the subject of the first line of a many-line task and keeps every line in the body', () => {
    const task = 'Fix the flaky test\n\n- it times out on CI\n# not a comment: kept\n';
    const message = commitMessage(task, 'flaky');
    expect(subjectOf(message)).toBe('asp: Fix the flaky test');
    expect(bodyOf(message)).toBe('Fix the flaky test\n\n- it times out on CI\n# not a comment: kept\n');
  });

  it('cuts one word longer than the subject where it must, and never splits a character in two', () => {
    const message = commitMessage('é'.repeat(200), 'long');
    const subject = subjectOf(message);
    expect(Array.from(subject)).toHaveLength(SUBJECT_MAX_CHARS);
    expect(subject.endsWith('é…')).toBe(true);
    const emoji = subjectOf(commitMessage('😀'.repeat(100), 'emoji'));
    expect(emoji).toBe(`asp: ${'😀'.repeat(SUBJECT_MAX_CHARS - 6)}…`);
  });
});
