import type { Settings } from '../config/settings.js';
import type { TaskSpec } from '../config/task-spec.js';
import type { ModelBudget } from '../models/model-budget.js';
import type { ModelChoice } from '../models/model-choice.js';
import type { ModelGateway } from '../models/model-gateway.js';
import type { FetchLike, ModelProvider } from '../models/provider.js';
import type { RetryPolicy } from '../models/retry.js';
import type { TraceRecorder } from '../tracing/trace-recorder.js';
import type { Clock } from '../core/clock.js';

/** The loopback port of the model endpoint inside the sandbox: the container has its own network namespace, so any port is free. */
export const MODEL_ENDPOINT_PORT = 4141;

export interface TaskGateway {
  gateway: ModelGateway;
  provider: ModelProvider;
  budget: ModelBudget;
}

/** What a task's result says about its model use. */
export interface ModelUse {
  provider: string;
  model: string;
  calls: number;
  tokens: number;
  costUsd: number;
  /** Why the gateway stopped the task, when the budget ran out. */
  budgetExceeded?: string;
}

/** Test seams: a fetch against a local server, fast retries. */
export interface GatewayOverrides {
  fetch?: FetchLike | undefined;
  retry?: Partial<RetryPolicy> | undefined;
}

/**
 * Opens the model gateway of one task. The provider modules are imported here, on demand, and only when a model
 * is configured: `asp run` without one never loads them.
 */
export async function openTaskGateway(
  choice: ModelChoice,
  settings: Settings,
  spec: TaskSpec,
  deps: { clock: Clock; trace: TraceRecorder; mask: (text: string) => string; warn: (message: string) => void; record: (entry: object) => void; overrides?: GatewayOverrides | undefined },
): Promise<TaskGateway> {
  const { createGateway } = await import('../models/create-gateway.js');
  return createGateway(choice, settings.models, {
    clock: deps.clock,
    mask: deps.mask,
    budget: { maxCostUsd: spec.budget?.maxCostUsd, maxTokens: spec.budget?.maxTokens },
    onGeneration: (generation) => {
      deps.trace.addGeneration(generation);
      // events.jsonl keeps the call, not the prompt: the prompt is in the trace, capped.
      deps.record({
        type: 'model.call',
        step: generation.step,
        ...(generation.agent ? { agent: generation.agent } : {}),
        model: generation.model,
        status: generation.status,
        attempts: generation.attempts,
        usage: generation.usage,
        costUsd: generation.costUsd ?? null,
        latencyMs: generation.endTime.getTime() - generation.startTime.getTime(),
      });
    },
    onWarning: deps.warn,
    ...(deps.overrides?.fetch ? { fetch: deps.overrides.fetch } : {}),
    ...(deps.overrides?.retry ? { retry: deps.overrides.retry } : {}),
  });
}

export function modelUse(open: TaskGateway): ModelUse {
  const exceeded = open.gateway.budgetExceeded;
  return {
    provider: open.provider.name,
    model: open.provider.model,
    calls: open.budget.calls,
    tokens: open.budget.tokens,
    costUsd: Math.round(open.budget.costUsd * 1e8) / 1e8,
    ...(exceeded ? { budgetExceeded: exceeded } : {}),
  };
}
