/** The providers this sidecar serves, by the key their Backend block uses. */
import type { ProviderKind } from '../config/plan.ts';
import { anthropicAdapter } from './anthropic.ts';
import { openaiAdapter } from './openai.ts';
import type { ProviderAdapter } from './provider.ts';

export const ADAPTERS: Partial<Record<ProviderKind, ProviderAdapter>> = {
  openai: openaiAdapter,
  anthropic: anthropicAdapter,
};
