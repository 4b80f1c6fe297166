/**
 * OpenAI and every OpenAI-compatible server (vLLM, Ollama, LocalAI, a company proxy): the
 * `openai:` block of a Backend provider entry and its wire facts. Requests go out as the client
 * wrote them (translate/openai.ts).
 */
import { z } from 'zod';
import { authToken, modelField } from '../fields.ts';
import type { ProviderFacts } from './facts.ts';

const block = z
  .strictObject({ authToken, model: modelField })
  .meta({ description: 'OpenAI, or any OpenAI-compatible server (vLLM, Ollama, LocalAI, a company proxy) with hostOverride.' });

export const OPENAI = {
  block,
  title: 'OpenAI',
  origin: 'https://api.openai.com',
  chatPath: '/v1/chat/completions',
  auth: { header: 'authorization', prefix: 'Bearer ' },
  headers: () => ({}),
  // /v1/chat/completions -> /v1/models, beside the chat path whatever prefix a pathOverride gives it
  modelsProbe: (target) => ({ path: target.path.replace(/\/chat\/completions$/, '/models'), headers: {} }),
} satisfies ProviderFacts<z.output<typeof block>>;
