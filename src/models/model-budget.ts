/** A task's model budget (`--max-cost`, `--max-tokens`), enforced on the host: the sandbox cannot lie about it. */
export interface BudgetLimits {
  maxCostUsd?: number | undefined;
  maxTokens?: number | undefined;
}

export class ModelBudget {
  costUsd = 0;
  tokens = 0;
  calls = 0;

  constructor(private readonly limits: BudgetLimits) {}

  add(usage: { total: number }, costUsd: number | undefined): void {
    this.calls += 1;
    this.tokens += usage.total;
    this.costUsd += costUsd ?? 0;
  }

  /** Why no more calls may be made, or undefined while there is budget left. */
  exceeded(): string | undefined {
    const { maxCostUsd, maxTokens } = this.limits;
    if (maxTokens !== undefined && this.tokens >= maxTokens) return `model budget exceeded: ${this.tokens} tokens used, --max-tokens is ${maxTokens}`;
    if (maxCostUsd !== undefined && this.costUsd >= maxCostUsd) return `model budget exceeded: $${this.costUsd.toFixed(6)} spent, --max-cost is $${maxCostUsd}`;
    return undefined;
  }
}
