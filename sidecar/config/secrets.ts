/**
 * SecretRef resolution. A Kubernetes Secret mounted as a folder is read from
 * `<secretsDir>/<secret-name>/Authorization` (the key kgateway users already put in these Secrets,
 * holding `Bearer sk-...`). For local runs, an environment variable named after the secret works
 * too: `openai-secret` -> `OPENAI_SECRET` (upper case, every non-alphanumeric character as `_`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { headerValueProblem } from './fields.ts';
import { FileSecret, Secret } from '../core/secret.ts';

export const DEFAULT_SECRETS_DIR = '/var/run/secrets/llm-failover';

/** Where SecretRefs are looked up: the only options loading a configuration takes. */
export interface SecretOptions {
  secretsDir?: string;
  env?: NodeJS.ProcessEnv;
  /** How often mounted secret files are checked for rotation (default 2 s). */
  secretPollMs?: number;
}
export const SECRET_KEY = 'Authorization';

export function secretEnvName(secretName: string): string {
  return secretName.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/**
 * The bare token: surrounding whitespace (a file's trailing newline) and a leading "Bearer " are
 * removed (providers differ in how they send it). What is left must be a valid header value.
 */
export function tokenFromStoredValue(raw: string): string {
  const value = raw.trim();
  return /^bearer\s+/i.test(value) ? value.replace(/^bearer\s+/i, '') : value;
}

/**
 * Why a stored value cannot be sent as a header value (a line break, a control character), in
 * words that name where it came from and never quote it; undefined when it can.
 */
export function storedValueProblem(secretName: string, source: string, token: string): string | undefined {
  const problem = headerValueProblem(token);
  return problem && `secret "${secretName}" in ${source} is not a valid header value: ${problem}`;
}

export type SecretLookup =
  | { ok: true; secret: Secret; source: string }
  /** Not found anywhere. */
  | { ok: false; tried: string[] }
  /** Found, but not a valid header value: `problem` names the source, never the value. */
  | { ok: false; problem: string; source: string };

/** How often a mounted secret file is checked for rotation. */
export const SECRET_POLL_MS = 2_000;

export function resolveSecret(
  secretName: string,
  secretsDir: string,
  env: NodeJS.ProcessEnv = process.env,
  pollMs: number = SECRET_POLL_MS,
): SecretLookup {
  const file = join(secretsDir, secretName, SECRET_KEY);
  let raw: string | undefined;
  try {
    raw = readFileSync(file, 'utf8');
  } catch {
    // not mounted: fall through to the environment
  }
  const fromFile = raw === undefined ? '' : tokenFromStoredValue(raw);
  if (fromFile) {
    const problem = storedValueProblem(secretName, file, fromFile);
    if (problem) return { ok: false, problem, source: file };
    // a rotated value that is not a valid header value is refused: the key in use stays
    const parse = (next: string) => {
      const token = tokenFromStoredValue(next);
      const rejected = storedValueProblem(secretName, file, token);
      if (rejected) throw new Error(rejected);
      return token;
    };
    return { ok: true, secret: new FileSecret(file, fromFile, parse, pollMs), source: file };
  }
  const envName = secretEnvName(secretName);
  const fromEnv = tokenFromStoredValue(env[envName] ?? '');
  if (fromEnv) {
    const problem = storedValueProblem(secretName, `env ${envName}`, fromEnv);
    if (problem) return { ok: false, problem, source: `env ${envName}` };
    return { ok: true, secret: new Secret(fromEnv), source: `env ${envName}` };
  }
  return { ok: false, tried: [file, `env ${envName}`] };
}
