/**
 * What the configuration knows of one provider, beside its adapter (translate/<kind>.ts): the
 * block a Backend declares it with, and the wire facts the loader, the adapter and the probes
 * share (default origin, chat path, auth header and prefix, fixed headers, the model-list
 * request). They live here, not in translate/, because config/ must not import upward.
 */
import type { z } from 'zod';
import type { AuthTokenDoc } from '../fields.ts';
import type { ModelTarget } from '../plan.ts';

/** What every provider block holds; a provider's own fields come on top. */
export interface ProviderBlock {
  authToken: AuthTokenDoc;
  model?: string;
}

/** The provider's own fields of a model's target, taken from its block (Anthropic: `apiVersion`). */
export type TargetFields = Partial<Pick<ModelTarget, 'apiVersion'>>;

export interface ProviderFacts<Block extends ProviderBlock = ProviderBlock> {
  /** The block under the provider's key in a Backend provider entry (its description goes into the docs). */
  block: z.ZodType<Block>;
  /** The provider's name in prose ("OpenAI", "Anthropic"), for generated descriptions. */
  title: string;
  /** Where requests go without a hostOverride. */
  origin: string;
  /** The chat path without a pathOverride. */
  chatPath: string;
  /** The auth header (lower case) and the prefix before the token ('' or ending in a space), without an authHeaderOverride. */
  auth: { header: string; prefix: string };
  /** The provider's own fields of a target, from its block. */
  targetFields?(block: Block): TargetFields;
  /** Headers every request to this provider carries beside auth and content negotiation (chat and probes alike). */
  headers(target: ModelTarget): Record<string, string>;
  /** The free model-list request of a `models` probe: proves reachability and credentials, not generation. */
  modelsProbe(target: ModelTarget): { path: string; headers: Record<string, string> };
}
