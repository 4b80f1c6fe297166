/**
 * The cheap loopback upstream: nginx from Debian answering every request with canned bytes (an
 * OpenAI chat.completion, an OpenAI SSE stream, an Anthropic message, an Anthropic SSE stream,
 * a 503 and a context-length 400), plus the OTLP sink (POST /v1/traces -> 200) for tracing-on
 * runs. The canned bodies are made by the simulator's own wire-format code, so they are exactly
 * what the simulated providers send.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnthropicDialect } from '../simulator/anthropic.ts';
import { createOpenAIDialect } from '../simulator/openai.ts';
import { LOAD_CORE, type Spawned, spawnPinned, waitReady } from './proc.ts';

/** The app's request: a short conversation, about 1 KB of JSON, no `model` (the sidecar picks). */
export const REQUEST = {
  messages: [
    {
      role: 'system',
      content: 'You are a concise assistant for a platform team. Answer in plain text, at most three sentences, no markdown.',
    },
    {
      role: 'user',
      content:
        'We run a few hundred services on Kubernetes and want every pod to reach several LLM providers with failover between them. What is the difference between running the failover logic in a per-pod sidecar and running it in a central gateway, in terms of latency, blast radius and operational cost?',
    },
    {
      role: 'assistant',
      content:
        'A sidecar adds a loopback hop and fails with its pod only; a central gateway adds a network hop and is a shared dependency you must scale and keep available.',
    },
    {
      role: 'user',
      content:
        'And which one is cheaper to run for a small team that already has a service mesh? Keep it short, please, two sentences at most.',
    },
  ],
  max_tokens: 256,
  temperature: 0.2,
};
export const REQUEST_JSON = JSON.stringify(REQUEST);
export const STREAM_REQUEST_JSON = JSON.stringify({ ...REQUEST, stream: true });

/** About 40 words: one SSE delta per word. */
export const REPLY_TEXT =
  'For a small team that already runs a mesh, the sidecar is usually cheaper: it needs no extra service to scale or page for, and its cost grows with the pods you already pay for. A gateway wins once many teams share keys, quotas and budgets.';

export interface Canned {
  openaiJson: string;
  openaiSse: string;
  anthropicJson: string;
  anthropicSse: string;
  error503: string;
  contextLength400: string;
  /** SSE events in each stream (what "chunks" counts). */
  openaiEvents: number;
  anthropicEvents: number;
}

export function canned(): Canned {
  const openai = createOpenAIDialect('gpt-4o-2024-08-06');
  const anthropic = createAnthropicDialect('claude-sonnet-4-20250514');
  const reply = { content: REPLY_TEXT, usage: { promptTokens: 212, completionTokens: 52 } };
  const oFrames = openai.stream({ ...REQUEST, model: 'gpt-4o' }, reply);
  const aFrames = anthropic.stream({ ...REQUEST, model: 'claude-sonnet-4' }, reply);
  return {
    openaiJson: openai.completion({ ...REQUEST, model: 'gpt-4o' }, reply),
    openaiSse: oFrames.map((f) => f.text).join(''),
    anthropicJson: anthropic.completion({ ...REQUEST, model: 'claude-sonnet-4' }, reply),
    anthropicSse: aFrames.map((f) => f.text).join(''),
    error503: openai.error({ status: 503 }, 'req_bench').body,
    contextLength400: openai.error({ status: 400, type: 'context_length_exceeded' }, 'req_bench').body,
    openaiEvents: oFrames.length,
    anthropicEvents: aFrames.length,
  };
}

/** Upstream paths (nginx locations); the sidecar's providers point at them with pathOverride. */
export const PATHS = {
  openaiJson: '/openai/json/v1/chat/completions',
  openaiSse: '/openai/sse/v1/chat/completions',
  anthropicJson: '/anthropic/json/v1/messages',
  anthropicSse: '/anthropic/sse/v1/messages',
  error503: '/err/503/v1/chat/completions',
  error503b: '/err/503b/v1/chat/completions',
  contextLength: '/err/ctx/v1/chat/completions',
  contextLengthB: '/err/ctxb/v1/chat/completions',
} as const;

function nginxString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export interface Upstream {
  port: number;
  origin: string;
  canned: Canned;
  proc: Spawned;
  /** OTLP export requests nginx received on /v1/traces (from its access log). */
  otlpExports(): { requests: number; bytes: number };
  stop(): Promise<void>;
}

export async function startNginx(port: number): Promise<Upstream> {
  const dir = join(tmpdir(), `llm-failover-bench-nginx-${process.pid}`);
  for (const d of ['', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  const c = canned();
  // nginx caps one directive parameter at 4 KB: longer bodies are assembled from variables.
  const loc = (prefix: string, status: number, type: string, body: string) => {
    if (body.includes('$')) throw new Error('canned bodies must not contain "$" (nginx variables)');
    const parts: string[] = [];
    for (let i = 0; i < body.length; i += 3000) parts.push(body.slice(i, i + 3000));
    const sets = parts.map((p, i) => `      set $part${i} ${nginxString(p)};\n`).join('');
    return `    location ${prefix} {\n      default_type ${type};\n${sets}      return ${status} "${parts.map((_, i) => `$part${i}`).join('')}";\n    }`;
  };
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(dir, 'tmp', t)};`).join('\n');
  const conf = `daemon off;
master_process off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
${temp}
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_buffer_size 1m;
  client_max_body_size 16m;
  log_format otlp '$content_length';
  server {
    listen 127.0.0.1:${port} backlog=4096;
${loc('/openai/json/', 200, 'application/json', c.openaiJson)}
${loc('/openai/sse/', 200, 'text/event-stream', c.openaiSse)}
${loc('/anthropic/json/', 200, 'application/json', c.anthropicJson)}
${loc('/anthropic/sse/', 200, 'text/event-stream', c.anthropicSse)}
${loc('/err/503/', 503, 'application/json', c.error503)}
${loc('/err/503b/', 503, 'application/json', c.error503)}
${loc('/err/ctx/', 400, 'application/json', c.contextLength400)}
${loc('/err/ctxb/', 400, 'application/json', c.contextLength400)}
    location = /v1/traces {
      access_log ${join(dir, 'otlp.log')} otlp;
      default_type application/x-protobuf;
      return 200 '';
    }
    location = /__ready {
      return 200 'ok';
    }
  }
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  writeFileSync(join(dir, 'otlp.log'), '');
  const proc = spawnPinned(LOAD_CORE, 'nginx', ['-p', dir, '-c', confPath, '-e', join(dir, 'error.log')]);
  await waitReady(`http://127.0.0.1:${port}/__ready`, proc, 10_000);
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    canned: c,
    proc,
    otlpExports() {
      const lines = readFileSync(join(dir, 'otlp.log'), 'utf8').split('\n').filter(Boolean);
      return { requests: lines.length, bytes: lines.reduce((a, l) => a + Number(l), 0) };
    },
    async stop() {
      await proc.stop('SIGTERM', 3000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
