/**
 * Loading a configuration: its sources -> validated documents (documents.ts) -> a resolved Plan
 * (resolve.ts, with backend.ts and settings.ts). Every problem is collected on the way and
 * reported at once; a configuration with any problem yields no plan.
 */
import { FileSecret } from '../core/secret.ts';
import { readConfigSources, readDocuments, type SourceFile } from './documents.ts';
import type { Plan } from './plan.ts';
import { ConfigError, type Problem } from './problems.ts';
import { resolvePlan } from './resolve.ts';
import type { SecretOptions } from './secrets.ts';

export { readConfigSources, type SourceFile } from './documents.ts';

export type LoadOptions = SecretOptions;

export function loadPlanFromPath(path: string, options: LoadOptions = {}): Plan {
  return loadPlan(readConfigSources(path), options);
}

export function loadPlan(sources: SourceFile[], options: LoadOptions = {}): Plan {
  const problems: Problem[] = [];
  const plan = resolvePlan(readDocuments(sources, problems), options, problems);
  if (problems.length > 0) {
    // a rejected configuration (at start, or a reload) leaves no secret file watched
    for (const m of plan.backends.flatMap((b) => b.groups.flat()))
      if (m.auth.kind === 'static' && m.auth.token instanceof FileSecret) m.auth.token.close();
    throw new ConfigError(problems);
  }
  return plan;
}
