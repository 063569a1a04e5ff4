import type { DeliveryOutcome } from '../core/records.js';
import { childIdFor, type TraceDocument } from './trace-model.js';
import { hitlTags } from './trace-recorder.js';

export const HITL_SCORE = 'hitl_decision';

/**
 * Writes the delivery into the trace the way the seed's schema has it: `pr_url`, `hitl_required`,
 * `hitl_status` metadata, who/when/comment beside them, and the decision as a score (1 approved, 0 rejected)
 * whose id is derived, so deciding again overwrites rather than adds.
 */
export function recordDelivery(document: TraceDocument, hitlRequired: boolean, outcomes: DeliveryOutcome[]): void {
  const outcome = outcomes[0];
  if (!outcome) return;
  const metadata = document.trace.metadata;
  metadata.hitl_required = hitlRequired;
  metadata.hitl_status = outcome.hitlStatus;
  // A multi-repo task opens one PR per repository: the first is pr_url, the seed's key; the rest beside it.
  const prUrls = outcomes.flatMap((entry) => (entry.prUrl ? [entry.prUrl] : []));
  if (prUrls[0]) metadata.pr_url = prUrls[0];
  if (prUrls.length > 1) metadata.related_pr_urls = prUrls.slice(1);
  if (outcome.decidedBy) metadata.hitl_by = outcome.decidedBy;
  if (outcome.decidedAt) metadata.hitl_at = outcome.decidedAt;
  if (outcome.comment) metadata.hitl_comment = outcome.comment;
  document.trace.tags = hitlTags(document.trace.tags, metadata);
  document.scores = document.scores.filter((score) => score.name !== HITL_SCORE);
  if (outcome.hitlStatus === 'approved' || outcome.hitlStatus === 'rejected') {
    document.scores.push({
      id: childIdFor(document.trace.id, `score:${HITL_SCORE}`, 32),
      traceId: document.trace.id,
      name: HITL_SCORE,
      value: outcome.hitlStatus === 'approved' ? 1 : 0,
      dataType: 'NUMERIC',
      comment: [outcome.hitlStatus, outcome.decidedBy ? `by ${outcome.decidedBy}` : '', outcome.comment ?? ''].filter(Boolean).join(' — '),
    });
  }
}
