/**
 * Anthropic's Messages API: the `anthropic:` block of a Backend provider entry and its wire
 * facts. Requests and answers are translated (translate/anthropic.ts, docs/translation.md).
 */
import { z } from 'zod';
import { authToken, headerValue, modelField } from '../fields.ts';
import type { ModelTarget } from '../plan.ts';
import type { ProviderFacts } from './facts.ts';

/** The `anthropic-version` sent when the block names none. */
export const ANTHROPIC_VERSION = '2023-06-01';

const block = z
  .strictObject({
    authToken,
    model: modelField,
    apiVersion: headerValue('the anthropic-version', 1)
      .optional()
      .meta({ description: 'The anthropic-version header.', default: ANTHROPIC_VERSION }),
  })
  .meta({ description: "Anthropic's Messages API; requests and answers are translated (docs/translation.md)." });

const versionHeader = (target: ModelTarget) => ({ 'anthropic-version': target.apiVersion ?? ANTHROPIC_VERSION });

export const ANTHROPIC = {
  block,
  title: 'Anthropic',
  origin: 'https://api.anthropic.com',
  chatPath: '/v1/messages',
  auth: { header: 'x-api-key', prefix: '' },
  targetFields: (b) => ({ apiVersion: b.apiVersion ?? ANTHROPIC_VERSION }),
  headers: versionHeader,
  // /v1/messages -> /v1/models
  modelsProbe: (target) => ({ path: target.path.replace(/\/messages$/, '/models'), headers: versionHeader(target) }),
} satisfies ProviderFacts<z.output<typeof block>>;
