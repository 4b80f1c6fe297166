/**
 * JSON Schema for every document the sidecar reads, generated from the same zod schemas the
 * loader validates with (never kept by hand), the CRD of our FailoverPolicy kind, and the
 * field reference in docs/configuration.md. `npm run schema` writes them; a test fails when the
 * committed files drift from what the code generates.
 */
import { z } from 'zod';
import { backend, failoverPolicy, httpRoute, sidecarConfig } from './schema.ts';

export const KINDS = { Backend: backend, HTTPRoute: httpRoute, SidecarConfig: sidecarConfig, FailoverPolicy: failoverPolicy } as const;
export type Kind = keyof typeof KINDS;

type Json = Record<string, unknown>;

/**
 * Durations are converted to milliseconds by the schema (a transform), and zod leaves the
 * documented default of a transforming field out of an input schema (it could be an output
 * value). Ours are written as the YAML would hold them ("30s"): put them back.
 */
function documentedDefault(ctx: { zodSchema: unknown; jsonSchema: Json }): void {
  const meta = z.globalRegistry.get(ctx.zodSchema as z.ZodType);
  if (meta?.default === undefined || ctx.jsonSchema.default !== undefined) return;
  // beside the description, where zod puts the default of a field that does not transform
  const { description, ...rest } = ctx.jsonSchema;
  for (const key of Object.keys(ctx.jsonSchema)) delete ctx.jsonSchema[key];
  Object.assign(ctx.jsonSchema, description === undefined ? {} : { description }, { default: meta.default }, rest);
}

export function jsonSchema(kind: Kind): Json {
  return z.toJSONSchema(KINDS[kind], { io: 'input', unrepresentable: 'any', override: documentedDefault }) as Json;
}

/** One schema for a file of several documents: each document matches the schema of its kind. */
export function combinedSchema(): Json {
  const defs: Record<string, Json> = {};
  for (const kind of Object.keys(KINDS) as Kind[]) {
    const { $schema: _, ...rest } = jsonSchema(kind);
    defs[kind] = rest;
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'llm-failover-sidecar configuration',
    description: 'Backend, HTTPRoute, SidecarConfig and FailoverPolicy documents, as the sidecar reads them.',
    anyOf: (Object.keys(KINDS) as Kind[]).map((k) => ({ $ref: `#/$defs/${k}` })),
    $defs: defs,
  };
}

/** Kubernetes structural schema: no `additionalProperties` beside `properties`, no `$schema`, no `propertyNames`. */
function structural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(structural);
  if (!node || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node as Json)) {
    if (k === '$schema' || k === 'propertyNames' || k === 'examples') continue;
    if (k === 'additionalProperties' && (v === false || 'properties' in (node as Json))) continue;
    out[k] = structural(v);
  }
  return out;
}

export function failoverPolicyCrd(): Json {
  const schema = z.toJSONSchema(failoverPolicy, {
    io: 'input',
    target: 'openapi-3.0',
    unrepresentable: 'any',
    override: documentedDefault,
  }) as Json;
  const props = schema.properties as Json;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'failoverpolicies.llm-failover.dev' },
    spec: {
      group: 'llm-failover.dev',
      scope: 'Namespaced',
      names: {
        kind: 'FailoverPolicy',
        listKind: 'FailoverPolicyList',
        plural: 'failoverpolicies',
        singular: 'failoverpolicy',
        shortNames: ['fp'],
      },
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: schema.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: structural(props.spec),
              },
            },
          },
        },
      ],
    },
  };
}

interface Row {
  path: string;
  type: string;
  default?: unknown;
  description?: string;
  required: boolean;
}

function typeOf(s: Json): string {
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (Array.isArray(s.enum)) return s.enum.map((e) => `\`${e}\``).join(' \\| ');
  if (Array.isArray(s.anyOf)) return s.anyOf.map((x) => typeOf(x as Json)).join(' \\| ');
  if (s.type === 'array') return `list of ${typeOf((s.items ?? {}) as Json)}`;
  if (s.pattern && String(s.pattern).includes('h|ms|m|s')) return 'duration';
  return String(s.type ?? 'any');
}

