// The simulated providers must be faithful enough that the official SDKs accept
// them as the real APIs, and their faults must look like the real failures.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import t from 'tap';
import { startAnthropicSimulator, startOpenAISimulator } from '../simulator/index.ts';
import type { Fault, JsonBody, SimulatedProvider, SimulatorOptions } from '../simulator/index.ts';

const USER = [{ role: 'user' as const, content: 'Hi there' }];
const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const toolReply = () => ({
  content: 'Let me check.',
  toolCalls: [{ name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' }],
});

/** The part of a tap test the helpers need. */
interface Test {
  teardown(fn: () => unknown): void;
}

async function openaiSim(tt: Test, opts: Partial<SimulatorOptions> = {}) {
  const sim = await startOpenAISimulator({ model: 'gpt-sim', ...opts });
  tt.teardown(() => sim.close());
  const client = new OpenAI({ apiKey: opts.apiKey ?? 'sk-test', baseURL: `${sim.url}/v1`, maxRetries: 0, timeout: 5000 });
  return { sim, client };
}

async function anthropicSim(tt: Test, opts: Partial<SimulatorOptions> = {}) {
  const sim = await startAnthropicSimulator({ model: 'claude-sim', ...opts });
  tt.teardown(() => sim.close());
  const client = new Anthropic({ apiKey: opts.apiKey ?? 'sk-ant-test', baseURL: sim.url, maxRetries: 0, timeout: 5000 });
  return { sim, client };
}

/** The rejection of `p` (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: signal ?? AbortSignal.timeout(5000),
  });
}

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---- OpenAI -----------------------------------------------------------------

t.test('openai: non-stream text, usage and recorded request', async (t) => {
  const { sim, client } = await openaiSim(t);
  const res = await client.chat.completions.create({ model: 'gpt-sim', messages: USER });
  t.match(res.id, /^chatcmpl-/);
  t.equal(res.object, 'chat.completion');
  t.equal(res.model, 'gpt-sim');
  t.equal(res.choices[0].message.role, 'assistant');
  t.equal(res.choices[0].message.content, 'Hello from gpt-sim');
  t.equal(res.choices[0].finish_reason, 'stop');
  t.ok(res.usage && res.usage.prompt_tokens > 0 && res.usage.completion_tokens > 0);
  t.equal(res.usage?.total_tokens, (res.usage?.prompt_tokens ?? 0) + (res.usage?.completion_tokens ?? 0));

  t.equal(sim.requests.length, 1);
  const [req] = sim.requests;
  t.equal(req.method, 'POST');
  t.equal(req.path, '/v1/chat/completions');
  t.equal(req.headers.authorization, 'Bearer sk-test');
  t.same(req.body.messages, USER);
  t.equal(sim.inFlight(), 0);
  sim.reset();
  t.equal(sim.requests.length, 0);
});

t.test('openai: stream text in several chunks with include_usage', async (t) => {
  const { client } = await openaiSim(t, {
    reply: () => ({ content: 'one two three four', usage: { promptTokens: 11, completionTokens: 4, cacheReadTokens: 3 } }),
  });
  const stream = await client.chat.completions.create({
    model: 'gpt-sim',
    messages: USER,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  t.equal(chunks[0].choices[0].delta.role, 'assistant');
  t.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  t.equal(text, 'one two three four');
  t.ok(chunks.filter((c) => c.choices[0]?.delta.content).length >= 4, 'content arrives in several chunks');
  const finish = chunks.find((c) => c.choices[0]?.finish_reason);
  t.equal(finish?.choices[0].finish_reason, 'stop');
  const last = chunks[chunks.length - 1];
  t.same(last.choices, []);
  t.equal(last.usage?.prompt_tokens, 11);
  t.equal(last.usage?.completion_tokens, 4);
  t.equal(last.usage?.prompt_tokens_details?.cached_tokens, 3);
});

t.test('openai: tool calls, non-stream and accumulated by the stream helper', async (t) => {
  const { client } = await openaiSim(t, { reply: toolReply, chunkDelayMs: 1 });
  const tools = [{ type: 'function' as const, function: WEATHER_TOOL }];

  const res = await client.chat.completions.create({ model: 'gpt-sim', messages: USER, tools });
  const call = res.choices[0].message.tool_calls?.[0];
  t.equal(res.choices[0].finish_reason, 'tool_calls');
  t.equal(call?.type, 'function');
  t.match(call?.id, /^call_/);
  t.equal(call?.type === 'function' && call.function.name, 'get_weather');
  t.equal(call?.type === 'function' && call.function.arguments, '{"city":"Paris","unit":"celsius"}');

  const final = await client.chat.completions.stream({ model: 'gpt-sim', messages: USER, tools }).finalChatCompletion();
  const streamed = final.choices[0].message;
  t.equal(final.choices[0].finish_reason, 'tool_calls');
  t.equal(streamed.content, 'Let me check.');
  t.equal(streamed.tool_calls?.length, 1);
  const fn = streamed.tool_calls?.[0];
  t.same(fn?.type === 'function' && JSON.parse(fn.function.arguments), { city: 'Paris', unit: 'celsius' });
  t.equal(fn?.type === 'function' && fn.function.name, 'get_weather');
});

t.test('openai: tool-only reply has null content', async (t) => {
  const { client } = await openaiSim(t, { reply: () => ({ toolCalls: [{ name: 'f', arguments: '{}' }] }) });
  const res = await client.chat.completions.create({ model: 'gpt-sim', messages: USER });
  t.equal(res.choices[0].message.content, null);
  t.equal(res.choices[0].finish_reason, 'tool_calls');
});

t.test('openai: status faults raise the typed SDK errors', async (t) => {
  const { sim, client } = await openaiSim(t);
  const call = () => client.chat.completions.create({ model: 'gpt-sim', messages: USER });

  sim.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '2', 'retry-after-ms': '1500' } });
  const rate = await rejection(call());
  t.type(rate, OpenAI.RateLimitError);
  if (rate instanceof OpenAI.APIError) {
    t.equal(rate.status, 429);
    t.equal(rate.code, 'rate_limit_exceeded');
    t.equal(rate.type, 'requests', "OpenAI's type names the limit that ran out");
    t.equal(rate.headers?.get('retry-after'), '2');
    t.equal(rate.headers?.get('retry-after-ms'), '1500');
    t.equal(rate.headers?.get('x-ratelimit-reset-requests'), '120ms', "the fault's headers come on top of the provider's own");
    t.match(rate.requestID, /^req_/);
  }

  sim.setFault({ kind: 'status', status: 400, errorType: 'context_length_exceeded' });
  const ctx = await rejection(call());
  t.type(ctx, OpenAI.BadRequestError);
  if (ctx instanceof OpenAI.APIError) {
    t.equal(ctx.code, 'context_length_exceeded');
    t.equal(ctx.type, 'invalid_request_error');
    t.match(ctx.message, /maximum context length/);
  }

  sim.setFault({ kind: 'status', status: 503 });
  const overloaded = await rejection(call());
  t.type(overloaded, OpenAI.InternalServerError);
  if (overloaded instanceof OpenAI.APIError) {
    t.equal(overloaded.status, 503);
    t.equal(overloaded.type, 'server_error');
    t.match(overloaded.message, /overloaded/);
  }

  sim.setFault({ kind: 'status', status: 500, message: 'boom' });
  const streamed = await rejection(client.chat.completions.create({ model: 'gpt-sim', messages: USER, stream: true }));
  t.type(streamed, OpenAI.InternalServerError, 'a status fault also answers stream requests with the HTTP error');
  t.match((streamed as Error).message, /boom/);
});

t.test('openai: in-stream error events surface as SDK errors', async (t) => {
  const { sim, client } = await openaiSim(t);
  const collect = async () => {
    const got: string[] = [];
    const stream = await client.chat.completions.create({ model: 'gpt-sim', messages: USER, stream: true });
    const err = await rejection(
      (async () => {
        for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '');
      })(),
    );
    return { got: got.join(''), err };
  };

  sim.setFault({ kind: 'errorEventBeforeFirstToken' });
  const before = await collect();
  t.equal(before.got, '');
  t.type(before.err, OpenAI.APIError);
  t.equal((before.err as InstanceType<typeof OpenAI.APIError>).type, 'server_error');

  sim.setFault({ kind: 'errorEventAfterFirstToken', errorType: 'rate_limit_exceeded' });
  const after = await collect();
  t.ok(after.got.length > 0 && after.got !== 'Hello from gpt-sim', `got partial content "${after.got}"`);
  t.equal((after.err as InstanceType<typeof OpenAI.APIError>).type, 'rate_limit_exceeded');

  sim.setFault({ kind: 'errorEventBeforeFirstToken' });
  const nonStream = await rejection(client.chat.completions.create({ model: 'gpt-sim', messages: USER }));
  t.type(nonStream, OpenAI.InternalServerError, 'non-stream requests get a 500 instead');
});

t.test('openai: apiKey, validation and unknown paths', async (t) => {
  const { sim, client } = await openaiSim(t, { apiKey: 'sk-right' });
  t.equal((await client.chat.completions.create({ model: 'gpt-sim', messages: USER })).object, 'chat.completion');

  const wrong = new OpenAI({ apiKey: 'sk-wrong-key-123', baseURL: `${sim.url}/v1`, maxRetries: 0, timeout: 5000 });
  const auth = await rejection(wrong.chat.completions.create({ model: 'gpt-sim', messages: USER }));
  t.type(auth, OpenAI.AuthenticationError);
  t.equal((auth as InstanceType<typeof OpenAI.APIError>).code, 'invalid_api_key');
  t.type(await rejection(wrong.models.list()), OpenAI.AuthenticationError);

  const key = { authorization: 'Bearer sk-right' };
  const noMessages = await post(`${sim.url}/v1/chat/completions`, { model: 'gpt-sim' }, key);
  t.equal(noMessages.status, 400);
  t.match(await noMessages.json(), { error: { type: 'invalid_request_error', param: 'messages', code: 'missing_required_parameter' } });
  const noModel = await post(`${sim.url}/v1/chat/completions`, { messages: USER }, key);
  t.equal(noModel.status, 400);
  t.match(await noModel.json(), { error: { message: /model/, type: 'invalid_request_error' } });
  const notJson = await post(`${sim.url}/v1/chat/completions`, '{oops', key);
  t.equal(notJson.status, 400);

  const override = await post(`${sim.url}/openai/deployments/x/chat/completions`, { model: 'm', messages: USER }, key);
  t.equal(override.status, 200, 'any path ending in /chat/completions is served');
  const unknown = await post(`${sim.url}/v1/embeddings`, {}, key);
  t.equal(unknown.status, 404);
  t.match(await unknown.json(), { error: { message: /Invalid URL/, type: 'invalid_request_error' } });
  t.equal(sim.requests.length, 6, 'chat-path requests are recorded, others are not');
});

t.test('openai: /v1/models', async (t) => {
  const { sim, client } = await openaiSim(t);
  const page = await client.models.list();
  t.same(
    page.data.map((m) => [m.id, m.object]),
    [['gpt-sim', 'model']],
  );
  sim.setFault({ kind: 'status', status: 503 }, { times: 1 });
  t.type(await rejection(client.models.list()), OpenAI.InternalServerError);
  t.type(await rejection(client.models.list()), OpenAI.InternalServerError, 'models requests do not consume times');
  t.equal(sim.requests.length, 0);
});

t.test('openai: refuse gives connection errors, clearFault re-listens on the same port', async (t) => {
  const { sim, client } = await openaiSim(t);
  const port = sim.port;
  sim.setFault({ kind: 'refuse' });
  const err = await rejection(client.chat.completions.create({ model: 'gpt-sim', messages: USER }));
  t.type(err, OpenAI.APIConnectionError);
  const raw = await rejection(fetch(`${sim.url}/v1/models`, { signal: AbortSignal.timeout(2000) }));
  t.match(String((raw as Error).cause), /ECONNREFUSED/);

  sim.clearFault();
  await sim.ready();
  t.equal(sim.port, port);
  const res = await client.chat.completions.create({ model: 'gpt-sim', messages: USER });
  t.equal(res.choices[0].message.content, 'Hello from gpt-sim');
});

t.test('openai: hang keeps the request open; close() does not hang', async (t) => {
  const sim = await startOpenAISimulator({ model: 'gpt-sim' });
  const client = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0, timeout: 5000 });
  sim.setFault({ kind: 'hang' });
  const pending = rejection(client.chat.completions.create({ model: 'gpt-sim', messages: USER }));
  const pendingStream = rejection(client.chat.completions.create({ model: 'gpt-sim', messages: USER, stream: true }));
  await waitFor(() => sim.inFlight() === 2);
  t.equal(sim.requests.length, 2);
  t.same(sim.requests[0].body.messages, USER, 'the body was read');
  const started = Date.now();
  await sim.close();
  t.ok(Date.now() - started < 1000, 'close() returned promptly');
  t.type(await pending, OpenAI.APIConnectionError);
  t.type(await pendingStream, OpenAI.APIConnectionError);
});

t.test('openai: times makes a fault apply to the next N requests only', async (t) => {
  const { sim, client } = await openaiSim(t);
  sim.setFault({ kind: 'status', status: 500 }, { times: 2 });
  const call = () => client.chat.completions.create({ model: 'gpt-sim', messages: USER });
  t.type(await rejection(call()), OpenAI.InternalServerError);
  t.type(await rejection(call()), OpenAI.InternalServerError);
  t.equal((await call()).choices[0].message.content, 'Hello from gpt-sim');
  t.equal(sim.requests.length, 3);
});

// ---- Anthropic --------------------------------------------------------------

t.test('anthropic: non-stream text and recorded request', async (t) => {
  const { sim, client } = await anthropicSim(t);
  const msg = await client.messages.create({ model: 'claude-sim', max_tokens: 100, system: 'Be brief.', messages: USER });
  t.match(msg.id, /^msg_/);
  t.equal(msg.type, 'message');
  t.equal(msg.role, 'assistant');
  t.equal(msg.model, 'claude-sim');
  t.same(msg.content, [{ type: 'text', text: 'Hello from claude-sim' }]);
  t.equal(msg.stop_reason, 'end_turn');
  t.equal(msg.stop_sequence, null);
  t.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0);
  t.equal(msg.usage.cache_read_input_tokens, 0);

  const [req] = sim.requests;
  t.equal(req.path, '/v1/messages');
  t.equal(req.headers.authorization, 'Bearer sk-ant-test', 'this SDK sends the key as a bearer token (x-api-key is accepted too)');
  t.ok(req.headers['anthropic-version']);
  t.equal(req.body.system, 'Be brief.');
});

t.test('anthropic: stream events and the stream helper', async (t) => {
  const { client } = await anthropicSim(t, { reply: () => ({ content: 'alpha beta gamma', finishReason: 'max_tokens' }) });
  const stream = await client.messages.create({ model: 'claude-sim', max_tokens: 100, messages: USER, stream: true });
  const types: string[] = [];
  let text = '';
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'message_start') t.equal(ev.message.usage.output_tokens, 1);
    if (ev.type === 'message_delta') t.equal(ev.delta.stop_reason, 'max_tokens');
  }
  t.equal(text, 'alpha beta gamma');
  t.same(types, [
    'message_start',
    'content_block_start',
    'content_block_delta',
    'content_block_delta',
    'content_block_delta',
    'content_block_stop',
    'message_delta',
    'message_stop',
  ]);

  const final = await client.messages.stream({ model: 'claude-sim', max_tokens: 100, messages: USER }).finalMessage();
  t.same(final.content, [{ type: 'text', text: 'alpha beta gamma' }]);
  t.equal(final.stop_reason, 'max_tokens');
});

t.test('anthropic: tool_use, non-stream and accumulated by the stream helper', async (t) => {
  const { client } = await anthropicSim(t, { reply: toolReply, chunkDelayMs: 1 });
  const tools = [{ name: WEATHER_TOOL.name, description: WEATHER_TOOL.description, input_schema: { type: 'object' as const } }];

  const msg = await client.messages.create({ model: 'claude-sim', max_tokens: 100, messages: USER, tools });
  t.equal(msg.stop_reason, 'tool_use');
  t.match(msg.content, [
    { type: 'text', text: 'Let me check.' },
    { type: 'tool_use', id: /^toolu_/, name: 'get_weather', input: { city: 'Paris', unit: 'celsius' } },
  ]);

  const final = await client.messages.stream({ model: 'claude-sim', max_tokens: 100, messages: USER, tools }).finalMessage();
  t.equal(final.stop_reason, 'tool_use');
  t.equal(final.content.length, 2);
  const use = final.content[1];
  t.equal(use.type, 'tool_use');
  t.same(use.type === 'tool_use' && use.input, { city: 'Paris', unit: 'celsius' });
});

t.test('anthropic: status faults raise the typed SDK errors', async (t) => {
  const { sim, client } = await anthropicSim(t);
  const call = () => client.messages.create({ model: 'claude-sim', max_tokens: 10, messages: USER });

  sim.setFault({ kind: 'status', status: 529 });
  const overloaded = await rejection(call());
  t.type(overloaded, Anthropic.OverloadedError);
  if (overloaded instanceof Anthropic.APIError) {
    t.equal(overloaded.status, 529);
    t.equal(overloaded.type, 'overloaded_error');
    t.match(overloaded.requestID, /^req_/);
    t.match(overloaded.error, {
      type: 'error',
      error: { type: 'overloaded_error', message: 'Overloaded' },
      request_id: overloaded.requestID,
    });
  }

  sim.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '7' } });
  const rate = await rejection(call());
  t.type(rate, Anthropic.RateLimitError);
  if (rate instanceof Anthropic.APIError) {
    t.equal(rate.type, 'rate_limit_error');
    t.equal(rate.headers?.get('retry-after'), '7');
  }

  sim.setFault({ kind: 'status', status: 400, errorType: 'context_length_exceeded' });
  const ctx = await rejection(call());
  t.type(ctx, Anthropic.BadRequestError);
  t.match((ctx as InstanceType<typeof Anthropic.APIError>).apiMessage, /^prompt is too long/);

  sim.setFault({ kind: 'status', status: 500 });
  const server = await rejection(call());
  t.type(server, Anthropic.InternalServerError);
  t.equal((server as InstanceType<typeof Anthropic.APIError>).type, 'api_error');
});

t.test('anthropic: in-stream error events surface as SDK errors', async (t) => {
  const { sim, client } = await anthropicSim(t);
  sim.setFault({ kind: 'errorEventBeforeFirstToken' });
  const before = await rejection(client.messages.stream({ model: 'claude-sim', max_tokens: 10, messages: USER }).finalMessage());
  t.type(before, Anthropic.APIError);
  t.equal((before as InstanceType<typeof Anthropic.APIError>).type, 'overloaded_error');

  sim.setFault({ kind: 'errorEventAfterFirstToken', errorType: 'api_error' });
  const stream = client.messages.stream({ model: 'claude-sim', max_tokens: 10, messages: USER });
  let text = '';
  stream.on('text', (delta) => {
    text += delta;
  });
  const after = await rejection(stream.finalMessage());
  t.equal((after as InstanceType<typeof Anthropic.APIError>).type, 'api_error');
  t.ok(text.length > 0 && text !== 'Hello from claude-sim', `got partial text "${text}"`);

  sim.setFault({ kind: 'errorEventAfterFirstToken' });
  t.type(await rejection(client.messages.create({ model: 'claude-sim', max_tokens: 10, messages: USER })), Anthropic.OverloadedError);
});

t.test('anthropic: apiKey, anthropic-version and body validation', async (t) => {
  const { sim, client } = await anthropicSim(t, { apiKey: 'sk-ant-right' });
  const wrong = new Anthropic({ apiKey: 'sk-ant-wrong', baseURL: sim.url, maxRetries: 0, timeout: 5000 });
  const auth = await rejection(wrong.messages.create({ model: 'claude-sim', max_tokens: 10, messages: USER }));
  t.type(auth, Anthropic.AuthenticationError);
  t.equal((auth as InstanceType<typeof Anthropic.APIError>).type, 'authentication_error');

  const consecutive = await client.messages.create({
    model: 'claude-sim',
    max_tokens: 10,
    messages: [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ],
  });
  t.equal(consecutive.type, 'message', 'consecutive turns of one role are accepted (Anthropic merges them)');
  const firstAssistant = await rejection(
    client.messages.create({ model: 'claude-sim', max_tokens: 10, messages: [{ role: 'assistant', content: 'a' }] }),
  );
  t.equal((firstAssistant as InstanceType<typeof Anthropic.APIError>).apiMessage, 'messages: first message must use the "user" role');

  const url = `${sim.url}/v1/messages`;
  const body = { model: 'claude-sim', max_tokens: 10, messages: USER };
  const noVersion = await post(url, body, { 'x-api-key': 'sk-ant-right' });
  t.equal(noVersion.status, 400);
  t.match(noVersion.headers.get('request-id'), /^req_/);
  t.match(await noVersion.json(), { type: 'error', error: { type: 'invalid_request_error', message: /anthropic-version/ } });
  const headers = { 'x-api-key': 'sk-ant-right', 'anthropic-version': '2023-06-01' };
  const noMaxTokens = await post(url, { model: 'claude-sim', messages: USER }, headers);
  t.match(await noMaxTokens.json(), { error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
  const badSystem = await post(url, { ...body, system: [{ type: 'image' }] }, headers);
  t.equal(badSystem.status, 400);
  t.equal((await post(url, { ...body, system: [{ type: 'text', text: 'x' }] }, headers)).status, 200);
  const noKey = await post(url, body, { 'anthropic-version': '2023-06-01' });
  t.equal(noKey.status, 401);
  const unknown = await post(`${sim.url}/v1/complete`, body, headers);
  t.equal(unknown.status, 404);
  t.match(await unknown.json(), { type: 'error', error: { type: 'not_found_error' } });
});

t.test("openai: a 429 is OpenAI's own: the type names the limit, every x-ratelimit-* header comes with it", async (t) => {
  const { sim, client } = await openaiSim(t);
  const url = `${sim.url}/v1/chat/completions`;
  const body = { model: 'gpt-sim', messages: USER };

  sim.setFault({ kind: 'status', status: 429 });
  const rpm = await post(url, body);
  t.equal(rpm.status, 429);
  const rpmJson = (await rpm.json()) as { error: Record<string, unknown> };
  t.same(Object.keys(rpmJson.error), ['message', 'type', 'param', 'code'], 'the four fields, in order');
  t.match(rpmJson.error, {
    type: 'requests',
    param: null,
    code: 'rate_limit_exceeded',
    message:
      /^Rate limit reached for gpt-sim in organization \S+ on requests per min \(RPM\): Limit 500, Used 500, Requested 1\. Please try again in 120ms\./,
  });
  t.same(
    Object.fromEntries([...rpm.headers].filter(([k]) => k.startsWith('x-ratelimit-'))),
    {
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-limit-tokens': '30000',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-remaining-tokens': '29990',
      'x-ratelimit-reset-requests': '120ms',
      'x-ratelimit-reset-tokens': '20ms',
    },
    'limit, remaining and reset, for requests and for tokens, together',
  );
  t.equal(rpm.headers.get('retry-after'), null, 'no retry-after unless the fault adds one');

  sim.setFault({ kind: 'status', status: 429, errorType: 'tokens' });
  const tpm = await post(url, body);
  t.match(await tpm.json(), {
    error: { type: 'tokens', code: 'rate_limit_exceeded', message: /on tokens per min \(TPM\).*Please try again in 700ms/ },
  });
  t.equal(tpm.headers.get('x-ratelimit-remaining-tokens'), '50');
  t.equal(tpm.headers.get('x-ratelimit-reset-tokens'), '700ms', 'the tokens bucket is the one that ran out');

  sim.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '3', 'x-ratelimit-reset-tokens': null } });
  const overridden = await post(url, body);
  t.equal(overridden.headers.get('retry-after'), '3', 'a fault adds a header');
  t.equal(overridden.headers.get('x-ratelimit-reset-tokens'), null, 'or leaves one out (null)');
  t.equal(overridden.headers.get('x-ratelimit-reset-requests'), '120ms', 'the rest stay');

  sim.setFault({ kind: 'status', status: 429, errorType: 'insufficient_quota' });
  const quota = await post(url, body);
  t.equal(quota.status, 429);
  t.same(await quota.json(), {
    error: {
      message:
        'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
      type: 'insufficient_quota',
      param: null,
      code: 'insufficient_quota',
    },
  });
  t.equal(
    [...quota.headers].filter(([k]) => k.startsWith('x-ratelimit-') || k === 'retry-after').length,
    0,
    'no rate-limit headers: no wait ends it',
  );
  const sdk = await rejection(client.chat.completions.create(body));
  t.type(sdk, OpenAI.RateLimitError, 'the SDK raises it as a RateLimitError, as the real one');
  t.equal((sdk as InstanceType<typeof OpenAI.APIError>).code, 'insufficient_quota');
});

t.test('anthropic: a 429 carries retry-after and every anthropic-ratelimit-* header, resets in RFC 3339', async (t) => {
  const { sim, client } = await anthropicSim(t);
  sim.setFault({ kind: 'status', status: 429 });
  const at = Date.now();
  const res = await post(
    `${sim.url}/v1/messages`,
    { model: 'claude-sim', max_tokens: 10, messages: USER },
    { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
  );
  t.equal(res.status, 429);
  t.match(await res.json(), { type: 'error', error: { type: 'rate_limit_error', message: /rate limit/ }, request_id: /^req_/ });
  t.equal(res.headers.get('retry-after'), '1');
  for (const bucket of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
    const h = (field: string) => res.headers.get(`anthropic-ratelimit-${bucket}-${field}`);
    t.match(h('limit'), /^\d+$/, `${bucket}: limit`);
    t.match(h('remaining'), /^\d+$/, `${bucket}: remaining`);
    t.match(h('reset'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, `${bucket}: reset, RFC 3339`);
    const reset = Date.parse(h('reset') ?? '');
    t.ok(reset > at && reset <= at + 2000, `${bucket}: resets within the next two seconds`);
  }
  t.equal(res.headers.get('anthropic-ratelimit-requests-remaining'), '0', 'the requests bucket ran out');
  sim.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '9', 'anthropic-ratelimit-tokens-reset': null } });
  const rate = await rejection(client.messages.create({ model: 'claude-sim', max_tokens: 10, messages: USER }));
  t.type(rate, Anthropic.RateLimitError);
  const headers = (rate as InstanceType<typeof Anthropic.APIError>).headers;
  t.equal(headers?.get('retry-after'), '9', 'overridden');
  t.equal(headers?.get('anthropic-ratelimit-tokens-reset'), null, 'left out');
  t.ok(headers?.get('anthropic-ratelimit-requests-reset'), 'the rest stay');
});

const TOOL_USE = { type: 'tool_use', id: 'toolu_01A', name: 'get_weather', input: { city: 'Paris' } };
const TOOL_RESULT = { type: 'tool_result', tool_use_id: 'toolu_01A', content: '18 degrees' };
const TOOLS = [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: {} } }];
const THINKING = { type: 'enabled', budget_tokens: 1024 };
const TOOL_LOOP = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: [TOOL_USE] },
  { role: 'user', content: [TOOL_RESULT] },
];

t.test('anthropic: requests are validated as strictly as Anthropic does, each refusal its real 400', async (t) => {
  const { sim } = await anthropicSim(t);
  const url = `${sim.url}/v1/messages`;
  const headers = { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' };
  const base = { model: 'claude-sim', max_tokens: 2048, messages: USER };
  const refused: [string, Record<string, unknown>, RegExp][] = [
    [
      'thinking with tool_choice any',
      { ...base, thinking: THINKING, tools: TOOLS, tool_choice: { type: 'any' } },
      /^Thinking may not be enabled when tool_choice forces tool use/,
    ],
    [
      'thinking with tool_choice tool',
      { ...base, thinking: THINKING, tools: TOOLS, tool_choice: { type: 'tool', name: 'get_weather' } },
      /^Thinking may not be enabled when tool_choice forces tool use/,
    ],
    [
      'thinking with temperature 0.7',
      { ...base, thinking: THINKING, temperature: 0.7 },
      /^`temperature` may only be set to 1 when thinking is enabled/,
    ],
    [
      'thinking with temperature 0',
      { ...base, thinking: THINKING, temperature: 0 },
      /^`temperature` may only be set to 1 when thinking is enabled/,
    ],
    [
      'thinking with top_p 0.9',
      { ...base, thinking: THINKING, top_p: 0.9 },
      /^`top_p` must be greater than or equal to 0\.95 or unset when thinking is enabled/,
    ],
    ['thinking with top_k', { ...base, thinking: THINKING, top_k: 5 }, /^`top_k` must be unset when thinking is enabled/],
    [
      'budget_tokens equal to max_tokens',
      { ...base, max_tokens: 1024, thinking: THINKING },
      /^`max_tokens` must be greater than `thinking.budget_tokens`/,
    ],
    [
      'budget_tokens above max_tokens',
      { ...base, max_tokens: 100, thinking: THINKING },
      /^`max_tokens` must be greater than `thinking.budget_tokens`/,
    ],
    [
      'budget_tokens below 1024',
      { ...base, thinking: { type: 'enabled', budget_tokens: 500 } },
      /^thinking\.enabled\.budget_tokens: Input should be greater than or equal to 1024/,
    ],
    [
      'thinking in a tool loop whose last assistant turn has no thinking block',
      { ...base, thinking: THINKING, tools: TOOLS, messages: TOOL_LOOP },
      /^messages\.1\.content\.0\.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`/,
    ],
    ['temperature above 1', { ...base, temperature: 1.5 }, /^temperature: Input should be less than or equal to 1/],
    [
      'a tool_use id with a dot',
      {
        ...base,
        messages: [
          TOOL_LOOP[0],
          { role: 'assistant', content: [{ ...TOOL_USE, id: 'call.1' }] },
          { role: 'user', content: [{ ...TOOL_RESULT, tool_use_id: 'call.1' }] },
        ],
      },
      /^messages\.1\.content\.0\.tool_use\.id: String should match pattern '\^\[a-zA-Z0-9_-\]\+\$'/,
    ],
    [
      'an empty tool_use id',
      {
        ...base,
        messages: [
          TOOL_LOOP[0],
          { role: 'assistant', content: [{ ...TOOL_USE, id: '' }] },
          { role: 'user', content: [{ ...TOOL_RESULT, tool_use_id: '' }] },
        ],
      },
      /tool_use\.id: String should match pattern/,
    ],
    [
      'a tool_result id with a colon',
      { ...base, messages: [TOOL_LOOP[0], TOOL_LOOP[1], { role: 'user', content: [{ ...TOOL_RESULT, tool_use_id: 'toolu:01A' }] }] },
      /^messages\.2\.content\.0\.tool_result\.tool_use_id: String should match pattern/,
    ],
    [
      'a tool_result for no tool_use of the previous assistant turn',
      { ...base, messages: [TOOL_LOOP[0], TOOL_LOOP[1], { role: 'user', content: [{ ...TOOL_RESULT, tool_use_id: 'toolu_other' }] }] },
      /^messages\.2\.content\.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_other\. Each `tool_result` block must have a corresponding `tool_use` block in the previous message\./,
    ],
    [
      'a tool_result with no assistant turn before it',
      { ...base, messages: [{ role: 'user', content: [TOOL_RESULT] }] },
      /unexpected `tool_use_id` found in `tool_result` blocks: toolu_01A/,
    ],
    [
      'a tool_use left unanswered by the next turn',
      { ...base, messages: [TOOL_LOOP[0], TOOL_LOOP[1], { role: 'user', content: 'never mind' }] },
      /^messages\.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01A/,
    ],
    [
      'two tool_use blocks with one id',
      { ...base, messages: [TOOL_LOOP[0], { role: 'assistant', content: [TOOL_USE, TOOL_USE] }, { role: 'user', content: [TOOL_RESULT] }] },
      /^messages\.1\.content\.1: `tool_use` ids must be unique$/,
    ],
    [
      'a tool_result after other content in its turn',
      { ...base, messages: [TOOL_LOOP[0], TOOL_LOOP[1], { role: 'user', content: [{ type: 'text', text: 'here:' }, TOOL_RESULT] }] },
      /tool_result blocks must come first/,
    ],
    [
      'an empty text block',
      { ...base, messages: [{ role: 'user', content: [{ type: 'text', text: '' }] }] },
      /^messages: text content blocks must be non-empty$/,
    ],
    [
      'a whitespace-only text block',
      {
        ...base,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hi' },
              { type: 'text', text: ' \n\t' },
            ],
          },
        ],
      },
      /^messages: text content blocks must contain non-whitespace text$/,
    ],
    [
      'whitespace-only string content',
      { ...base, messages: [{ role: 'user', content: '   ' }] },
      /^messages: text content blocks must contain non-whitespace text$/,
    ],
    [
      'an empty user message',
      { ...base, messages: [{ role: 'user', content: '' }] },
      /^messages\.0: all messages must have non-empty content except for the optional final assistant message$/,
    ],
    [
      'an empty content list mid-conversation',
      {
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: [] },
          { role: 'user', content: 'b' },
        ],
      },
      /^messages\.1: all messages must have non-empty content/,
    ],
    [
      'a final assistant turn ending in whitespace',
      {
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'The answer is ' },
        ],
      },
      /^messages: final assistant content cannot end with trailing whitespace$/,
    ],
    [
      'a final assistant text block ending in a newline',
      {
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: [{ type: 'text', text: 'x\n' }] },
        ],
      },
      /^messages: final assistant content cannot end with trailing whitespace$/,
    ],
    [
      'the first message from the assistant',
      {
        ...base,
        messages: [
          { role: 'assistant', content: 'hello' },
          { role: 'user', content: 'hi' },
        ],
      },
      /^messages: first message must use the "user" role$/,
    ],
    ['an empty system text block', { ...base, system: [{ type: 'text', text: '' }] }, /^system: text content blocks must be non-empty$/],
  ];
  for (const [name, body, message] of refused) {
    const res = await post(url, body, headers);
    t.equal(res.status, 400, `${name}: 400`);
    const json = (await res.json()) as { type: string; error: { type: string; message: string }; request_id: string };
    t.equal(json.type, 'error', `${name}: Anthropic's error body`);
    t.equal(json.error.type, 'invalid_request_error', `${name}: invalid_request_error`);
    t.match(json.error.message, message, `${name}: ${json.error.message}`);
  }
  const accepted: [string, Record<string, unknown>][] = [
    [
      'thinking with temperature 1, top_p 0.95 and tool_choice auto',
      { ...base, thinking: THINKING, temperature: 1, top_p: 0.95, tools: TOOLS, tool_choice: { type: 'auto' } },
    ],
    ['thinking disabled with tool_choice any', { ...base, thinking: { type: 'disabled' }, tools: TOOLS, tool_choice: { type: 'any' } }],
    ['a tool loop', { ...base, tools: TOOLS, messages: TOOL_LOOP }],
    [
      'a tool loop with thinking handed back',
      {
        ...base,
        thinking: THINKING,
        tools: TOOLS,
        messages: [
          TOOL_LOOP[0],
          { role: 'assistant', content: [{ type: 'thinking', thinking: 'hmm', signature: 'sig' }, TOOL_USE] },
          TOOL_LOOP[2],
        ],
      },
    ],
    [
      'consecutive user messages (merged)',
      {
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'user', content: [{ type: 'text', text: 'b' }] },
        ],
      },
    ],
    [
      'tool results split over consecutive user messages, then text',
      { ...base, messages: [TOOL_LOOP[0], TOOL_LOOP[1], TOOL_LOOP[2], { role: 'user', content: 'and tomorrow?' }] },
    ],
    [
      'a prefill without trailing whitespace',
      {
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'The answer is' },
        ],
      },
    ],
    [
      'an empty final assistant turn',
      {
        ...base,
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: '' },
        ],
      },
    ],
  ];
  for (const [name, body] of accepted) {
    const res = await post(url, body, headers);
    t.equal(res.status, 200, `${name}: accepted${res.status === 200 ? '' : `, got ${await res.text()}`}`);
  }
});

t.test('anthropic: /v1/models', async (t) => {
  const { sim, client } = await anthropicSim(t);
  const page = await client.models.list();
  t.match(page.data, [{ type: 'model', id: 'claude-sim', display_name: 'Claude Sim' }]);
  sim.setFault({ kind: 'reset' });
  t.type(await rejection(client.models.list()), Anthropic.APIConnectionError);
});

// ---- Faults over raw HTTP (both providers) ----------------------------------

interface ProviderCase {
  name: 'openai' | 'anthropic';
  start: (opts?: Partial<SimulatorOptions>) => Promise<SimulatedProvider>;
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
  contentOf: (json: JsonBody) => string;
}

const providers: ProviderCase[] = [
  {
    name: 'openai',
    start: (opts: Partial<SimulatorOptions> = {}) => startOpenAISimulator({ model: 'gpt-sim', ...opts }),
    path: '/v1/chat/completions',
    headers: { authorization: 'Bearer k' },
    body: { model: 'gpt-sim', messages: USER },
    contentOf: (json) => json.choices[0].message.content,
  },
  {
    name: 'anthropic',
    start: (opts: Partial<SimulatorOptions> = {}) => startAnthropicSimulator({ model: 'claude-sim', ...opts }),
    path: '/v1/messages',
    headers: { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
    body: { model: 'claude-sim', max_tokens: 10, messages: USER },
    contentOf: (json) => json.content[0].text,
  },
];

for (const p of providers) {
  t.test(`${p.name}: body faults over raw HTTP`, async (t) => {
    const sim: SimulatedProvider = await p.start();
    t.teardown(() => sim.close());
    const send = (fault: Fault, stream = false, signal?: AbortSignal) => {
      sim.setFault(fault, { times: 1 });
      return post(sim.url + p.path, { ...p.body, stream }, p.headers, signal);
    };

    const reset = await rejection(send({ kind: 'reset' }));
    t.type(reset, TypeError, 'reset: fetch fails');

    const midBody = await send({ kind: 'resetMidBody' });
    t.equal(midBody.status, 200);
    t.type(await rejection(midBody.text()), TypeError, 'resetMidBody: the body fails');
    const midStream = await send({ kind: 'resetMidBody' }, true);
    t.match(midStream.headers.get('content-type'), /text\/event-stream/);
    t.type(await rejection(midStream.text()), TypeError, 'resetMidBody (stream): the body fails');

    const truncated = await send({ kind: 'truncatedJson' });
    const cut = await truncated.text();
    t.equal(Number(truncated.headers.get('content-length')), Buffer.byteLength(cut));
    t.throws(() => JSON.parse(cut), 'truncatedJson: not parseable');

    const invalid = await send({ kind: 'invalidJson' });
    t.equal(invalid.headers.get('content-type'), 'application/json');
    const invalidText = await invalid.text();
    t.throws(() => JSON.parse(invalidText), 'invalidJson: not parseable');
    const invalidStream = await (await send({ kind: 'invalidJson' }, true)).text();
    t.match(invalidStream, /data: \{not json\n\n$/);

    const empty = await send({ kind: 'emptyBody' });
    t.equal(empty.status, 200);
    t.equal(await empty.text(), '');

    const huge = await send({ kind: 'huge', bytes: 200_000 });
    const hugeJson = await huge.json();
    t.ok(p.contentOf(hugeJson).length >= 200_000, 'huge: enormous but valid completion');
    const hugeStream = await (await send({ kind: 'huge', bytes: 50_000 }, true)).text();
    t.ok(hugeStream.length > 50_000);

    const started = Date.now();
    const slow = await send({ kind: 'slowFirstToken', delayMs: 150 });
    t.ok(Date.now() - started >= 140, 'slowFirstToken delays the headers');
    t.equal(p.contentOf(await slow.json()), `Hello from ${sim.model}`);

    // stallMidStream: role/preamble + 1 content chunk, then silence until the client gives up.
    const ac = new AbortController();
    const stalled = await send({ kind: 'stallMidStream', afterChunks: 1 }, true, ac.signal);
    const reader = stalled.body!.getReader();
    let seen = '';
    const deadline = setTimeout(() => ac.abort(), 300);
    const readErr = await rejection(
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          seen += Buffer.from(value).toString();
        }
      })(),
    );
    clearTimeout(deadline);
    t.equal((readErr as Error).name, 'AbortError');
    t.match(seen, p.name === 'openai' ? /"content":"Hello"/ : /"text":"Hello"/);
    t.notMatch(seen, p.name === 'openai' ? /\[DONE\]/ : /message_stop/);
    await waitFor(() => sim.inFlight() === 0);

    const stalledJson = await send({ kind: 'stallMidStream', afterChunks: 0 }, false, AbortSignal.timeout(200));
    t.equal(stalledJson.status, 200);
    t.type(await rejection(stalledJson.text()), Error, 'stallMidStream (non-stream): body never completes');

    const truncatedStream = await (await send({ kind: 'truncatedJson' }, true)).text();
    t.notMatch(truncatedStream, p.name === 'openai' ? /\[DONE\]/ : /message_stop/, 'truncated stream lacks its terminator');

    t.equal(sim.requests.length, 13);
    t.equal((await post(sim.url + p.path, p.body, p.headers)).status, 200, 'every fault was used up');
  });
}

// ---- what real servers send: compression, JSON styles, reasoning, hand-made streams ----

/** A streamed OpenAI request read to its end (or for `ms`, for streams that never end). */
async function readStream(
  sim: SimulatedProvider,
  headers: Record<string, string> = {},
  ms = 3000,
  body: Record<string, unknown> = {},
): Promise<{ res: Response; text: string }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  const res = await post(`${sim.url}/v1/chat/completions`, { model: 'gpt-sim', messages: USER, stream: true, ...body }, headers, ac.signal);
  let text = '';
  try {
    const reader = res.body!.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
  } catch {
    // aborted: what arrived is the answer
  }
  clearTimeout(timer);
  return { res, text };
}

t.test('compress: honours accept-encoding unless `always`; streams, bodies and errors are compressed', async (t) => {
  for (const encoding of ['gzip', 'br', 'deflate'] as const) {
    const { sim, client } = await openaiSim(t, { compress: { encoding } });
    const identity = await post(`${sim.url}/v1/chat/completions`, { model: 'gpt-sim', messages: USER }, { 'accept-encoding': 'identity' });
    t.equal(identity.headers.get('content-encoding'), null, `${encoding}: identity asked, none sent`);
    const plain = await post(`${sim.url}/v1/chat/completions`, { model: 'gpt-sim', messages: USER }, { 'accept-encoding': encoding });
    t.equal(plain.headers.get('content-encoding'), encoding, `${encoding}: sent when admitted`);
    t.equal(
      ((await plain.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content,
      'Hello from gpt-sim',
      'fetch decodes it',
    );
    const chunks = [];
    for await (const c of await client.chat.completions.create({ model: 'gpt-sim', messages: USER, stream: true })) chunks.push(c);
    t.equal(
      chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''),
      'Hello from gpt-sim',
      `${encoding}: the SDK reads the compressed stream`,
    );

    const { sim: always } = await openaiSim(t, { compress: { encoding, always: true } });
    const forced = await readStream(always, { 'accept-encoding': 'identity' });
    t.equal(forced.res.headers.get('content-encoding'), encoding, `${encoding}: always, whatever was asked`);
    t.match(forced.text, /data: \[DONE\]/);
    always.setFault({ kind: 'status', status: 429 }, { times: 1 });
    const limited = await post(
      `${always.url}/v1/chat/completions`,
      { model: 'gpt-sim', messages: USER },
      { 'accept-encoding': 'identity' },
    );
    t.equal(limited.headers.get('content-encoding'), encoding, 'error bodies too');
    t.match(await limited.text(), /rate_limit_exceeded/);
  }
});

t.test('openai: jsonStyle spaced and keyOrder reversed write what Python servers write; the SDK reads both', async (t) => {
  const { sim, client } = await openaiSim(t, { jsonStyle: 'spaced', keyOrder: 'reversed' });
  const { text } = await readStream(sim, {}, 3000, { stream_options: { include_usage: true } });
  t.match(text, /"usage": \{/, 'spaced: ": " and ", "');
  t.match(text, /"object": "chat\.completion\.chunk", "id": "chatcmpl-/, 'keys reversed: id comes late');
  const chunks = [];
  for await (const c of await client.chat.completions.create({
    model: 'gpt-sim',
    messages: USER,
    stream: true,
    stream_options: { include_usage: true },
  }))
    chunks.push(c);
  t.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Hello from gpt-sim');
  t.ok(chunks.at(-1)?.usage?.completion_tokens, 'usage read');
  const res = await client.chat.completions.create({ model: 'gpt-sim', messages: USER });
  t.equal(res.choices[0].message.content, 'Hello from gpt-sim');
});

t.test('thinking: Anthropic streams a thinking block, OpenAI reasoning_content deltas, before the answer', async (t) => {
  const reply = () => ({ thinking: 'let me think', content: 'Answer' });
  const { client } = await anthropicSim(t, { reply });
  const events = [];
  for await (const e of client.messages.stream({ model: 'claude-sim', max_tokens: 100, messages: USER })) events.push(e);
  const thinking = events.filter((e) => e.type === 'content_block_delta' && e.delta.type === 'thinking_delta');
  t.ok(thinking.length >= 2, 'several thinking deltas');
  const { sim } = await openaiSim(t, { reply });
  const { text } = await readStream(sim);
  t.ok(text.indexOf('"reasoning_content":"let"') < text.indexOf('"content":"Answer"'), 'reasoning first');
});

t.test('faults for honest streams: raw, keepAliveStall, errorThenDone, truncatedChunk; the raw body is recorded', async (t) => {
  const { sim } = await openaiSim(t);
  sim.setFault({ kind: 'raw', body: ['data: {"foo":"bar"}\n\n', 'data: [DONE]\n\n'] }, { times: 1 });
  t.equal((await readStream(sim)).text, 'data: {"foo":"bar"}\n\ndata: [DONE]\n\n', 'raw: exactly the events given');
  sim.setFault({ kind: 'raw', body: '{"choices":[]}' }, { times: 1 });
  t.equal(await (await post(`${sim.url}/v1/chat/completions`, { model: 'gpt-sim', messages: USER })).text(), '{"choices":[]}');
  t.equal(sim.requests.at(-1)?.raw, JSON.stringify({ model: 'gpt-sim', messages: USER }), 'the raw body, as received');

  for (const as of ['comment', 'event'] as const) {
    sim.setFault({ kind: 'keepAliveStall', afterChunks: 1, everyMs: 20, as }, { times: 1 });
    const { text } = await readStream(sim, {}, 200);
    t.match(text, /"content":"Hello"/);
    t.notMatch(text, /\[DONE\]/, `${as}: never ends`);
    t.ok(
      ((as === 'comment' ? text.match(/^: keep-alive$/gm) : text.match(/"delta":\{\}/g))?.length ?? 0) >= 3,
      `${as}: keep-alives keep coming`,
    );
  }
  await waitFor(() => sim.inFlight() === 0);

  sim.setFault({ kind: 'errorThenDone' }, { times: 1 });
  const errored = (await readStream(sim)).text;
  t.match(
    errored,
    /"content":"Hello"[\s\S]*data: \{"id":"chatcmpl-[^"]+","object":"chat\.completion\.chunk".*"error":\{[\s\S]*data: \[DONE\]\n\n$/,
    'content, a chunk-shaped error, then [DONE]',
  );

  sim.setFault({ kind: 'truncatedChunk' }, { times: 1 });
  const cut = (await readStream(sim)).text;
  const bad = cut
    .split('\n\n')
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .filter((e) => {
      try {
        JSON.parse(e.slice(6));
        return false;
      } catch {
        return true;
      }
    });
  t.equal(bad.length, 1, 'one chunk cut short');
  t.match(cut, /data: \[DONE\]\n\n$/, 'and the stream goes on to its end');

  const { sim: claude } = await anthropicSim(t);
  claude.setFault({ kind: 'keepAliveStall', afterChunks: 1, everyMs: 20, as: 'event' }, { times: 1 });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const res = await post(
    `${claude.url}/v1/messages`,
    { model: 'claude-sim', max_tokens: 10, messages: USER, stream: true },
    { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
    ac.signal,
  );
  let text = '';
  try {
    for await (const c of res.body!) text += Buffer.from(c).toString();
  } catch {
    // aborted
  }
  t.ok((text.match(/event: ping/g)?.length ?? 0) >= 3, 'anthropic: pings keep coming');
});
