/**
 * Simulated LLM providers: loopback node:http servers that speak the real
 * OpenAI Chat Completions and Anthropic Messages wire formats, with
 * switchable faults (see faults.ts).
 *
 * How a chat request meets a fault:
 * - the fault is taken (and `times` counted down) when the request arrives;
 * - 'reset', 'hang', 'status' (and the error-event faults on non-stream
 *   requests) replace the answer, before auth and validation;
 * - every other fault shapes the answer to a request that passed auth and
 *   validation (an invalid request gets its real 4xx, unshaped);
 * - 'refuse' closes the port at once (dropping open connections) and ignores
 *   `times`: refused connections never reach the simulator, so it lasts until
 *   setFault/clearFault. Re-listening is asynchronous; `await sim.ready()`
 *   when a test needs it to have happened.
 * /v1/models obeys 'refuse', 'reset', 'status' and 'hang' without counting `times`.
 *
 * As strict as the real APIs: a 429 carries the provider's whole set of rate-limit headers, and
 * the Anthropic simulator refuses what Anthropic refuses (anthropic-validate.ts: thinking with a
 * forced tool choice, a temperature or top_p it rules out, a budget not below max_tokens; tool ids
 * outside [a-zA-Z0-9_-], unpaired or duplicate tool ids; empty or whitespace-only text; a prefill
 * ending in whitespace; an assistant speaking first), each with Anthropic's own 400.
 */
export { startAnthropicSimulator } from './anthropic.ts';
export { anthropicRequestProblem } from './anthropic-validate.ts';
export type { Fault, FaultKind } from './faults.ts';
export { startOpenAISimulator } from './openai.ts';
export type { JsonBody, RecordedRequest, Reply, SimulatedProvider, SimulatorOptions } from './types.ts';