function rows(s: Json, path: string, required: boolean, out: Row[]): void {
  const description = s.description as string | undefined;
  const props = s.properties as Record<string, Json> | undefined;
  const items = s.type === 'array' ? (s.items as Json | undefined) : undefined;
  const record =
    s.type === 'object' && !props && s.additionalProperties && typeof s.additionalProperties === 'object'
      ? (s.additionalProperties as Json)
      : undefined;
  if (path) out.push({ path, type: props || record ? 'object' : typeOf(s), default: s.default, description, required });
  if (props) {
    const req = new Set((s.required as string[] | undefined) ?? []);
    for (const [k, v] of Object.entries(props)) rows(v, path ? `${path}.${k}` : k, req.has(k), out);
  }
  if (items?.properties) rows(items, `${path}[]`, false, out);
  if (record) rows(record, `${path}.<name>`, false, out);
}

const EXAMPLE = `# yaml-language-server: $schema=../schema/llm-failover.schema.json
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: model-failover
spec:
  type: AI
  ai:
    priorityGroups:
    - providers:
      - name: openai-gpt-4o
        openai:
          model: gpt-4o
          authToken: {kind: SecretRef, secretRef: {name: openai-secret}}
    - providers:
      - name: claude-haiku
        anthropic:
          model: claude-3-5-haiku-latest
          authToken: {kind: SecretRef, secretRef: {name: anthropic-secret}}
      - name: local-vllm
        openai:
          model: meta-llama/Llama-3.1-8B-Instruct
          authToken: {kind: Inline, inline: unused}
        hostOverride: {host: vllm.llm.svc, port: 8000}
---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata:
  name: model-failover
spec:
  targetRefs: [{kind: Backend, name: model-failover}]
  timeouts: {firstToken: 20s}
  health:
    probe: {interval: 10s}
    slowThreshold: 5s
  providers:
    local-vllm:
      health: {probe: {kind: chat}}
---
apiVersion: llm-failover.dev/v1alpha1
kind: SidecarConfig
spec:
  listen: 127.0.0.1:8080
  admin: 0.0.0.0:15000`;

export function configurationDoc(): string {
  const parts: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run schema` from sidecar/config/schema.ts: do not edit by hand. -->',
    '',
    "The sidecar reads YAML documents from `--config` (a file of several documents, or a folder of them): kgateway's `Backend` and Gateway API's `HTTPRoute` exactly as the seed page writes them, plus two optional kinds of our own, `SidecarConfig` (process settings) and `FailoverPolicy` (per Backend, attached by `targetRefs`, with per-provider overrides). Every field below is validated at start and on every reload; an invalid configuration is reported with the file, the document and the path of each problem (`llm-failover-sidecar check --config PATH` does the same without starting).",
    '',
    "**Editor support**: JSON Schemas are published in `schema/` (one per kind and `llm-failover.schema.json` for files of several documents). With the YAML language server (VS Code's YAML extension, and others), put this modeline at the top of a file:",
    '',
    '```yaml',
    '# yaml-language-server: $schema=https://raw.githubusercontent.com/<org>/llm-failover-sidecar/main/schema/llm-failover.schema.json',
    '```',
    '',
    "(or a relative path to your checkout's `schema/llm-failover.schema.json`). `deploy/crds/failoverpolicy.yaml` is the FailoverPolicy CRD with the same schema, for clusters that store policies as resources.",
    '',
    "Durations use Gateway API's form: `500ms`, `30s`, `5m`, `1h`, `1m30s`.",
    '',
    '## Example',
    '',
    '```yaml',
    EXAMPLE,
    '```',
  ];
  for (const kind of Object.keys(KINDS) as Kind[]) {
    const schema = jsonSchema(kind);
    const out: Row[] = [];
    rows(schema, '', true, out);
    parts.push(
      '',
      `## ${kind}`,
      '',
      String(schema.description ?? ''),
      '',
      '| field | type | default | description |',
      '| --- | --- | --- | --- |',
    );
    for (const r of out) {
      const def = r.default === undefined ? '' : `\`${JSON.stringify(r.default)}\``;
      parts.push(
        `| \`${r.path}\`${r.required ? ' (required)' : ''} | ${r.type} | ${def} | ${(r.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`,
      );
    }
  }
  return `${parts.join('\n')}\n`;
}
