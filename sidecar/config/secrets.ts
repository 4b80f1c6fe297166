/**
 * SecretRef resolution. A Kubernetes Secret mounted as a folder is read from
 * `<secretsDir>/<secret-name>/Authorization` (the key kgateway users already put in these Secrets,
 * holding `Bearer sk-...`). For local runs, an environment variable named after the secret works
 * too: `openai-secret` -> `OPENAI_SECRET` (upper case, every non-alphanumeric character as `_`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileSecret, Secret } from './secret.ts';

export const DEFAULT_SECRETS_DIR = '/var/run/secrets/llm-failover';
export const SECRET_KEY = 'Authorization';

export function secretEnvName(secretName: string): string {
  return secretName.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** The bare token: a leading "Bearer " in the stored value is removed (providers differ in how they send it). */
export function tokenFromStoredValue(raw: string): string {
  const value = raw.trim();
  return /^bearer\s+/i.test(value) ? value.replace(/^bearer\s+/i, '') : value;
}

export type SecretLookup = { ok: true; secret: Secret; source: string } | { ok: false; tried: string[] };

/** How often a mounted secret file is checked for rotation. */
export const SECRET_POLL_MS = 2_000;

export function resolveSecret(
  secretName: string,
  secretsDir: string,
  env: NodeJS.ProcessEnv = process.env,
  pollMs: number = SECRET_POLL_MS,
): SecretLookup {
  const file = join(secretsDir, secretName, SECRET_KEY);
  try {
    const token = tokenFromStoredValue(readFileSync(file, 'utf8'));
    if (token) return { ok: true, secret: new FileSecret(file, token, tokenFromStoredValue, pollMs), source: file };
  } catch {
    // not mounted: fall through to the environment
  }
  const envName = secretEnvName(secretName);
  const fromEnv = env[envName];
  if (fromEnv && tokenFromStoredValue(fromEnv)) {
    return { ok: true, secret: new Secret(tokenFromStoredValue(fromEnv)), source: `env ${envName}` };
  }
  return { ok: false, tried: [file, `env ${envName}`] };
}
