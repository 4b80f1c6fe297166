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
 */
export { startAnthropicSimulator } from './anthropic.ts';
export type { Fault, FaultKind } from './faults.ts';
export { startOpenAISimulator } from './openai.ts';
export type { JsonBody, RecordedRequest, Reply, SimulatedProvider, SimulatorOptions } from './types.ts';
