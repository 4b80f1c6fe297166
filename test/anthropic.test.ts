/**
 * Anthropic as a first-class provider: the app talks OpenAI (the official SDK, no model), the
 * sidecar talks Anthropic's Messages API to the simulator, and the app cannot tell who answered
 * except by `model`. What went upstream is checked in the simulator's recorded requests.
 */
import type OpenAI from 'openai';
import t from 'tap';
import { ANTHROPIC_TARGET, parsed } from './support/translate.ts';
import type { RequestEvent } from '../sidecar/observe/events.ts';
import { anthropicAdapter } from '../sidecar/translate/anthropic.ts';
import { AnthropicStream } from '../sidecar/translate/anthropic-stream.ts';
import { ChunkFramer } from '../sidecar/translate/openai-output.ts';
import type { Fault, JsonBody, Reply } from '../simulator/index.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';
import { type ModelSpec, TEST_KEY } from './support/yaml.ts';

// The app names no model: the sidecar picks one.
const NO_MODEL = undefined as unknown as string;
const HAIKU = 'claude-3-5-haiku-latest';

const WEATHER_TOOL = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

/** Two parallel tool calls after some text, with ids as Anthropic makes them. */
const TOOL_REPLY: Reply = {
  content: 'Let me check both.',
  toolCalls: [
    { id: 'toolu_01A', name: 'get_weather', arguments: '{"city":"Paris"}' },
    { id: 'toolu_01B', name: 'get_weather', arguments: '{"city":"Tokyo","unit":"celsius"}' },
  ],
};

interface Test {
  teardown(fn: () => unknown): void;
}

/** One Anthropic model, optionally with an OpenAI fallback in group 2. */
async function claude(tt: Test, opts: { reply?: (body: JsonBody) => Reply; fallback?: boolean } = {}): Promise<Harness> {
  const models: ModelSpec[] = [{ name: 'claude', kind: 'anthropic', model: HAIKU, group: 0, sim: opts.reply ? { reply: opts.reply } : {} }];
  if (opts.fallback) models.push({ name: 'fallback', model: 'gpt-4o-mini', group: 1 });
  const h = await startHarness(models);
  tt.teardown(() => h.close());
  return h;
}

/** The request stories the sidecar publishes, for the failure reason of each attempt. */
function recordRequests(h: Harness): RequestEvent[] {
  const seen: RequestEvent[] = [];
  h.sidecar.events.on('request', (e) => seen.push(e));
  return seen;
}

