/**
 * Hostile and broken clients, over plain sockets and fetch: malformed and mistyped bodies,
 * invalid UTF-8, deep nesting, oversized bodies and headers, slowloris, a reader too slow for the
 * stream (backpressure, measured on a child process's RSS), and clients that disconnect at every
 * phase. Each gets the OpenAI error shape with the right status where it can still receive one,
 * no upstream request is left behind, and the sidecar keeps serving everyone else.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { RequestEvent } from '../sidecar/observe/events.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { startChildSidecar } from './support/child.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import { eventually, sleep, within } from './support/wait.ts';
import { parseRawResponse, post, rawConnect, rawExchange, sseData, streamedContent } from './support/wire.ts';
import { backendYaml, policyYaml, TEST_KEY } from './support/yaml.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];
const BODY = JSON.stringify({ messages: HELLO });
const execFileP = promisify(execFile);
const portOf = (h: Harness) => Number(new URL(h.sidecar.url).port);

function request(body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const head = Object.entries({ host: 'sidecar', ...headers, 'content-length': String(b.length), connection: 'close' })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return Buffer.concat([Buffer.from(`POST /model HTTP/1.1\r\n${head}\r\n`), b]);
}

type ErrorJson = { error?: { message?: string; type?: string; code?: string | null; param?: unknown } };

t.test('bad bodies and content types get the OpenAI error shape with the right status; nothing reaches a provider', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const deepOpen = '['.repeat(100_000);
  const deepClosed = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
  // code undefined: any code (a depth limit, say, may refuse first)
  const cases: { name: string; body: string | Buffer; headers?: Record<string, string>; status: number; code?: string }[] = [
    { name: 'malformed JSON', body: '{"messages": [{"role": "user", "content": "hi"}', status: 400, code: 'invalid_json' },
    { name: 'a JSON string', body: '"messages"', status: 400, code: 'invalid_request_body' },
    { name: 'null', body: 'null', status: 400, code: 'invalid_request_body' },
    { name: 'an empty body', body: '', status: 400, code: 'invalid_json' },
    { name: 'no messages', body: '{"model": "gpt-4o"}', status: 400, code: 'missing_messages' },
    { name: 'messages is a string', body: '{"messages": "hi"}', status: 400, code: 'missing_messages' },
    { name: 'messages is an object', body: '{"messages": {"role": "user"}}', status: 400, code: 'missing_messages' },
    { name: 'a message that is a number', body: '{"messages": [1]}', status: 400, code: 'invalid_message' },
    {
      name: 'a message whose role is a number',
      body: '{"messages": [{"role": 1, "content": "hi"}]}',
      status: 400,
      code: 'invalid_message',
    },
    { name: 'a null message', body: '{"messages": [null]}', status: 400, code: 'invalid_message' },
    { name: 'stream is a string', body: JSON.stringify({ messages: HELLO, stream: 'true' }), status: 400, code: 'invalid_type' },
    { name: 'stream is a number', body: JSON.stringify({ messages: HELLO, stream: 1 }), status: 400, code: 'invalid_type' },
    { name: 'model is an object', body: JSON.stringify({ messages: HELLO, model: { name: 'gpt-4o' } }), status: 400, code: 'invalid_type' },
    {
      name: 'invalid UTF-8 (a lone continuation byte)',
      body: Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'), Buffer.from([0x80, 0xff]), Buffer.from('"}]}')]),
      status: 400,
      code: 'invalid_utf8',
    },
    {
      name: 'invalid UTF-8 (an encoded surrogate)',
      body: Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}]}')]),
      status: 400,
      code: 'invalid_utf8',
    },
    {
      name: 'invalid UTF-8 (overlong encoding of "/")',
      body: Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}]}')]),
      status: 400,
      code: 'invalid_utf8',
    },
    { name: '100k unclosed [', body: deepOpen, status: 400 },
    { name: '100k nested arrays as the body', body: deepClosed, status: 400 },
    {
      name: 'a form body (form)',
      body: 'messages=hi',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      name: 'not JSON (text/plain)',
      body: 'hello',
      headers: { 'content-type': 'text/plain' },
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      name: 'not JSON (multipart)',
      body: '--x\r\ncontent-disposition: form-data; name="messages"\r\n\r\nhi\r\n--x--\r\n',
      headers: { 'content-type': 'multipart/form-data; boundary=x' },
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      name: 'malformed JSON under a JSON type',
      body: '{"messages": [',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      status: 400,
      code: 'invalid_json',
    },
  ];
  for (const c of cases) {
    const raw = await rawExchange(portOf(h), request(c.body, c.headers ?? { 'content-type': 'application/json' }));
    const res = parseRawResponse(raw);
    t.equal(res.status, c.status, `${c.name}: ${c.status}`);
    t.match(res.headers['content-type'], /^application\/json/, `${c.name}: JSON`);
    const json = JSON.parse(res.body) as ErrorJson;
    if (c.code) t.equal(json.error?.code, c.code, `${c.name}: code ${c.code}`);
    else t.type(json.error?.code, 'string', `${c.name}: a code`);
    t.equal(json.error?.type, 'invalid_request_error', `${c.name}: type`);
    t.type(json.error?.message, 'string', `${c.name}: message`);
    t.ok((json.error?.message?.length ?? 0) < 500, `${c.name}: a short message (the input is not echoed whole)`);
    if (c.status === 415)
      t.match(
        json.error?.message,
        /not JSON .*content-type is .*application\/json/,
        `${c.name}: says the body is not JSON and what to send`,
      );
  }
  t.equal(h.sims.primary.requests.length + h.sims.fallback.requests.length, 0, 'nothing reached a provider');

  // accepted by design, as OpenAI's API does: a JSON body whatever the content type says (curl -d
  // sends form-urlencoded), no content type at all, a charset, a +json type
  const accepted = [
    {},
    { 'content-type': 'application/json; charset=utf-8' },
    { 'content-type': 'application/vnd.api+json' },
    { 'content-type': 'application/x-www-form-urlencoded' },
    { 'content-type': 'text/plain' },
    { 'content-type': 'application/jsonp' },
  ] as Record<string, string>[];
  for (const headers of accepted) {
    const res = parseRawResponse(await rawExchange(portOf(h), request(BODY, headers)));
    t.equal(res.status, 200, `content type ${headers['content-type'] ?? '(none)'} is accepted`);
  }
  const after = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(after.status, 200, 'and the sidecar serves normally');
});

const CURL = ['/usr/bin/curl', '/usr/local/bin/curl'].find((p) => existsSync(p));

t.test(
  'plain `curl -d` (form-urlencoded) with a JSON body is served; with a form body it is told to send JSON',
  { skip: CURL ? false : 'no curl here' },
  async (t) => {
    const h = await startHarness(TWO);
    t.teardown(() => h.close());
    const curl = async (data: string) => {
      const { stdout } = await execFileP(CURL!, ['-s', '--noproxy', '*', '-w', '\n%{http_code}', '-d', data, `${h.sidecar.url}/model`]);
      const nl = stdout.lastIndexOf('\n');
      return {
        status: Number(stdout.slice(nl + 1)),
        json: JSON.parse(stdout.slice(0, nl)) as ErrorJson & { choices?: { message: { content: string } }[] },
      };
    };
    const served = await curl(BODY);
    t.equal(served.status, 200, 'a JSON body is served');
    t.equal(served.json.choices?.[0]?.message.content, 'Hello from primary', 'with the answer');
    const form = await curl('messages=hi');
    t.equal(form.status, 415, 'a form body: 415');
    t.equal(form.json.error?.code, 'unsupported_media_type');
    t.match(
      form.json.error?.message,
      /not JSON .*application\/x-www-form-urlencoded.*send a JSON chat request/,
      'the message says what is wrong and what to send',
    );
  },
);

// docs/reliability.md, "Hostile and broken clients": parsed without recursion; forwarded as is
// when it is an extra field, whether or not the client also names a model (the model is replaced
// in the raw bytes, nothing is re-serialised)
for (const model of [undefined, 'gpt-4o']) {
  t.test(
    `a valid request carrying 100k levels of nesting in an extra field${model ? ', naming its own model,' : ''} is forwarded as is and served`,
    async (t) => {
      const h = await startHarness(TWO);
      t.teardown(() => h.close());
      const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
      const res = await post(
        `${h.sidecar.url}/model`,
        `{${model ? `"model":"${model}",` : ''}"messages":${JSON.stringify(HELLO)},"x_extra":${deep}}`,
      );
      t.equal(res.status, 200, `served (got ${res.status} ${res.json?.error?.code ?? ''})`);
      t.equal(res.headers.get('x-llm-failover-provider'), 'primary', 'by the first model: nothing blamed on it');
      t.equal((res.json.choices as { message: { content: string } }[] | undefined)?.[0]?.message.content, 'Hello from primary');
      const up = h.sims.primary.requests[0];
      t.ok(up?.raw.includes(`"x_extra":${deep}`), 'the extra field reached the provider byte for byte');
      t.equal(up?.body?.model, 'primary', "with the provider's model");
      t.same(up?.body?.messages, HELLO, 'and the messages');
      t.equal(h.sims.fallback.requests.length, 0, 'no failover');
      t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200, 'and the sidecar serves normally');
    },
  );
}

t.test('a body starting with a UTF-8 byte order mark is accepted, and the mark is not forwarded', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  for (const stream of [false, true]) {
    const before = h.sims.primary.requests.length;
    const res = await post(
      `${h.sidecar.url}/model`,
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ messages: HELLO, stream }))]).toString('utf8'),
    );
    t.equal(res.status, 200, `stream ${stream}: accepted (got ${res.status} ${res.json?.error?.code ?? ''})`);
    t.equal(res.headers.get('x-llm-failover-provider'), 'primary');
    if (stream) t.equal(streamedContent(res.text), 'Hello from primary', 'a whole stream');
    const up = h.sims.primary.requests[before];
    t.ok(up, 'the request reached the provider');
    t.notOk(up?.raw.startsWith('\uFEFF'), 'without the byte order mark');
    t.same(up?.body?.messages, HELLO, 'and the provider parsed what it got');
  }
});

t.test('an oversized body gets 413 while the client still has bytes to send', async (t) => {
  const h = await startHarness(TWO, { server: '  maxBodyBytes: 4096\n' });
  t.teardown(() => h.close());

  await t.test('declared by Content-Length', async (t) => {
    const c = await rawConnect(portOf(h));
    const declared = 1 << 20;
    c.socket.write(
      `POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n\r\n${'{"messages":['.padEnd(1024, ' ')}`,
    );
    await c.waitFor(/^HTTP\/1\.1 /);
    await within(c.closed, 5000);
    const res = parseRawResponse(c.received());
    t.equal(res.status, 413, `413 after 1 KiB of the ${declared} bytes announced`);
    t.equal((JSON.parse(res.body) as ErrorJson).error?.code, 'request_too_large');
    t.equal(res.headers.connection, 'close', 'and the connection is closed: the rest is never read');
    t.ok(await eventually(() => c.isClosed()), 'closed');
    c.socket.destroy();
  });

  await t.test('chunked, no Content-Length: the limit is enforced while reading', async (t) => {
    const c = await rawConnect(portOf(h));
    c.socket.write('POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    const planned = 1 << 20;
    let sent = 0;
    const piece = 'y'.repeat(1024);
    while (sent < planned && c.received() === '' && !c.isClosed()) {
      c.socket.write(`400\r\n${piece}\r\n`);
      sent += piece.length;
      await sleep(5);
    }
    const res = parseRawResponse(await c.waitFor(/\r\n\r\n/));
    t.equal(res.status, 413, '413');
    t.ok(sent < 64 * 1024, `answered after ${sent} of the ${planned} bytes the client meant to send`);
    c.socket.destroy();
  });
  t.equal(h.sims.primary.requests.length, 0, 'nothing reached a provider');
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200, 'and the sidecar serves normally');
});

t.test('oversized or too many headers: 431 with the OpenAI error body, connection closed', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  let many = '';
  for (let i = 0; i < 3000; i++) many += `x-h${i}: ${'v'.repeat(10)}\r\n`;
  const cases = [
    { name: 'one 40 KiB header', headers: `x-big: ${'b'.repeat(40_000)}\r\n` },
    { name: '3000 headers', headers: many },
    { name: 'a 40 KiB request target', target: `/model?${'q'.repeat(40_000)}`, headers: '' },
  ];
  for (const c of cases) {
    const conn = await rawConnect(portOf(h));
    conn.socket.write(
      `POST ${c.target ?? '/model'} HTTP/1.1\r\nhost: x\r\n${c.headers}content-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`,
    );
    await within(conn.closed, 5000);
    const res = parseRawResponse(conn.received());
    t.equal(res.status, 431, `${c.name}: 431`);
    const json = JSON.parse(res.body) as ErrorJson;
    t.equal(json.error?.code, 'headers_too_large', `${c.name}: code`);
    t.equal(json.error?.type, 'invalid_request_error', `${c.name}: type`);
    t.ok(conn.isClosed(), `${c.name}: the connection is closed`);
  }
  t.equal(h.sims.primary.requests.length, 0, 'nothing reached a provider');
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200, 'and the sidecar serves normally');
});

t.test('a connection that never sends a byte is closed after headersTimeout', async (t) => {
  const h = await startHarness(TWO, { server: '  headersTimeout: 500ms\n' });
  t.teardown(() => h.close());
  const c = await rawConnect(portOf(h));
  t.ok(await eventually(() => c.isClosed(), 5000), 'closed by the sidecar (bounded at 10x the timeout)');
  t.equal(c.received(), '', 'nothing to say to a client that said nothing');
});

/** Sends `text` one byte every `everyMs`, for at most `forMs`, stopping when the server answers or closes. */
async function trickle(c: Awaited<ReturnType<typeof rawConnect>>, text: string, everyMs: number, forMs: number): Promise<number> {
  const end = Date.now() + forMs;
  let i = 0;
  for (; i < text.length && Date.now() < end && c.received() === '' && !c.isClosed(); i++) {
    c.socket.write(text[i]);
    await sleep(everyMs);
  }
  return i;
}

