/**
 * The providers this sidecar serves, keyed by the block name a Backend provider entry uses
 * (`openai:`, `anthropic:`). Adding one (Azure OpenAI, Gemini, Vertex AI, Bedrock): its facts and
 * block in a file beside these, one line here, its adapter in translate/ (translate/index.ts does
 * not compile without it), and its name out of UNSERVED_PROVIDERS in schema.ts. The loader, the
 * schema, the docs and the probes read this registry and nothing provider-specific.
 */
import { ANTHROPIC } from './anthropic.ts';
import type { ProviderFacts } from './facts.ts';
import { OPENAI } from './openai.ts';

export const PROVIDERS = {
  openai: OPENAI,
  anthropic: ANTHROPIC,
} as const;

/** A served provider, by its Backend block name. */
export type ProviderKind = keyof typeof PROVIDERS;

export const PROVIDER_KINDS = Object.keys(PROVIDERS) as ProviderKind[];

/** A provider's facts, as the provider-neutral code reads them. */
export function providerFacts(kind: ProviderKind): ProviderFacts {
  return PROVIDERS[kind] as ProviderFacts;
}

export type { ProviderBlock, ProviderFacts, TargetFields } from './facts.ts';
