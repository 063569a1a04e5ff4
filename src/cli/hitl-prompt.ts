import { createInterface } from 'node:readline/promises';
import type { Decision, GateSummary } from '../delivery/delivery-plan.js';
import { printable } from '../core/printable.js';

/**
 * The HITL gate on a terminal: what changed, what the steps produced, the PROBE scores, then
 * approve / reject / defer. Reads stdin and writes stderr, so --json output on stdout stays clean.
 */
export async function askAtTerminal(summary: GateSummary): Promise<Decision> {
  const { change, document } = summary;
  const scores = document.scores.map((score) => `${score.name}=${Number.isInteger(score.value) ? score.value : score.value.toFixed(3)}`).join('  ');
  // The stat names files the sandbox committed, and the patch path holds the task id: escaped before printing.
  process.stderr.write(
    printable(
      [
        '',
        `asp: review ${summary.taskId} before its changes leave this machine`,
        `  ${change.commits} commit(s) on ${change.branch}: ${change.filesChanged} file(s), +${change.insertions} -${change.deletions}`,
        ...change.stat.split('\n').map((line) => `    ${line}`),
        `  patch: ${change.patch ?? '(none)'}`,
        `  scores: ${scores || '(none)'}`,
        '',
      ].join('\n'),
    ) + '\n',
  );
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    for (;;) {
      const answer = (await prompt.question('approve, reject or defer? [a/r/d] ')).trim().toLowerCase();
      if (answer === 'a' || answer === 'approve') return 'approve';
      if (answer === 'r' || answer === 'reject' || answer === 'deny') return 'deny';
      if (answer === 'd' || answer === 'defer') return 'defer';
    }
  } finally {
    prompt.close();
  }
}