t.test('slowloris: headers sent one byte at a time get a 408 with the JSON body and the socket is closed', async (t) => {
  const h = await startHarness(TWO, { server: '  headersTimeout: 500ms\n' });
  t.teardown(() => h.close());
  const c = await rawConnect(portOf(h));
  const headers = `POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-padding: ${'p'.repeat(200)}\r\ncontent-length: ${BODY.length}\r\n\r\n`;
  const sent = await trickle(c, headers, 50, 2500);
  await within(c.closed, 1000);
  t.ok(sent < headers.length, `answered before the headers were complete (${sent} of ${headers.length} bytes)`);
  const res = parseRawResponse(c.received());
  t.equal(res.status, 408, '408');
  t.equal((JSON.parse(res.body || '{}') as ErrorJson).error?.code, 'request_timeout');
  t.ok(c.isClosed(), 'the socket is closed');
  c.socket.destroy();
});

t.test('a body sent one byte at a time past requestBodyTimeout gets a 408 and frees its slot', async (t) => {
  const h = await startHarness(TWO, {
    server: '  headersTimeout: 500ms\n  requestBodyTimeout: 1s\n  maxConcurrentRequests: 1\n  maxQueuedRequests: 0\n',
  });
  t.teardown(() => h.close());
  const c = await rawConnect(portOf(h));
  c.socket.write(`POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n`);
  await trickle(c, BODY, 50, 2500);
  await within(c.closed, 1000);
  const res = parseRawResponse(c.received());
  t.equal(res.status, 408, '408');
  t.ok(c.isClosed(), 'the socket is closed');
  c.socket.destroy();
  t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200, 'its admission slot was freed');
});

