/**
 * Every problem in a configuration, with where it is: the file, the document, the path
 * inside it (`spec.ai.priorityGroups[1].providers[0].openai.model`) and, for YAML syntax
 * errors, the line and column. The loader collects them all before failing.
 */
import { redact } from '../core/secret.ts';

export interface Problem {
  file: string;
  /** "Backend/model-failover", or "document 2" when the document has no usable kind/name. */
  document?: string;
  path?: string;
  line?: number;
  column?: number;
  message: string;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/** Problems quote configuration text (key names, values): anything shaped like a key is scrubbed. */
export function formatProblem(p: Problem): string {
  const where = [p.file + (p.line ? `:${p.line}:${p.column ?? 1}` : ''), p.document, p.path].filter(Boolean).join(' ');
  return redact(`${where}: ${p.message}`);
}

export class ConfigError extends Error {
  readonly problems: Problem[];
  constructor(problems: Problem[]) {
    super(
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${problems.map((p) => `  - ${formatProblem(p)}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
