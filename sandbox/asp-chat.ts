/**
 * How the ASP agents talk to the model: the same OpenAI-compatible endpoint any agent CLI in the sandbox uses
 * (OPENAI_BASE_URL, the runner's loopback endpoint), so the host's gateway sees, budgets and traces every call.
 */
import { isRecord, valueAt } from '../src/core/record-guard.js';
import { AGENT_HEADER } from '../src/protocol/messages.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export class ChatError extends Error {}

/** `agent` names the caller (`design_agent`): the host names the call's generation after it, not after the step. */
export async function chat(messages: ChatMessage[], agent: string): Promise<string> {
  const base = process.env.OPENAI_BASE_URL;
  if (!base) throw new ChatError('no model endpoint: OPENAI_BASE_URL is not set (the asp pipeline needs a model configured on the host)');
  const response = await fetch(`${base}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${process.env.OPENAI_API_KEY ?? ''}`, [AGENT_HEADER]: agent },
    body: JSON.stringify({ model: process.env.ASP_MODEL_NAME ?? 'asp', temperature: 0, messages }),
  });
  const text = await response.text();
  if (response.status !== 200) throw new ChatError(`the model endpoint answered ${response.status}: ${text.slice(0, 500)}`);
  const content = valueAt(JSON.parse(text), 'choices', 0, 'message', 'content');
  if (typeof content !== 'string') throw new ChatError('the model answered without content');
  return content;
}

/** The JSON object in a model's answer: fenced or not, with prose around it or not. */
export function extractJson(text: string): Record<string, unknown> | undefined {
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(text);
  const candidates = [fenced?.[1], text, text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1)];
  for (const candidate of candidates) {
    if (!candidate?.trim()) continue;
    try {
      const value: unknown = JSON.parse(candidate);
      if (isRecord(value) && !Array.isArray(value)) return value;
    } catch {
      /* try the next reading */
    }
  }
  return undefined;
}

/** Asks for a JSON object; an answer that is not one gets a second chance, with the reason. */
export async function chatJson(messages: ChatMessage[], agent: string): Promise<Record<string, unknown>> {
  const first = await chat(messages, agent);
  const parsed = extractJson(first);
  if (parsed) return parsed;
  const second = await chat([...messages, { role: 'assistant', content: first }, { role: 'user', content: 'That was not a JSON object. Answer again with one JSON object only.' }], agent);
  const retried = extractJson(second);
  if (!retried) throw new ChatError(`the model did not answer with a JSON object: ${second.slice(0, 200)}`);
  return retried;
}