/** A raw streamed request: every `data:` payload, in order. */
async function rawStream(h: Harness, body: Record<string, unknown>): Promise<{ status: number; provider: string | null; data: string[] }> {
  const res = await fetch(`${h.sidecar.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  const data = text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6));
  return { status: res.status, provider: res.headers.get('x-llm-failover-provider'), data };
}

async function rejection(
  p: Promise<unknown>,
): Promise<Error & { status?: number; error?: { type?: string; code?: string | null; message?: string } }> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

t.test('a plain question: Claude answers as an OpenAI chat.completion', async (t) => {
  const h = await claude(t);
  const { data, response } = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
  t.equal(response.status, 200);
  t.equal(data.object, 'chat.completion');
  t.equal(data.model, HAIKU, 'the model Anthropic reports');
  t.match(data.id, /^chatcmpl-/);
  t.ok(Math.abs(data.created - Date.now() / 1000) < 60, 'created is now, in unix seconds');
  t.equal(data.choices.length, 1);
  t.equal(data.choices[0].message.role, 'assistant');
  t.equal(data.choices[0].message.content, `Hello from ${HAIKU}`);
  t.equal(data.choices[0].message.refusal, null);
  t.notOk(data.choices[0].message.tool_calls, 'no tool_calls when there were none');
  t.equal(data.choices[0].finish_reason, 'stop');
  t.ok(data.usage && data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
  t.equal(data.usage?.total_tokens, (data.usage?.prompt_tokens ?? 0) + (data.usage?.completion_tokens ?? 0));
  t.equal(response.headers.get('x-llm-failover-provider'), 'claude');

  const [sent] = h.sims.claude.requests;
  t.equal(sent.path, '/v1/messages');
  t.equal(sent.headers['anthropic-version'], '2023-06-01');
  t.equal(sent.headers['x-api-key'], TEST_KEY);
  t.notOk(sent.headers.authorization, 'the client key is not forwarded');
  t.equal(sent.headers['content-type'], 'application/json');
  t.same(sent.body, {
    model: HAIKU,
    max_tokens: 4096,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'What is kubernetes?' }] }],
  });
});

t.test('a multi-turn conversation: instructions into system, turns merged to alternate, parameters mapped', async (t) => {
  const h = await claude(t);
  await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi.' },
      { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
      { role: 'user', content: [{ type: 'text', text: 'What is k8s?' }] },
      { role: 'assistant', content: 'Un orchestrateur.' },
      { role: 'assistant', content: 'De conteneurs.' },
      { role: 'user', content: 'Merci', name: 'ana' },
    ],
    stop: 'END',
    user: 'user-42',
    temperature: 0.3,
    top_p: 0.9,
    seed: 7,
    presence_penalty: 0.5,
    frequency_penalty: 0.5,
    logit_bias: { '50256': -100 },
    n: 1,
    store: true,
    metadata: { app: 'demo' },
    service_tier: 'auto',
  });
  const body = h.sims.claude.requests[0].body;
  t.same(body.system, [
    { type: 'text', text: 'Be brief.' },
    { type: 'text', text: 'Answer in French.' },
  ]);
  t.same(body.messages, [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'Hi.' },
        { type: 'text', text: 'What is k8s?' },
      ],
    },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'Un orchestrateur.' },
        { type: 'text', text: 'De conteneurs.' },
      ],
    },
    { role: 'user', content: [{ type: 'text', text: 'Merci' }] },
  ]);
  t.equal(body.max_tokens, 4096, 'the default when the client sets none');
  t.same(body.stop_sequences, ['END']);
  t.same(body.metadata, { user_id: 'user-42' });
  t.equal(body.temperature, 0.3);
  t.equal(body.top_p, 0.9);
  t.same(
    Object.keys(body).sort(),
    ['max_tokens', 'messages', 'metadata', 'model', 'stop_sequences', 'system', 'temperature', 'top_p'],
    'fields with no equivalent (seed, penalties, logit_bias, n, store, metadata, service_tier) are dropped',
  );

  await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: HELLO,
    max_completion_tokens: 200,
    max_tokens: 50,
    stop: ['a', 'b'],
    temperature: 1.7,
  });
  const second = h.sims.claude.requests[1].body;
  t.equal(second.max_tokens, 200, 'max_completion_tokens wins over max_tokens');
  t.same(second.stop_sequences, ['a', 'b']);
  t.equal(second.temperature, 1, "OpenAI's 0..2 range is clamped to Anthropic's 0..1");
  t.equal(second.system, undefined);
});

t.test('a conversation that opens with an assistant greeting, or holds only instructions, is still answered', async (t) => {
  const h = await claude(t);
  const greeting = await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: [
      { role: 'system', content: 'You are a help desk.' },
      { role: 'assistant', content: 'Hello! How can I help?' },
      { role: 'user', content: 'My printer is on fire.' },
    ],
  });
  t.equal(greeting.choices[0].message.content, `Hello from ${HAIKU}`);
  t.same(
    h.sims.claude.requests[0].body.messages.map((m: { role: string }) => m.role),
    ['user', 'assistant', 'user'],
    'a minimal user turn opens the conversation, as Anthropic requires',
  );
  const onlySystem = await h.client.chat.completions.create({ model: NO_MODEL, messages: [{ role: 'system', content: 'Say hi.' }] });
  t.equal(onlySystem.choices[0].finish_reason, 'stop');
  t.same(h.sims.claude.requests[1].body.messages, [{ role: 'user', content: [{ type: 'text', text: 'Say hi.' }] }]);
});

t.test('images: a data URL becomes a base64 source, an https URL a url source', async (t) => {
  const h = await claude(t);
  const png = Buffer.from('89504e470d0a1a0a', 'hex').toString('base64');
  await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Compare these.' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'high' } },
        ],
      },
    ],
  });
  t.same(h.sims.claude.requests[0].body.messages[0].content, [
    { type: 'text', text: 'Compare these.' },
    { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
    { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
  ]);
});

t.test('tools: definitions and choice mapped, parallel calls come back as tool_calls, results round-trip', async (t) => {
  const h = await claude(t, {
    reply: (body) => (JSON.stringify(body.messages).includes('tool_result') ? { content: 'Paris 18°C, Tokyo 25°C.' } : TOOL_REPLY),
  });
  const question = { role: 'user' as const, content: 'Weather in Paris and Tokyo?' };
  const first = await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: [question],
    tools: [WEATHER_TOOL],
    tool_choice: 'required',
  });
  const sent = h.sims.claude.requests[0].body;
  t.same(sent.tools, [{ name: 'get_weather', description: 'Weather for a city', input_schema: WEATHER_TOOL.function.parameters }]);
  t.same(sent.tool_choice, { type: 'any' });

  const message = first.choices[0].message;
  t.equal(first.choices[0].finish_reason, 'tool_calls');
  t.equal(message.content, 'Let me check both.');
  t.same(message.tool_calls, [
    { id: 'call_01A', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    { id: 'call_01B', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Tokyo","unit":"celsius"}' } },
  ]);

  const calls = message.tool_calls as OpenAI.Chat.ChatCompletionMessageFunctionToolCall[];
  const second = await h.client.chat.completions.create({
    model: NO_MODEL,
    tools: [WEATHER_TOOL],
    messages: [
      question,
      message,
      { role: 'tool', tool_call_id: calls[0].id, content: '18°C' },
      { role: 'tool', tool_call_id: calls[1].id, content: [{ type: 'text', text: '25°C' }] },
    ],
  });
  t.equal(second.choices[0].message.content, 'Paris 18°C, Tokyo 25°C.');
  t.equal(second.choices[0].finish_reason, 'stop');
  const followUp = h.sims.claude.requests[1].body;
  t.same(followUp.messages, [
    { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Tokyo?' }] },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'Let me check both.' },
        { type: 'tool_use', id: 'call_01A', name: 'get_weather', input: { city: 'Paris' } },
        { type: 'tool_use', id: 'call_01B', name: 'get_weather', input: { city: 'Tokyo', unit: 'celsius' } },
      ],
    },
    {
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'call_01A', content: '18°C' },
        { type: 'tool_result', tool_use_id: 'call_01B', content: [{ type: 'text', text: '25°C' }] },
      ],
    },
  ]);
  t.equal(followUp.tool_choice, undefined, 'no tool_choice when the client set none');
});

t.test('tool_choice and parallel_tool_calls map onto Anthropic tool_choice', async (t) => {
  const h = await claude(t);
  const cases: { choice?: OpenAI.Chat.ChatCompletionToolChoiceOption; parallel?: boolean; want: unknown }[] = [
    { choice: 'auto', want: { type: 'auto' } },
    { choice: 'required', want: { type: 'any' } },
    { choice: 'none', want: { type: 'none' } },
    { choice: { type: 'function', function: { name: 'get_weather' } }, want: { type: 'tool', name: 'get_weather' } },
    { parallel: false, want: { type: 'auto', disable_parallel_tool_use: true } },
    { choice: 'required', parallel: false, want: { type: 'any', disable_parallel_tool_use: true } },
  ];
  for (const [i, c] of cases.entries()) {
    await h.client.chat.completions.create({
      model: NO_MODEL,
      messages: HELLO,
      tools: [WEATHER_TOOL],
      ...(c.choice ? { tool_choice: c.choice } : {}),
      ...(c.parallel === undefined ? {} : { parallel_tool_calls: c.parallel }),
    });
    t.same(h.sims.claude.requests[i].body.tool_choice, c.want, JSON.stringify(c.choice ?? { parallel_tool_calls: c.parallel }));
  }
});

t.test('tool-call arguments that are not a JSON object are kept for the model, not lost', async (t) => {
  const h = await claude(t);
  const res = await h.client.chat.completions.create({
    model: NO_MODEL,
    tools: [WEATHER_TOOL],
    messages: [
      { role: 'user', content: 'Weather?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Par' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'error: bad arguments' },
    ],
  });
  t.equal(res.choices[0].finish_reason, 'stop');
  t.same(h.sims.claude.requests[0].body.messages[1].content, [
    { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { _raw_arguments: '{"city": "Par' } },
  ]);
});

t.test('streamed tool calls: the SDK accumulates the same answer as the non-streamed one', async (t) => {
  const h = await claude(t, { reply: () => TOOL_REPLY });
  const params = { model: NO_MODEL, messages: [{ role: 'user' as const, content: 'Weather in Paris and Tokyo?' }], tools: [WEATHER_TOOL] };
  const whole = await h.client.chat.completions.create(params);
  const streamed = await h.client.chat.completions.stream(params).finalChatCompletion();
  t.equal(streamed.model, whole.model);
  t.equal(streamed.choices[0].message.content, whole.choices[0].message.content);
  t.same(streamed.choices[0].message.tool_calls, whole.choices[0].message.tool_calls);
  t.equal(streamed.choices[0].finish_reason, 'tool_calls');
  t.equal(streamed.choices[0].finish_reason, whole.choices[0].finish_reason);
  t.equal(h.sims.claude.requests[1].body.stream, true, 'stream passes through');
});

t.test('a streamed answer: role first, one id/created/model, tool indexes count tool calls, finish, [DONE]', async (t) => {
  const h = await claude(t, { reply: () => TOOL_REPLY });
  const { status, data } = await rawStream(h, { messages: HELLO, tools: [WEATHER_TOOL] });
  t.equal(status, 200);
  t.equal(data[data.length - 1], '[DONE]');
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  t.ok(
    chunks.every((c) => c.object === 'chat.completion.chunk'),
    'every event is a chat.completion.chunk',
  );
  t.equal(new Set(chunks.map((c) => `${c.id} ${c.created} ${c.model}`)).size, 1, 'every chunk carries the same id, created and model');
  t.equal(chunks[0].model, HAIKU);
  t.same(chunks[0].choices[0].delta, { role: 'assistant', content: '', refusal: null }, 'the role chunk comes first');
  const toolDeltas = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
  t.same(
    toolDeltas.filter((d: { id?: string }) => d.id),
    [
      { index: 0, id: 'call_01A', type: 'function', function: { name: 'get_weather', arguments: '' } },
      { index: 1, id: 'call_01B', type: 'function', function: { name: 'get_weather', arguments: '' } },
    ],
    "the first delta of each call names it; indexes count tool calls, not Anthropic's content blocks",
  );
  const args = [0, 1].map((i) =>
    toolDeltas
      .filter((d: { index: number }) => d.index === i)
      .map((d: { function: { arguments: string } }) => d.function.arguments)
      .join(''),
  );
  t.same(args, ['{"city":"Paris"}', '{"city":"Tokyo","unit":"celsius"}']);
  const last = chunks[chunks.length - 1];
  t.equal(last.choices[0].finish_reason, 'tool_calls');
  t.notOk(
    chunks.some((c) => 'usage' in c),
    'no usage unless the client asks for it',
  );
});

t.test('usage: cache reads and writes counted into prompt_tokens; the usage chunk only with include_usage', async (t) => {
  const h = await claude(t, {
    reply: () => ({
      content: 'Cached answer.',
      usage: { promptTokens: 10, completionTokens: 5, cacheReadTokens: 100, cacheCreationTokens: 20 },
    }),
  });
  const whole = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO });
  t.same(whole.usage, {
    prompt_tokens: 130,
    completion_tokens: 5,
    total_tokens: 135,
    prompt_tokens_details: { cached_tokens: 100, audio_tokens: 0, cache_creation_tokens: 20 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  });

  const without: OpenAI.Chat.ChatCompletionChunk[] = [];
  for await (const chunk of await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true })) without.push(chunk);
  t.notOk(
    without.some((c) => c.usage),
    'no usage when not asked for',
  );
  t.ok(
    without.every((c) => c.choices.length === 1),
    'no usage chunk when not asked for',
  );

  const withUsage: OpenAI.Chat.ChatCompletionChunk[] = [];
  for await (const chunk of await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: HELLO,
    stream: true,
    stream_options: { include_usage: true },
  }))
    withUsage.push(chunk);
  const last = withUsage[withUsage.length - 1];
  t.same(last.choices, [], 'the usage chunk has no choices');
  t.same(last.usage, whole.usage, 'the same usage as the non-streamed answer');
  t.equal(withUsage[withUsage.length - 2].choices[0].finish_reason, 'stop', 'the finish chunk comes before it');
  t.equal(withUsage.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'Cached answer.');
  t.notOk(h.sims.claude.requests[2].body.stream_options, 'stream_options is not sent upstream');
});

t.test('every stop reason becomes the matching finish_reason, streamed or not', async (t) => {
  let next: Reply = {};
  const h = await claude(t, { reply: () => next });
  const cases: { reply: Reply; want: string }[] = [
    { reply: { content: 'Done.', finishReason: 'end_turn' }, want: 'stop' },
    { reply: { content: 'Up to the', finishReason: 'stop_sequence', stopSequence: 'END' }, want: 'stop' },
    { reply: { content: 'Cut sh', finishReason: 'max_tokens' }, want: 'length' },
    { reply: TOOL_REPLY, want: 'tool_calls' },
    { reply: { content: 'I cannot help with that.', finishReason: 'refusal' }, want: 'content_filter' },
    { reply: { content: 'Searching', finishReason: 'pause_turn' }, want: 'length' },
  ];
  for (const c of cases) {
    next = c.reply;
    const whole = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, tools: [WEATHER_TOOL] });
    t.equal(whole.choices[0].finish_reason, c.want, `${c.reply.finishReason ?? 'tool_use'} → ${c.want}`);
    const reasons: (string | null)[] = [];
    for await (const chunk of await h.client.chat.completions.create({
      model: NO_MODEL,
      messages: HELLO,
      tools: [WEATHER_TOOL],
      stream: true,
    })) {
      reasons.push(chunk.choices[0]?.finish_reason ?? null);
    }
    t.same(
      reasons.filter((r) => r !== null),
      [c.want],
      `streamed: ${c.reply.finishReason ?? 'tool_use'} → ${c.want}, once`,
    );
  }
});

t.test("a 400 that is the request's own fault comes back in the OpenAI shape, not retried", async (t) => {
  const h = await claude(t, { fallback: true });
  h.sims.claude.setFault({
    kind: 'status',
    status: 400,
    errorType: 'invalid_request_error',
    message: 'messages.0.content.0.image.source.base64: image exceeds 5 MB maximum',
  });
  const err = await rejection(h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }));
  t.equal(err.status, 400);
  t.equal(err.error?.type, 'invalid_request_error');
  t.match(err.error?.message, /image exceeds 5 MB/);
  t.equal(h.sims.fallback.requests.length, 0, 'not retried on the fallback');

  const raw = await post(`${h.sidecar.url}/v1/chat/completions`, { messages: HELLO });
  t.equal(raw.status, 400);
  t.same(
    Object.keys(raw.json.error ?? {}).sort(),
    ['code', 'message', 'param', 'type'],
    'the OpenAI error shape, nothing of Anthropic left',
  );

  h.sims.claude.setFault({ kind: 'status', status: 413 });
  const tooLarge = await post(`${h.sidecar.url}/v1/chat/completions`, { messages: HELLO });
  t.equal(tooLarge.status, 413);
  t.same(tooLarge.json, {
    error: {
      message: 'Request exceeds the maximum allowed number of bytes.',
      type: 'invalid_request_error',
      param: null,
      code: 'request_too_large',
    },
  });
  t.equal(h.sims.fallback.requests.length, 0);
});

const FAILOVER: { name: string; fault: Fault; reason: string }[] = [
  { name: '401 authentication_error', fault: { kind: 'status', status: 401 }, reason: 'auth' },
  { name: '402 billing_error', fault: { kind: 'status', status: 402 }, reason: 'quota_exhausted' },
  { name: '403 permission_error', fault: { kind: 'status', status: 403 }, reason: 'auth' },
  { name: '404 not_found_error', fault: { kind: 'status', status: 404 }, reason: 'model_not_found' },
  {
    name: '429 rate_limit_error with retry-after',
    fault: { kind: 'status', status: 429, headers: { 'retry-after': '30' } },
    reason: 'rate_limited',
  },
  { name: '500 api_error', fault: { kind: 'status', status: 500 }, reason: 'upstream_5xx' },
  { name: '529 overloaded_error', fault: { kind: 'status', status: 529 }, reason: 'overloaded' },
  {
    name: '400 prompt is too long',
    fault: { kind: 'status', status: 400, errorType: 'context_length_exceeded' },
    reason: 'context_length',
  },
  {
    name: '400 max_tokens above the model maximum',
    fault: {
      kind: 'status',
      status: 400,
      message: 'max_tokens: 16384 > 8192, which is the maximum allowed number of output tokens for claude-3-5-haiku-20241022',
    },
    reason: 'context_length',
  },
  { name: 'invalid JSON body', fault: { kind: 'invalidJson' }, reason: 'bad_response' },
  { name: 'truncated JSON body', fault: { kind: 'truncatedJson' }, reason: 'bad_response' },
  { name: 'empty body', fault: { kind: 'emptyBody' }, reason: 'bad_response' },
];

t.test('every Anthropic failure fails over to the OpenAI model of the next group', async (t) => {
  for (const c of FAILOVER) {
    await t.test(c.name, async (t) => {
      const h = await claude(t, { fallback: true });
      const events = recordRequests(h);
      h.sims.claude.setFault(c.fault);
      const { data, response } = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
      t.equal(response.status, 200);
      t.equal(data.choices[0].message.content, 'Hello from gpt-4o-mini');
      t.equal(response.headers.get('x-llm-failover-provider'), 'fallback');
      t.equal(h.sims.claude.requests.length, 1, 'Claude was tried first');
      t.equal(events[0]?.attempts[0]?.outcome, c.reason, `understood as ${c.reason}`);
      if (c.fault.kind === 'status' && c.fault.status === 429) {
        const health = h.sidecar.health.get(h.sidecar.health.models()[0]);
        t.ok(health.until !== undefined && health.until - Date.now() > 25_000, "Claude cools for the Retry-After's 30 s");
      }
    });
  }
});

t.test('streamed: an overload error event before the first token fails over to OpenAI', async (t) => {
  const h = await claude(t, { fallback: true });
  const events = recordRequests(h);
  h.sims.claude.setFault({ kind: 'errorEventBeforeFirstToken', errorType: 'overloaded_error' });
  const stream = h.client.chat.completions.stream({ model: NO_MODEL, messages: HELLO });
  const final = await stream.finalChatCompletion();
  t.equal(final.choices[0].message.content, 'Hello from gpt-4o-mini');
  t.equal(final.model, 'gpt-4o-mini');
  t.equal(h.sims.claude.requests.length, 1);
  t.equal(events[0]?.attempts[0]?.outcome, 'overloaded');

  const h2 = await claude(t, { fallback: true });
  const events2 = recordRequests(h2);
  h2.sims.claude.setFault({ kind: 'invalidJson' });
  const again = await h2.client.chat.completions.stream({ model: NO_MODEL, messages: HELLO }).finalChatCompletion();
  t.equal(again.choices[0].message.content, 'Hello from gpt-4o-mini', 'a malformed event before the first token fails over too');
  t.equal(events2[0]?.attempts[0]?.outcome, 'bad_response');
});

t.test('streamed: an error event after the first token ends the stream with an error event and no [DONE]', async (t) => {
  const cutStream = async () => {
    const h = await claude(t, { fallback: true, reply: () => ({ content: 'one two three four five six' }) });
    h.sims.claude.setFault({ kind: 'errorEventAfterFirstToken', errorType: 'overloaded_error' });
    return h;
  };
  const h = await cutStream();
  const got: string[] = [];
  const err = await rejection(
    (async () => {
      for await (const chunk of await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, stream: true }))
        got.push(chunk.choices[0]?.delta?.content ?? '');
    })(),
  );
  t.match(err.message, /broke after it started/, 'the SDK raises the error event');
  t.match(got.join(''), /^one/, 'the content before the break reached the app');
  t.equal(h.sims.fallback.requests.length, 0, 'a started stream is not replayed elsewhere');

  const raw = await rawStream(await cutStream(), { messages: HELLO });
  t.equal(raw.status, 200);
  t.equal(raw.provider, 'claude');
  t.notOk(raw.data.includes('[DONE]'), 'no [DONE]');
  t.match(JSON.parse(raw.data[raw.data.length - 1]), { error: { code: 'stream_interrupted' } });
  t.match(JSON.parse(raw.data[1]), { choices: [{ delta: { content: 'one' } }] }, 'the role chunk, then content, then the error');
});

t.test('reasoning_effort becomes extended thinking with max_tokens raised to fit it', async (t) => {
  const h = await claude(t);
  await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: HELLO,
    reasoning_effort: 'high',
    max_completion_tokens: 1000,
    temperature: 0.2,
  });
  const body = h.sims.claude.requests[0].body;
  t.same(body.thinking, { type: 'enabled', budget_tokens: 16384 });
  t.equal(body.max_tokens, 1000 + 16384, 'the answer keeps its 1000 tokens beside the thinking budget');
  t.equal(body.temperature, undefined, 'thinking takes only the default temperature');

  await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO, reasoning_effort: 'minimal' });
  t.equal(h.sims.claude.requests[1].body.thinking, undefined, 'minimal effort: no thinking');
  t.equal(h.sims.claude.requests[1].body.max_tokens, 4096);
});

t.test('response_format json_schema becomes a system instruction carrying the schema', async (t) => {
  const h = await claude(t, { reply: () => ({ content: '{"city":"Paris"}' }) });
  const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
  const res = await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: [{ role: 'system', content: 'Be terse.' }, ...HELLO],
    response_format: { type: 'json_schema', json_schema: { name: 'place', schema, strict: true } },
  });
  t.equal(res.choices[0].message.content, '{"city":"Paris"}');
  const system = h.sims.claude.requests[0].body.system;
  t.equal(system[0].text, 'Be terse.');
  t.match(system[1].text, /JSON Schema "place"/);
  t.ok(system[1].text.includes(JSON.stringify(schema)), 'the schema itself is in the instruction');
  t.equal(h.sims.claude.requests[0].body.response_format, undefined);
});

t.test('the deprecated functions / function_call style is answered in the same style', async (t) => {
  const h = await claude(t, { reply: () => ({ toolCalls: [{ name: 'get_weather', arguments: '{"city":"Oslo"}' }] }) });
  const body = { messages: HELLO, functions: [WEATHER_TOOL.function], function_call: { name: 'get_weather' } };
  const res = await post(`${h.sidecar.url}/v1/chat/completions`, body);
  const choice = (res.json.choices as { message: Record<string, unknown>; finish_reason: string }[])[0];
  t.same(choice.message.function_call, { name: 'get_weather', arguments: '{"city":"Oslo"}' });
  t.notOk(choice.message.tool_calls);
  t.equal(choice.finish_reason, 'function_call');
  t.same(h.sims.claude.requests[0].body.tool_choice, { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true });
  t.same(h.sims.claude.requests[0].body.tools, [
    { name: 'get_weather', description: 'Weather for a city', input_schema: WEATHER_TOOL.function.parameters },
  ]);

  const streamed = await rawStream(h, body);
  const deltas = streamed.data
    .slice(0, -1)
    .map((d) => JSON.parse(d).choices[0])
    .filter((c) => c.delta.function_call);
  t.equal(deltas[0].delta.function_call.name, 'get_weather');
  t.equal(deltas.map((c) => c.delta.function_call.arguments).join(''), '{"city":"Oslo"}');
});

t.test("the seed's cost-based example: OpenAI and Anthropic alternate in group 1; group 2 takes over when both are down", async (t) => {
  const h = await startHarness([
    { name: 'openai-gpt-3.5-turbo', model: 'gpt-3.5-turbo', group: 0 },
    { name: 'claude-haiku', kind: 'anthropic', model: HAIKU, group: 0 },
    { name: 'openai-gpt-4.0-turbo', model: 'gpt-4.0-turbo', group: 1 },
    { name: 'claude-opus', kind: 'anthropic', model: 'claude-opus-4-1', group: 1 },
  ]);
  t.teardown(() => h.close());
  const models: string[] = [];
  for (let i = 0; i < 4; i++) models.push((await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO })).model);
  t.same(new Set(models), new Set(['gpt-3.5-turbo', HAIKU]));
  for (let i = 1; i < models.length; i++) t.not(models[i], models[i - 1], `request ${i + 1} went to the other model of group 1`);

  h.sims['openai-gpt-3.5-turbo'].setFault({ kind: 'status', status: 503 });
  h.sims['claude-haiku'].setFault({ kind: 'status', status: 503 });
  const after: string[] = [];
  for (let i = 0; i < 4; i++) {
    const { data, response } = await h.client.chat.completions.create({ model: NO_MODEL, messages: HELLO }).withResponse();
    t.equal(response.headers.get('x-llm-failover-group'), '2');
    after.push(data.model);
  }
  t.same(new Set(after), new Set(['gpt-4.0-turbo', 'claude-opus-4-1']), 'both models of group 2 serve');
  const streamed = await h.client.chat.completions.stream({ model: NO_MODEL, messages: HELLO }).finalChatCompletion();
  t.ok(['gpt-4.0-turbo', 'claude-opus-4-1'].includes(streamed.model), 'streams too');
});

t.test('the stream translator on its own', (t) => {
  const ev = (type: string, data: Record<string, unknown>) => ({ event: type, data: JSON.stringify({ type, ...data }) });
  const start = ev('message_start', { message: { id: 'msg_1', model: HAIKU, usage: { input_tokens: 3, output_tokens: 1 } } });

  t.test('the role chunk is not content; thinking never reaches the client; text commits', (t) => {
    const s = new AnthropicStream(HAIKU, false, false);
    const first = s.push(start);
    t.notOk(first.content, 'the role chunk alone does not commit');
    t.equal(first.model, HAIKU, 'the model is known from message_start');
    t.match(first.out, /"role":"assistant"/);
    t.same(s.push(ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } })), {});
    t.same(
      s.push(ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } })),
      { progress: true },
      'thinking is progress (it holds off the idle timer), not content',
    );
    t.same(s.push(ev('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'x' } })), { progress: true });
    t.same(s.push({ event: 'ping', data: '{"type":"ping"}' }), {});
    const text = s.push(ev('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Hi' } }));
    t.ok(text.content);
    t.match(text.out, /"content":"Hi"/);
    t.end();
  });

  t.test('in-stream errors: overloaded, others, malformed JSON', (t) => {
    const s = new AnthropicStream(HAIKU, false, false);
    t.equal(s.push(ev('error', { error: { type: 'overloaded_error', message: 'Overloaded' } })).error?.reason, 'overloaded');
    t.equal(s.push(ev('error', { error: { type: 'api_error', message: 'boom' } })).error?.reason, 'stream_error');
    t.equal(s.push({ event: 'content_block_delta', data: '{not json' }).error?.reason, 'bad_response');
    t.end();
  });

  t.test('a tool_use block with no argument fragments still gives arguments, as a whole answer would', (t) => {
    const s = new AnthropicStream(HAIKU, false, false);
    s.push(start);
    const open = s.push(
      ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_9', name: 'now', input: {} } }),
    );
    t.ok(open.content, 'a tool call start commits');
    const close = s.push(ev('content_block_stop', { index: 0 }));
    t.match(close.out, /"tool_calls":\[\{"index":0,"function":\{"arguments":"\{\}"\}\}\]/);
    s.push(ev('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 4 } }));
    const end = s.push(ev('message_stop', {}));
    t.ok(end.done);
    t.match(end.out, /"finish_reason":"tool_calls"[\s\S]*data: \[DONE\]\n\n$/);
    t.same(end.usage, { inputTokens: 3, outputTokens: 4 }, 'the usage the request path records for metrics');
    t.end();
  });
  t.end();
});

t.test('a text chunk is the very chunk the general framing makes, whatever the text', async (t) => {
  for (const usage of [false, true]) {
    const framer = new ChunkFramer('chatcmpl-x', 'claude-sonnet-4', usage);
    const texts = [
      'Hello',
      'two\nlines',
      'quote " and \\ backslash',
      '\u2028 line and paragraph separators \u2029',
      'emoji 🦀',
      '</script>',
    ];
    for (const [i, text] of texts.entries()) {
      // named by index: a U+2028 in a test name would break the TAP stream itself
      t.equal(framer.text(text), framer.chunk({ content: text }), `text ${i}, usage ${usage}`);
    }
  }
});

// ---- the translator on its own: requests found by fuzzing (test/fuzz.test.ts) ----

type AnthropicBody = { messages?: unknown[] };

t.test('anthropic buildRequest never sends an empty conversation', async (t) => {
  for (const messages of [
    [{ role: 'user', content: '   ' }],
    [{ role: 'narrator', content: 'hello' }],
    [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }],
  ]) {
    const req = parsed(Buffer.from(JSON.stringify({ messages })))!;
    let body: AnthropicBody | undefined;
    try {
      body = JSON.parse(anthropicAdapter.buildRequest(req, ANTHROPIC_TARGET).body.toString()) as AnthropicBody;
    } catch {
      t.pass(`${JSON.stringify(messages)}: untranslatable, fails over`);
      continue;
    }
    t.ok((body.messages?.length ?? 0) > 0, `${JSON.stringify(messages)}: at least one message`);
  }
});

t.test('untrusted strings that name Object.prototype members are no lookup keys', async (t) => {
  for (const effort of ['valueOf', 'constructor', '__proto__', 'toString']) {
    const req = parsed(Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], reasoning_effort: effort })))!;
    const body = JSON.parse(anthropicAdapter.buildRequest(req, ANTHROPIC_TARGET).body.toString()) as {
      max_tokens: unknown;
      thinking?: unknown;
    };
    t.equal(body.max_tokens, 4096, `reasoning_effort ${effort}: no thinking budget, max_tokens stays a number`);
    t.equal(body.thinking, undefined, `reasoning_effort ${effort}: no thinking`);
  }
  const { clientBody } = anthropicAdapter.translateError(
    400,
    {},
    Buffer.from(JSON.stringify({ type: 'error', error: { type: 'constructor', message: 'odd' } })),
    1000,
  );
  t.equal(
    (JSON.parse(clientBody.toString()) as { error: { type?: unknown } }).error.type,
    'invalid_request_error',
    'an unknown error type maps like any unknown type',
  );
});
