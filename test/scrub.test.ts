/**
 * The one scrubber, as a property: providers and proxies echo the credential they received
 * (in a 401's message, a 5xx page, a malformed stream event). Whatever the key's shape and
 * wherever the echo puts it (at every offset across the places where messages are cut),
 * no piece of 10 characters or more of any key reaches the client's body or error event, a
 * log line, /status, /metrics or a span.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import t from 'tap';
import { tracing } from './support/tracing.ts';
import { loadPlan } from '../sidecar/config/load.ts';
import { excerpt, redact } from '../sidecar/core/secret.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import { failoverYaml } from '../simulator/config.ts';
import { capturingLogger, HELLO } from './support/harness.ts';
import { post } from './support/wire.ts';
import { sidecarConfigYaml } from './support/yaml.ts';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
function random(n: number, seed: number): string {
  let x = seed;
  let out = '';
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out += ALNUM[x % ALNUM.length];
  }
  return out;
}

/** Every shape of key the plan accepts today. */
const SHAPES = {
  openai: `sk-proj-${random(48, 1)}`,
  anthropic: `sk-ant-api03-${random(86, 2)}-${random(6, 3)}AA`,
  opaque20: random(20, 4),
  opaque60: random(60, 5),
  /** An opaque key on an Anthropic model: no shape to recognise, only the plan's knowledge. */
  'anthropic-opaque': random(40, 6),
};

/** Every 10-character piece of a key. */
function pieces(key: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 10 <= key.length; i++) out.push(key.slice(i, i + 10));
  return out;
}

function leaks(text: string, key: string): string[] {
  return pieces(key).filter((p) => text.includes(p));
}

type Echo = { mode: 'status'; status: number; offset: number } | { mode: 'sse'; offset: number; afterContent: boolean };

/**
 * An OpenAI-compatible server that echoes the credential it received, `offset` characters into
 * its error message (a status answer) or into a stream event that is not JSON.
 */
