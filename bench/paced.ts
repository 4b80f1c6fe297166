#!/usr/bin/env node
/**
 * A paced streaming upstream for time-to-first-token: answers every POST with an SSE stream the
 * way a model does: headers and the preamble at once (OpenAI's role chunk; Anthropic's
 * message_start, ping, content_block_start), the first content `firstMs` later, then one
 * content event every `chunkMs`, then the end. The first content event's text is
 * "t<CLOCK_MONOTONIC ns>" taken just before it is written, so the client (bench/loadgen.ts, on
 * the same machine and clock) can tell how long the proxy took to deliver it.
 *
 *   node bench/paced.ts --listen 127.0.0.1:PORT [--first-ms 2] [--chunk-ms 5] [--chunks 8]
 *
 * Paths under /paced/anthropic/ speak Anthropic Messages, every other path OpenAI chat
 * completions. GET .../models answers a model list (the sidecar's probes).
 */
import http from 'node:http';
import { parseArgs } from 'node:util';

function openaiFrames(): { pre: string; delta: (text: string) => string; tail: string } {
  const head =
    '{"id":"chatcmpl-paced","object":"chat.completion.chunk","created":1760000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":null,';
  const chunk = (delta: string, finish: string | null) =>
    `data: ${head}"choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : JSON.stringify(finish)}}]}\n\n`;
  return {
    pre: chunk('{"role":"assistant","content":"","refusal":null}', null),
    delta: (text) => chunk(`{"content":${JSON.stringify(text)}}`, null),
    tail: `${chunk('{}', 'stop')}data: [DONE]\n\n`,
  };
}

function anthropicFrames(): { pre: string; delta: (text: string) => string; tail: string } {
  const ev = (type: string, data: string) => `event: ${type}\ndata: {"type":"${type}"${data ? `,${data}` : ''}}\n\n`;
  return {
    pre:
      ev(
        'message_start',
        '"message":{"id":"msg_paced","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":212,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}',
      ) +
      `event: ping\ndata: {"type": "ping"}\n\n` +
      ev('content_block_start', '"index":0,"content_block":{"type":"text","text":""}'),
    delta: (text) => ev('content_block_delta', `"index":0,"delta":{"type":"text_delta","text":${JSON.stringify(text)}}`),
    tail:
      ev('content_block_stop', '"index":0') +
      ev('message_delta', '"delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}') +
      ev('message_stop', ''),
  };
}

export function startPaced(listen: string, firstMs: number, chunkMs: number, chunks: number): http.Server {
  const oa = openaiFrames();
  const an = anthropicFrames();
  const server = http.createServer({ keepAliveTimeout: 600_000, noDelay: true }, (req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET') {
      res.writeHead(url === '/__ready' || url.endsWith('/models') ? 200 : 404, { 'content-type': 'application/json' });
      res.end('{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"}]}');
      return;
    }
    const f = url.startsWith('/paced/anthropic/') ? an : oa;
    req.resume();
    req.once('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      res.write(f.pre);
      let i = 0;
      const timers: NodeJS.Timeout[] = [];
      res.once('close', () => {
        for (const t of timers) clearTimeout(t);
      });
      const next = () => {
        if (res.destroyed) return;
        if (i === 0) res.write(f.delta(`t${process.hrtime.bigint()}`));
        else res.write(f.delta(` word${i}`));
        i++;
        if (i >= chunks) {
          res.end(f.tail);
          return;
        }
        timers[0] = setTimeout(next, chunkMs);
      };
      timers[0] = setTimeout(next, firstMs);
    });
  });
  const i = listen.lastIndexOf(':');
  server.listen(Number(listen.slice(i + 1)), listen.slice(0, i));
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return server;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', default: '127.0.0.1:9100' },
      'first-ms': { type: 'string', default: '2' },
      'chunk-ms': { type: 'string', default: '5' },
      chunks: { type: 'string', default: '8' },
    },
  });
  startPaced(values.listen!, Number(values['first-ms']), Number(values['chunk-ms']), Number(values.chunks));
}
