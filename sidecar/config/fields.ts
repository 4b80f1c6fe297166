/**
 * The zod building blocks every document kind and every provider block is made of: names,
 * durations (converted to milliseconds by the schema itself), header names and values, hosts,
 * the auth token. A leaf of config/: the kinds (schema.ts) and the provider blocks
 * (providers/*.ts) import it, it imports neither.
 */
import { z } from 'zod';
import { parseDuration } from './duration.ts';

/** Gateway API's duration form, above zero (a zero timeout or interval is always a mistake). */
const DURATION = /^(?=.*[1-9])(\d{1,5}(h|ms|m|s)){1,4}$/;

/** A duration as written ("30s"), parsed to milliseconds: what every later stage reads. */
export const duration = z
  .string()
  .regex(DURATION, 'a duration above zero, such as "500ms", "30s", "5m" or "1h"')
  .transform((text) => parseDuration(text) as number);

export const name = z.string().min(1, 'a non-empty name');

/** RFC 9110 field names: tokens (no spaces, no colon, no separators). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header fields the sidecar (or undici) writes itself, or that frame the message: never an auth header. */
export const RESERVED_HEADERS = [
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'expect',
  'te',
  'trailer',
  'proxy-connection',
];

/**
 * What an HTTP header value may hold (RFC 9110 field-content, as undici checks it): tabs,
 * visible ASCII, spaces and Latin-1. Why not, in words that never quote the value (it may be a key).
 */
export function headerValueProblem(value: string): string | undefined {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 9 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff)) continue;
    if (c === 10 || c === 13) return 'it holds a line break (a value of more than one line?); a header value is one line';
    if (c < 0x20 || c === 0x7f) return `it holds a control character (0x${c.toString(16).padStart(2, '0')})`;
    return `it holds a character that cannot be sent in an HTTP header (U+${c.toString(16).toUpperCase().padStart(4, '0')})`;
  }
  return undefined;
}

/** A string sent as (part of) an HTTP header value. */
export const headerValue = (what: string, min?: number) =>
  (min === undefined ? z.string() : z.string().min(min)).superRefine((value, ctx) => {
    const problem = headerValueProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: `${what} is not a valid header value: ${problem}` });
  });

/** DNS names (labels of letters, digits, hyphens), IPv4, or IPv6 without brackets. */
export const HOST =
  /^(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?))*\.?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;

export const metadata = z.looseObject({
  name,
  namespace: z.string().min(1).optional(),
});

/** How a provider block's key reaches the provider (kgateway's `authToken`). */
export const authToken = z
  .strictObject({
    kind: z.enum(['SecretRef', 'Inline', 'Passthrough']).meta({
      description:
        "SecretRef: a Kubernetes Secret mounted at <secretsDir>/<name>/Authorization (or env NAME_IN_CAPS for local runs); Inline: the token in the YAML (tests only); Passthrough: the client's own Authorization header.",
    }),
    secretRef: z
      .strictObject({ name, namespace: z.string().optional() })
      .optional()
      .meta({ description: 'The Secret holding `Authorization: Bearer <key>`.' }),
    inline: z.string().min(1).optional().meta({ description: 'The token itself (least secure; for trying things out).' }),
  })
  .superRefine((token, ctx) => {
    if (token.kind === 'SecretRef' && !token.secretRef)
      ctx.addIssue({ code: 'custom', path: ['secretRef'], message: 'kind SecretRef needs secretRef.name' });
    if (token.kind === 'Inline' && token.inline === undefined)
      ctx.addIssue({ code: 'custom', path: ['inline'], message: 'kind Inline needs the token in inline' });
  });

/** The `model` field every provider block has. */
export const modelField = z
  .string()
  .min(1)
  .optional()
  .meta({ description: "The model to ask for. Unset: the client's `model` is sent as is.", examples: ['gpt-4o'] });

export type AuthTokenDoc = z.infer<typeof authToken>;