t.test("a client that reads a huge stream slowly: backpressure holds the sidecar's memory flat (child process)", async (t) => {
  const BIG = 100 * 1024 * 1024;
  const content = 'x'.repeat(BIG);
  const sim = await startOpenAISimulator({
    model: 'big',
    apiKey: TEST_KEY,
    reply: (body) => ({ content: body?.messages?.[0]?.content === 'big' ? content : 'small answer' }),
  });
  t.teardown(() => sim.close());
  const dir = mkdtempSync(join(tmpdir(), 'reliability-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(config, backendYaml([{ name: 'big', group: 0 }], { big: sim.port }) + policyYaml('  maxStreamBytes: 1073741824\n'));
  const child = await startChildSidecar(config);
  t.teardown(() => child.kill());

  // warm up: both kinds of answer, so the baseline includes the code paths the big stream takes
  for (let i = 0; i < 5; i++) {
    for (const stream of [false, true]) t.equal((await post(`${child.url}/model`, { messages: HELLO, stream })).status, 200);
  }
  await sleep(200);
  const baseline = child.rss();

  const { port } = new URL(child.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  let received = 0;
  let tail = '';
  socket.on('data', (d: Buffer) => {
    received += d.length;
    tail = (tail + d.toString('latin1')).slice(-200);
  });
  const body = JSON.stringify({ messages: [{ role: 'user', content: 'big' }], stream: true });
  socket.write(
    `POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
  t.ok(await eventually(() => received >= 8192, 10_000), 'the stream started');
  socket.pause();
  const readBeforePause = received;
  await sleep(1500);
  const grown = child.rss() - baseline;
  t.ok(
    grown < 40 * 1024 * 1024,
    `RSS grew by ${(grown / 1048576).toFixed(1)} MiB while a ${BIG / 1048576} MiB stream waited for the client (bound 40 MiB)`,
  );
  t.equal(sim.inFlight(), 1, 'the provider is still held back, not drained into the sidecar');
  t.ok(received - readBeforePause < 16 * 1024 * 1024, 'and the client was not flooded either');

  socket.resume();
  const closed = once(socket, 'close');
  await within(closed, 30_000);
  t.ok(received > BIG, `the whole stream arrived once the client read again (${(received / 1048576).toFixed(0)} MiB)`);
  t.match(tail, /data: \[DONE\]\n\n\r\n0\r\n\r\n$/, 'ending in [DONE]');
  socket.destroy();
  t.equal((await post(`${child.url}/model`, { messages: HELLO })).status, 200, 'and the sidecar serves normally');
});

t.test("a client that pauses reading longer than streamIdle is not the model's fault", async (t) => {
  const content = 'x'.repeat(20 * 1024 * 1024);
  const h = await startHarness(
    [
      { name: 'primary', group: 0, sim: { reply: () => ({ content }) } },
      { name: 'fallback', group: 1 },
    ],
    { policy: '  timeouts:\n    streamIdle: 300ms\n  maxStreamBytes: 1073741824\n' },
  );
  t.teardown(() => h.close());
  const c = await rawConnect(portOf(h));
  c.socket.write(request(JSON.stringify({ messages: HELLO, stream: true })));
  await c.waitFor(/chat\.completion\.chunk/);
  c.socket.pause();
  await sleep(1000);
  c.socket.resume();
  await within(c.closed, 15_000);
  const raw = c.received();
  t.match(raw.slice(-100), /data: \[DONE\]\n\n/, 'the stream finishes once the client reads again');
  t.notMatch(raw.slice(-1000), /stream_interrupted/, 'it is not cut');
  t.equal(h.sidecar.monitor.breakers.stats(h.sidecar.health.models()[0])?.failures, 0, 'and no failure is charged to the model');
  c.socket.destroy();
});

t.test('a client that disconnects at any phase: the upstream request is aborted, nothing leaks, everyone else is served', async (t) => {
  // short words, under 1 KiB in all, so the simulator streams one word per chunk: 120 chunks, 50 ms apart
  const long = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
  const phases: {
    name: string;
    stream?: boolean;
    setup?: (h: Harness) => void;
    act: (h: Harness) => Promise<() => void>;
    reachedUpstream: boolean;
  }[] = [
    {
      name: 'mid-headers',
      reachedUpstream: false,
      act: async (h) => {
        const c = await rawConnect(portOf(h));
        c.socket.write('POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: appl');
        await sleep(50);
        return () => c.socket.destroy();
      },
    },
    {
      name: 'mid-body',
      reachedUpstream: false,
      act: async (h) => {
        const c = await rawConnect(portOf(h));
        c.socket.write(
          `POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length + 1000}\r\n\r\n${BODY.slice(0, 10)}`,
        );
        await eventually(() => h.sidecar.inFlight() === 1);
        return () => c.socket.destroy();
      },
    },
    ...[false, true].map((stream) => ({
      name: `while waiting for the upstream answer (${stream ? 'streamed' : 'not streamed'})`,
      stream,
      reachedUpstream: true,
      setup: (h: Harness) => h.sims.primary.setFault({ kind: 'hang' }, { times: 1 }),
      act: async (h: Harness) => {
        const c = await rawConnect(portOf(h));
        c.socket.write(request(JSON.stringify({ messages: HELLO, stream })));
        await eventually(() => h.sims.primary.inFlight() === 1);
        return () => c.socket.destroy();
      },
    })),
    {
      name: 'mid-stream (HTTP/1.1)',
      stream: true,
      reachedUpstream: true,
      act: async (h) => {
        const c = await rawConnect(portOf(h));
        c.socket.write(request(JSON.stringify({ messages: [{ role: 'user', content: 'long' }], stream: true })));
        await c.waitFor(/"content":"word0"/);
        return () => c.socket.destroy();
      },
    },
  ];
  for (const p of phases) {
    await t.test(p.name, async (t) => {
      const h = await startHarness(
        [
          {
            name: 'primary',
            group: 0,
            sim: { chunkDelayMs: 50, reply: (b) => ({ content: b?.messages?.[0]?.content === 'long' ? long : 'Hello from primary' }) },
          },
          { name: 'fallback', group: 1 },
        ],
        { server: '  maxConcurrentRequests: 2\n  maxQueuedRequests: 0\n' },
      );
      t.teardown(() => h.close());
      const requests: RequestEvent[] = [];
      h.sidecar.events.on('request', (e) => requests.push(e));
      p.setup?.(h);
      const disconnect = await p.act(h);
      // someone else, while the broken client holds its connection
      const bystander = await post(`${h.sidecar.url}/model`, { messages: HELLO });
      t.equal(bystander.status, 200, 'a concurrent request is served');
      disconnect();
      // bounded well under the 6 s the long stream would take by itself
      t.ok(
        await eventually(() => h.sims.primary.inFlight() === 0 && h.sidecar.inFlight() === 0, 2000),
        'the upstream request is aborted and the inbound one is gone',
      );
      t.equal(h.sims.fallback.requests.length, 0, 'no other attempt was started for it');
      const mine = requests.filter((r) => r.status !== 200 || r.outcome !== 'ok');
      if (p.reachedUpstream) {
        t.ok(await eventually(() => requests.some((r) => r.outcome === 'client_gone')), 'its request is recorded as client_gone');
      } else {
        t.same(mine, [], 'it never became a request');
      }
      const primary = h.sidecar.health.models()[0];
      t.equal(h.sidecar.health.state(primary), 'healthy', 'a client leaving says nothing of the model');
      t.equal(h.sidecar.monitor.breakers.stats(primary)?.failures, 0, 'no failure charged to the model');
      // both admission slots are free again: two concurrent requests, no queue, both served
      const after = await Promise.all([
        post(`${h.sidecar.url}/model`, { messages: HELLO }),
        post(`${h.sidecar.url}/model`, { messages: HELLO, stream: true }),
      ]);
      t.same(
        after.map((r) => r.status),
        [200, 200],
        'its slot was freed: the sidecar serves everyone after it',
      );
      t.equal(sseData(after[1].text).at(-1), '[DONE]');
      t.equal(streamedContent(after[1].text), 'Hello from primary');
    });
  }
});

t.test('an HTTP/2 client that cancels its stream: the upstream request is aborted and nothing more is attempted', async (t) => {
  const long = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
  for (const stream of [true, false]) {
    await t.test(stream ? 'mid-stream' : 'while waiting for the upstream answer', async (t) => {
      const h = await startHarness(
        [
          {
            name: 'primary',
            group: 0,
            sim: { chunkDelayMs: 50, reply: (b) => ({ content: b?.messages?.[0]?.content === 'long' ? long : 'Hello from primary' }) },
          },
          { name: 'fallback', group: 1 },
        ],
        { policy: '  timeouts:\n    response: 1s\n    streamIdle: 2s\n' },
      );
      t.teardown(() => h.close());
      if (!stream) h.sims.primary.setFault({ kind: 'hang' }, { times: 1 });
      const requests: RequestEvent[] = [];
      h.sidecar.events.on('request', (e) => requests.push(e));
      const session = http2.connect(h.sidecar.url);
      session.on('error', () => undefined);
      t.teardown(() => session.destroy());
      const req = session.request({ ':method': 'POST', ':path': '/model', 'content-type': 'application/json' });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ messages: [{ role: 'user', content: 'long' }], stream }));
      let got = '';
      req.on('data', (d) => (got += d));
      t.ok(
        await eventually(() => (stream ? got.includes('"content":"word0"') : h.sims.primary.inFlight() === 1), 5000),
        'the request is under way',
      );
      req.close(http2.constants.NGHTTP2_CANCEL);
      t.ok(
        await eventually(() => h.sims.primary.inFlight() === 0, 800),
        'the upstream request is aborted (well before the 1 s / 2 s timeouts)',
      );
      await eventually(() => requests.length > 0, 3000);
      t.equal(requests[0]?.outcome, 'client_gone', 'recorded as client_gone');
      t.equal(h.sims.fallback.requests.length, 0, 'no fallback call is spent on a client that is gone');
      t.equal(h.sidecar.monitor.breakers.stats(h.sidecar.health.models()[0])?.failures, 0, 'nothing is charged to the model');
    });
  }
});

t.test('the admin port is bounded like the proxy port: silent and half-sent connections are closed after headersTimeout', async (t) => {
  const h = await startHarness(TWO, { server: '  headersTimeout: 500ms\n' });
  t.teardown(() => h.close());
  const adminPort = Number(new URL(h.sidecar.adminUrl).port);
  const silent = await rawConnect(adminPort);
  const half = await rawConnect(adminPort);
  half.socket.write('GET /status HTTP/1.1\r\nhost: x\r\n');
  t.ok(await eventually(() => silent.isClosed(), 5000), 'a connection that never sends a byte is closed');
  t.ok(await eventually(() => half.isClosed(), 5000), 'a request whose headers never end is closed');
  const ok = await fetch(`${h.sidecar.adminUrl}/healthz`);
  t.equal(ok.status, 200, 'and the admin port still answers');
  await ok.text();
});

t.test('the admin port caps its connections; /status is scrubbed of keys', async (t) => {
  const h = await startHarness(TWO, { server: '  headersTimeout: 10s\n  maxConnections: 4\n' });
  t.teardown(() => h.close());
  const adminPort = Number(new URL(h.sidecar.adminUrl).port);
  const held = await Promise.all(Array.from({ length: 4 }, () => rawConnect(adminPort)));
  t.ok(await eventually(() => held.every((c) => !c.isClosed()), 200), 'four idle connections are held');
  const over = await rawConnect(adminPort);
  t.ok(await eventually(() => over.isClosed(), 3000), 'a fifth is closed at once (well before the 10 s header timeout)');
  for (const c of held) c.socket.destroy();
  await Promise.all(held.map((c) => c.closed));

  // a provider (or a probe) that echoed the key: /status quotes its message, scrubbed
  const model = h.sidecar.health.models()[0];
  h.sidecar.health.set(model, 'unhealthy', `the provider said: bad key Bearer ${TEST_KEY}`, { error: `401 for key ${TEST_KEY}` });
  const status = await fetch(`${h.sidecar.adminUrl}/status`);
  t.equal(status.status, 200, 'once the held connections are gone, the admin port answers');
  const text = await status.text();
  t.notOk(text.includes(TEST_KEY), 'no key in /status');
  t.match(text, /\[redacted\]/, 'where the key was');
  t.doesNotThrow(() => JSON.parse(text), 'still JSON');
});
