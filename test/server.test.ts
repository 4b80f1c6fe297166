/**
 * The inbound side: routes, bad input in the OpenAI error shape with the right status,
 * HTTP/1.1 and cleartext HTTP/2 on one port, the admin endpoints.
 */
import http2 from 'node:http2';
import { connect } from 'node:net';
import t from 'tap';
import { Client } from 'undici';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';

t.test('bad requests get the OpenAI error shape with the right status, and nothing reaches a provider', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const url = `${h.sidecar.url}/model`;
  const cases: { name: string; body: string; headers?: Record<string, string>; status: number; code: string }[] = [
    { name: 'malformed JSON', body: '{"messages": [', status: 400, code: 'invalid_json' },
    { name: 'not an object', body: '[1,2]', status: 400, code: 'invalid_request_body' },
    { name: 'no messages', body: '{"temperature": 1}', status: 400, code: 'missing_messages' },
    { name: 'empty messages', body: '{"messages": []}', status: 400, code: 'missing_messages' },
    { name: 'a message without role', body: '{"messages": [{"content": "hi"}]}', status: 400, code: 'invalid_message' },
    { name: 'stream of the wrong type', body: JSON.stringify({ messages: HELLO, stream: 'yes' }), status: 400, code: 'invalid_type' },
    { name: 'model of the wrong type', body: JSON.stringify({ messages: HELLO, model: 4 }), status: 400, code: 'invalid_type' },
    {
      name: 'wrong content type',
      body: 'messages=hi',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      status: 415,
      code: 'unsupported_media_type',
    },
  ];
  for (const c of cases) {
    const res = await post(url, c.body, c.headers);
    t.equal(res.status, c.status, `${c.name}: status`);
    t.equal(res.json.error?.code, c.code, `${c.name}: code`);
    t.equal(res.json.error?.type, 'invalid_request_error', `${c.name}: type`);
    t.type(res.json.error?.message, 'string', `${c.name}: message`);
  }
  t.equal(h.sims.primary.requests.length, 0);
  const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  t.match(
    metrics,
    /^llm_failover_rejected_requests_total\{status_code="400",code="missing_messages"\} 2$/m,
    'rejections are counted by status and code',
  );
  t.match(metrics, /^llm_failover_rejected_requests_total\{status_code="415",code="unsupported_media_type"\} 1$/m);
});

t.test('unknown paths get 404 and other methods 405, in the OpenAI shape', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const notFound = await post(`${h.sidecar.url}/v1/embeddings`, { input: 'x' });
  t.equal(notFound.status, 404);
  t.equal(notFound.json.error?.code, 'not_found');
  const get = await fetch(`${h.sidecar.url}/v1/chat/completions`);
  t.equal(get.status, 405);
  t.equal(get.headers.get('allow'), 'POST');
  t.equal(((await get.json()) as { error: { code: string } }).error.code, 'method_not_allowed');
});