async function echoServer(echo: { current: Echo }, kind: 'openai' | 'anthropic' = 'openai'): Promise<Server> {
  const server = createServer((req, res) => {
    const credential = String(req.headers.authorization ?? req.headers['x-api-key'] ?? '').replace(/^Bearer /, '');
    req.resume();
    req.on('end', () => {
      const e = echo.current;
      const filler = 'y'.repeat(e.offset);
      if (e.mode === 'status') {
        const message = `${filler}Incorrect API key provided: ${credential}. You can find your API key at the dashboard. ${'z'.repeat(400)}`;
        res.writeHead(e.status, { 'content-type': 'application/json' });
        if (kind === 'anthropic')
          res.end(JSON.stringify({ type: 'error', error: { type: e.status === 401 ? 'authentication_error' : 'api_error', message } }));
        else res.end(JSON.stringify({ error: { message, type: e.status === 401 ? 'invalid_request_error' : 'server_error', code: null } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (kind === 'anthropic') {
        res.write(
          `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude', content: [], usage: { input_tokens: 1, output_tokens: 0 } } })}\n\n`,
        );
        if (e.afterContent)
          res.write(
            `event: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: 'Hi' } })}\n\n`,
          );
        res.end(`event: content_block_delta\ndata: ${filler}not json, key ${credential} and more ${'z'.repeat(100)}\n\n`);
        return;
      }
      if (e.afterContent)
        res.write(
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hi' }, finish_reason: null }] })}\n\n`,
        );
      res.end(`data: ${filler}not json, key ${credential} and more ${'z'.repeat(100)}\n\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

t.test('excerpt: a key is scrubbed before the cut, so no fragment of it survives at any cut position', async (t) => {
  // the known keys are the plan's: load one holding them all
  const keys = Object.values(SHAPES);
  const yaml = failoverYaml(keys.map((k, i) => ({ name: `m${i}`, group: 0, port: 1000 + i, token: k })));
  loadPlan([{ name: 'keys.yaml', text: yaml }]);
  fc.assert(
    fc.property(fc.constantFrom(...keys), fc.nat(400), fc.integer({ min: 10, max: 400 }), (key, offset, max) => {
      const text = `${'a'.repeat(offset)}${key}${'b'.repeat(50)}`;
      return leaks(excerpt(text, max), key).length === 0 && leaks(redact(text), key).length === 0;
    }),
    { numRuns: 2000 },
  );
  // key-shaped strings nobody configured are scrubbed too
  for (const shape of ['sk-unknown-1234567890abcdef', 'AKIAABCDEFGHIJKLMNOP', `AIza${random(35, 9)}`, `Bearer ${random(40, 10)}`]) {
    t.notOk(redact(`echo: ${shape} end`).includes(shape.replace(/^Bearer /, '')), `${shape.slice(0, 6)}… is scrubbed`);
  }
});

for (const [shape, key] of Object.entries(SHAPES)) {
  // an Anthropic-shaped key on an Anthropic model (x-api-key, Anthropic's error and stream shapes); the others on OpenAI-compatible ones
  const kind = shape.startsWith('anthropic') ? ('anthropic' as const) : ('openai' as const);
  t.test(`a ${shape} key echoed at every offset reaches no output (${kind} wire format)`, async (t) => {
    const echo = { current: { mode: 'status', status: 500, offset: 0 } as Echo };
    const primary = await echoServer(echo, kind);
    const fallback = await echoServer(echo, kind);
    t.teardown(() => {
      primary.close();
      fallback.close();
    });
    const port = (s: Server) => (s.address() as AddressInfo).port;
    const yaml = failoverYaml([
      { name: 'primary', kind, group: 0, port: port(primary), token: key },
      { name: 'fallback', kind, group: 1, port: port(fallback), token: key },
    ]);
    const plan = loadPlan([{ name: 'scrub.yaml', text: `${yaml}${sidecarConfigYaml()}` }], { env: {} });
    const logs: string[] = [];
    const { finished, tracerProvider } = tracing();
    const sidecar = await startSidecar({ plan, logger: capturingLogger(logs), probes: false, tracerProvider, env: {} });
    t.teardown(() => sidecar.close());
    const reset = () => {
      for (const m of sidecar.health.models()) {
        sidecar.monitor.breakers.close(m);
        sidecar.health.set(m, 'healthy', 'test reset');
      }
    };

    const bodies: string[] = [];
    // the message is cut at 300 characters (classifyStatus) and a malformed event at 80:
    // every offset from before the start to past the cut
    for (let offset = 0; offset <= 330; offset += 1) {
      for (const status of [401, 500]) {
        echo.current = { mode: 'status', status, offset };
        reset();
        bodies.push((await post(`${sidecar.url}/model`, { messages: HELLO })).text);
      }
    }
    for (let offset = 0; offset <= 100; offset += 1) {
      for (const afterContent of [false, true]) {
        echo.current = { mode: 'sse', offset, afterContent };
        reset();
        bodies.push((await post(`${sidecar.url}/model`, { messages: HELLO, stream: true })).text);
      }
    }
    const outputs = {
      'client bodies and error events': bodies.join('\n'),
      logs: logs.join(''),
      '/status': await (await fetch(`${sidecar.adminUrl}/status`)).text(),
      '/metrics': await (await fetch(`${sidecar.adminUrl}/metrics`)).text(),
      spans: JSON.stringify(
        (await finished()).map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status, links: s.links })),
      ),
    };
    t.match(outputs['client bodies and error events'], /Incorrect API key provided/, 'the echoes reached the client, scrubbed');
    t.match(outputs.logs, /Incorrect API key provided/, 'and the logs');
    t.match(outputs.spans, /Incorrect API key provided/, 'and the spans');
    for (const [where, text] of Object.entries(outputs)) t.same(leaks(text, key), [], `no 10-character piece of the key in ${where}`);
  });
}

t.test("a client's own credential (Passthrough) echoed at every offset reaches no output", async (t) => {
  const echo = { current: { mode: 'status', status: 500, offset: 0 } as Echo };
  const upstream = await echoServer(echo);
  t.teardown(() => upstream.close());
  const yaml = failoverYaml([{ name: 'primary', group: 0, port: (upstream.address() as AddressInfo).port, token: 'unused' }]).replace(
    /kind: Inline\n\s+inline: \S+/,
    'kind: Passthrough',
  );
  const plan = loadPlan([{ name: 'scrub.yaml', text: `${yaml}${sidecarConfigYaml()}` }], { env: {} });
  const logs: string[] = [];
  const sidecar = await startSidecar({ plan, logger: capturingLogger(logs), probes: false, env: {} });
  t.teardown(() => sidecar.close());
  const token = `opaque${random(34, 77)}`;
  const bodies: string[] = [];
  const model = sidecar.health.models()[0];
  for (let offset = 0; offset <= 330; offset += 3) {
    for (const e of [
      { mode: 'status', status: 500, offset },
      { mode: 'sse', offset: offset % 101, afterContent: offset % 2 === 0 },
    ] as Echo[]) {
      echo.current = e;
      sidecar.monitor.breakers.close(model);
      sidecar.health.set(model, 'healthy', 'test reset');
      bodies.push(
        (await post(`${sidecar.url}/model`, { messages: HELLO, stream: e.mode === 'sse' }, { authorization: `Bearer ${token}` })).text,
      );
    }
  }
  const outputs = { bodies: bodies.join('\n'), logs: logs.join(''), status: await (await fetch(`${sidecar.adminUrl}/status`)).text() };
  t.match(outputs.bodies, /Incorrect API key provided/, 'the echoes reached the client, scrubbed');
  for (const [where, text] of Object.entries(outputs))
    t.same(leaks(text, token), [], `no 10-character piece of the client's token in ${where}`);
});
