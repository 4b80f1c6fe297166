/**
 * The adapter of every provider the configuration serves (config/providers/index.ts), by the
 * key its Backend block uses. A provider registered there without an adapter here does not compile.
 */
import type { ProviderKind } from '../config/plan.ts';
import { anthropicAdapter } from './anthropic.ts';
import { openaiAdapter } from './openai.ts';
import type { ProviderAdapter } from './provider.ts';

export const ADAPTERS: Record<ProviderKind, ProviderAdapter> = {
  openai: openaiAdapter,
  anthropic: anthropicAdapter,
};
