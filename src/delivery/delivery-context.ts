import { githubToken, type Settings } from '../config/settings.js';
import { GitHubForge } from '../forge/github-forge.js';
import type { Log } from '../core/log.js';
import type { Published } from '../tracing/publish-trace.js';
import type { TraceDocument } from '../tracing/trace-model.js';
import { markdownReport } from '../tracing/trace-report.js';
import { TraceStore } from '../tracing/trace-store.js';
import type { DeliveryContext } from './deliver-changes.js';

/** The host side of delivery for one task: its clone, the forge and token from the settings, and its report. */
export function deliveryContext(settings: Settings, repoDir: string, log: Log, document: TraceDocument, published: Published): DeliveryContext {
  const token = githubToken(settings);
  return {
    repoDir,
    env: settings.hostEnv,
    forge: token ? new GitHubForge(settings.github.apiUrl, token.value) : undefined,
    token,
    log,
    // The PR body is the task's markdown report, with the Langfuse link when the trace was exported.
    report: async () => markdownReport(document, published.delivery, await new TraceStore(settings.home).exportRecord(document.trace.id)),
  };
}