t.test('an oversized body gets 413 before it is all read', async (t) => {
  const { loadPlan } = await import('../sidecar/config/load.ts');
  const { startSidecar } = await import('../sidecar/runtime/main.ts');
  const { createLogger } = await import('../sidecar/observe/log.ts');
  const { backendYaml } = await import('./support/yaml.ts');
  const plan = loadPlan([
    {
      name: 't.yaml',
      text: `${backendYaml([{ name: 'p', group: 0 }], { p: 1 })}---\napiVersion: llm-failover.dev/v1alpha1\nkind: SidecarConfig\nspec:\n  listen: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  maxBodyBytes: 4096\n`,
    },
  ]);
  const sidecar = await startSidecar({ plan, logger: createLogger('silent') });
  t.teardown(() => sidecar.close());
  const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(10_000) }] });
  const declared = await post(`${sidecar.url}/model`, big);
  t.equal(declared.status, 413, 'Content-Length over the limit');
  t.equal(declared.json.error?.code, 'request_too_large');
  // chunked, no Content-Length: the limit is enforced while reading, and the rest is never read
  const { port } = new URL(sidecar.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.write('POST /model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
  const chunk = 'y'.repeat(2048);
  for (let i = 0; i < 3; i++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
  let reply = '';
  socket.on('data', (d) => (reply += d));
  await new Promise((resolve) => socket.once('close', resolve));
  t.match(reply, /^HTTP\/1\.1 413 /, 'streamed body over the limit');
  t.match(reply, /request_too_large/);
});

t.test('HTTP/2 with prior knowledge and HTTP/1.1 on the same port', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const client = new Client(h.sidecar.url, { allowH2: true, useH2c: true } as ConstructorParameters<typeof Client>[1]);
  t.teardown(() => client.close());
  for (const stream of [false, true]) {
    const res = await client.request({
      path: '/model',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: HELLO, stream }),
    });
    const text = await res.body.text();
    t.equal(res.statusCode, 200);
    t.equal(res.headers['x-llm-failover-provider'], 'primary');
    t.match(text, stream ? /data: \[DONE\]/ : /Hello from primary/, `h2c, stream=${stream}`);
  }
  // node's own HTTP/2 client, to be sure it is really HTTP/2
  const session = http2.connect(h.sidecar.url);
  t.teardown(() => session.close());
  const req = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
  req.end(JSON.stringify({ messages: HELLO }));
  const [headers, body] = await new Promise<[http2.IncomingHttpHeaders, string]>((resolve) => {
    let data = '';
    let hdrs: http2.IncomingHttpHeaders = {};
    req.on('response', (hh) => (hdrs = hh));
    req.on('data', (d) => (data += d));
    req.on('end', () => resolve([hdrs, data]));
  });
  t.equal(headers[':status'], 200);
  t.match(body, /Hello from primary/);
  const h1 = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(h1.status, 200, 'HTTP/1.1 on the same port');
});

t.test('admin: /healthz, /readyz and /status', async (t) => {
  const h = await startHarness([
    { name: 'primary', group: 0 },
    { name: 'fallback', group: 1 },
  ]);
  t.teardown(() => h.close());
  t.equal((await fetch(`${h.sidecar.adminUrl}/healthz`)).status, 200);
  t.equal((await fetch(`${h.sidecar.adminUrl}/readyz`)).status, 200);
  h.sims.primary.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '30' } });
  await h.client.chat.completions.create({ model: undefined as unknown as string, messages: HELLO });
  t.equal((await fetch(`${h.sidecar.adminUrl}/readyz`)).status, 200, 'a provider outage does not make the pod unready');
  const status = (await (await fetch(`${h.sidecar.adminUrl}/status`)).json()) as {
    backends: { groups: { priority: number; models: { name: string; state: string; lastStatus: number; cause: string }[] }[] }[];
  };
  const [g1, g2] = status.backends[0].groups;
  t.same([g1.priority, g1.models[0].name, g1.models[0].state, g1.models[0].lastStatus], [1, 'primary', 'cooling', 429]);
  t.match(g1.models[0].cause, /rate_limited/);
  t.same([g2.priority, g2.models[0].name, g2.models[0].state], [2, 'fallback', 'healthy']);
  t.equal(JSON.stringify(status).includes('sk-test-planted'), false, '/status carries no key');
  t.equal((await fetch(`${h.sidecar.adminUrl}/v1/chat/completions`, { method: 'POST' })).status, 405, 'the admin port cannot spend a key');
});

t.test('whole answers and errors arrive sized (content-length), not in chunked framing', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }]);
  t.teardown(() => h.close());
  const url = `${h.sidecar.url}/model`;
  const sized = (name: string, res: Awaited<ReturnType<typeof post>>, status: number) => {
    t.equal(res.status, status, `${name}: status`);
    t.equal(res.headers.get('content-length'), String(Buffer.byteLength(res.text)), `${name}: content-length is the body's size`);
    t.equal(res.headers.get('transfer-encoding'), null, `${name}: not chunked`);
  };
  sized('an answer', await post(url, { messages: [{ role: 'user', content: 'héllo, non-ASCII ✓' }] }), 200);
  sized('a bad request', await post(url, '{"messages": ['), 400);
  h.sims.primary.setFault({ kind: 'status', status: 400 }, { times: 1 });
  sized("the provider's own 4xx, handed back", await post(url, { messages: HELLO }), 400);
  h.sims.primary.setFault({ kind: 'status', status: 503 });
  sized('no model could answer', await post(url, { messages: HELLO }), 503);
});
