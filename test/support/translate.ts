/**
 * A translator on its own, without a sidecar: the two targets every adapter test uses (an
 * OpenAI and an Anthropic model, from the YAML users write) and a client body read and checked
 * as the handler reads it.
 */
import { loadPlan } from '../../sidecar/config/load.ts';
import { parseChatRequest } from '../../sidecar/server/body.ts';
import type { ChatRequest } from '../../sidecar/translate/provider.ts';
import { backendYaml } from './yaml.ts';

const PLAN = loadPlan([
  {
    name: 't.yaml',
    text: backendYaml(
      [
        { name: 'oa', model: 'gpt-4o', group: 0 },
        { name: 'an', kind: 'anthropic', model: 'claude-x', group: 1 },
      ],
      { oa: 1, an: 2 },
    ),
  },
]);

export const [OPENAI_TARGET, ANTHROPIC_TARGET] = PLAN.backends[0].groups.flat();

/** A client request, read and checked as the handler does (with a client token, for Passthrough); undefined when the handler would refuse it. */
export function parsed(raw: Buffer): ChatRequest | undefined {
  const r = parseChatRequest(raw, 'Bearer sk-client-fuzz-token-abcdef');
  return 'status' in r ? undefined : r;
}
