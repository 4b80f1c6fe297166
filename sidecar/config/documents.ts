/**
 * Documents: the configuration's sources (one file of several YAML documents, or a folder of
 * them) read, parsed, and each document validated against the schema of its kind. What comes
 * out is the valid documents sorted by kind, with where each came from; every problem (YAML
 * syntax, an unknown kind, a schema issue) is collected, located by file, document and path.
 * References between documents are resolve.ts's.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { ConfigError, formatPath, type Problem } from './problems.ts';
import { type BackendDoc, DOCUMENT_KINDS, type FailoverPolicyDoc, type HTTPRouteDoc, type SidecarConfigDoc } from './schema.ts';

export interface SourceFile {
  name: string;
  text: string;
}

/** A valid document and where it is: its file, and its label ("Backend/model-failover"). */
export interface Located<T> {
  doc: T;
  file: string;
  label: string;
}

export interface Documents {
  backends: Located<BackendDoc>[];
  routes: Located<HTTPRouteDoc>[];
  policies: Located<FailoverPolicyDoc>[];
  sidecars: Located<SidecarConfigDoc>[];
  /** "namespace/name" of every Backend document present but invalid (its problems are already reported). */
  invalidBackends: Set<string>;
}

/** Reads a YAML file, or every .yaml/.yml/.json file of a folder (sorted, hidden entries skipped: the kubelet's ..data links). */
export function readConfigSources(path: string): SourceFile[] {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(path);
  } catch {
    throw new ConfigError([{ file: path, message: 'cannot read: no such file or folder' }]);
  }
  if (!stat.isDirectory()) return [{ name: path, text: readFileSync(path, 'utf8') }];
  const files = readdirSync(path)
    .filter((f) => !f.startsWith('.') && /\.(ya?ml|json)$/.test(f))
    .sort();
  if (files.length === 0) throw new ConfigError([{ file: path, message: 'the folder holds no .yaml, .yml or .json file' }]);
  return files.map((f) => ({ name: join(path, f), text: readFileSync(join(path, f), 'utf8') }));
}

/**
 * The yaml library's message without the text it quotes (after ": "), which may be a key:
 * "Block scalar header includes extra characters: >sk-..." -> "Block scalar header includes extra characters".
 */
function yamlMessage(message: string): string {
  const first = message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
  const quote = first.indexOf(': ');
  return quote === -1 ? first : first.slice(0, quote);
}

/** Every document of every source, validated; the problems go into `problems`. */
export function readDocuments(sources: SourceFile[], problems: Problem[]): Documents {
  const docs: Documents = { backends: [], routes: [], policies: [], sidecars: [], invalidBackends: new Set() };
  for (const source of sources) {
    // logLevel error: the yaml library would otherwise print warnings quoting the text (which may hold a key)
    const parsed = parseAllDocuments(source.text, { logLevel: 'error' });
    const list = Array.isArray(parsed) ? parsed : [parsed];
    list.forEach((yamlDoc, index) => {
      const fallbackLabel = `document ${index + 1}`;
      if (yamlDoc.errors.length > 0) {
        for (const err of yamlDoc.errors) {
          problems.push({
            file: source.name,
            document: fallbackLabel,
            line: err.linePos?.[0].line,
            column: err.linePos?.[0].col,
            message: `YAML syntax: ${yamlMessage(err.message)}`,
          });
        }
        return;
      }
      let value: unknown;
      try {
        value = yamlDoc.toJS({ maxAliasCount: 100 });
      } catch (err) {
        // an alias to a missing anchor, an alias bomb
        problems.push({
          file: source.name,
          document: fallbackLabel,
          message: `YAML: ${yamlMessage(err instanceof Error ? err.message : String(err))}`,
        });
        return;
      }
      if (value === null || value === undefined) return; // an empty document (e.g. a trailing ---)
      if (typeof value !== 'object' || Array.isArray(value)) {
        problems.push({ file: source.name, document: fallbackLabel, message: 'expected a mapping with apiVersion and kind' });
        return;
      }
      validate(value as Record<string, unknown>, source.name, fallbackLabel, docs, problems);
    });
  }
  return docs;
}

/** One document against the schema of its kind: into `docs` when valid, its problems into `problems` when not. */
function validate(raw: Record<string, unknown>, file: string, fallbackLabel: string, docs: Documents, problems: Problem[]): void {
  const kind = typeof raw.kind === 'string' ? raw.kind.slice(0, 64) : undefined;
  const apiGroup = typeof raw.apiVersion === 'string' ? raw.apiVersion.split('/')[0] : undefined;
  const name = (raw.metadata as { name?: unknown } | undefined)?.name;
  const label = kind ? `${kind}/${typeof name === 'string' ? name : `(${fallbackLabel})`}` : fallbackLabel;
  const schema = DOCUMENT_KINDS[`${apiGroup}/${kind}` as keyof typeof DOCUMENT_KINDS] as z.ZodType | undefined;
  if (!schema) {
    problems.push({
      file,
      document: label,
      path: 'kind',
      message: `unknown document kind ${typeof raw.apiVersion === 'string' ? raw.apiVersion.slice(0, 64) : '(no apiVersion)'} ${kind ?? '(no kind)'}; expected gateway.kgateway.dev/v1alpha1 Backend, gateway.networking.k8s.io/v1 HTTPRoute, llm-failover.dev/v1alpha1 SidecarConfig or FailoverPolicy`,
    });
    return;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push({ file, document: label, path: formatPath(issue.path), message: issue.message });
    if (kind === 'Backend' && typeof name === 'string') {
      // reported once, here: references to it (HTTPRoute, FailoverPolicy) must not add "no Backend" problems
      const ns = (raw.metadata as { namespace?: unknown }).namespace;
      docs.invalidBackends.add(`${typeof ns === 'string' && ns ? ns : 'default'}/${name}`);
    }
    return;
  }
  const located = { doc: parsed.data, file, label };
  if (kind === 'Backend') docs.backends.push(located as Located<BackendDoc>);
  else if (kind === 'HTTPRoute') docs.routes.push(located as Located<HTTPRouteDoc>);
  else if (kind === 'FailoverPolicy') docs.policies.push(located as Located<FailoverPolicyDoc>);
  else docs.sidecars.push(located as Located<SidecarConfigDoc>);
}
