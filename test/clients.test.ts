/**
 * Real client libraries just work: the official OpenAI SDK, the Vercel AI SDK's OpenAI provider
 * and LangChain's ChatOpenAI, each pointed at the sidecar as if it were OpenAI, each with a plain
 * call, a streamed call and a tool call. Every call goes through a failover: the primary (group 1)
 * fails before anything reached the app and the fallback (group 2) serves, once an OpenAI-compatible
 * model and once an Anthropic one whose answer the sidecar translates.
 *
 * The apps name no model of their own: every client requires a model string, so they pass
 * CLIENT_MODEL and the sidecar replaces it with the model of the provider it picked (checked in
 * what the fallback received).
 *
 * Retries in the clients are off (maxRetries: 0): a client retrying a failed call would hide
 * whether the sidecar failed over inside the one request.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { AIMessageChunk } from '@langchain/core/messages';
import { tool as langchainTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateText, stepCountIs, streamText, tool, type TextStreamPart, type ToolSet } from 'ai';
import type OpenAI from 'openai';
import t from 'tap';
import { z } from 'zod';
import type { Fault, JsonBody, Reply } from '../simulator/index.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import type { ModelSpec } from './support/yaml.ts';

/** What each client sends as `model`: required by every client, replaced by the sidecar. */
const CLIENT_MODEL = 'gpt-4o-mini';
const HAIKU = 'claude-3-5-haiku-latest';
const QUESTION = HELLO[0].content;
const WEATHER_ARGS = { city: 'Paris', unit: 'celsius' };
const WEATHER_DESCRIPTION = 'The current weather in a city';

const UNAVAILABLE: Fault = { kind: 'status', status: 503 };
const ERROR_EVENT: Fault = { kind: 'errorEventBeforeFirstToken' };
const RESET: Fault = { kind: 'reset' };

interface Test {
  teardown(fn: () => unknown): void;
  equal(found: unknown, wanted: unknown, message: string): unknown;
}

/** The tool result in the last turn, in either wire format (OpenAI `tool` message, Anthropic `tool_result` block). */
function toolResultOf(body: JsonBody): string | undefined {
  const last = Array.isArray(body?.messages) ? body.messages.at(-1) : undefined;
  const text = (c: unknown): string =>
    typeof c === 'string' ? c : Array.isArray(c) ? c.map((p: { text?: string }) => p.text ?? '').join('') : '';
  if (last?.role === 'tool') return text(last.content);
  const block = Array.isArray(last?.content) ? last.content.find((b: { type?: string }) => b.type === 'tool_result') : undefined;
  return block ? text(block.content) : undefined;
}

/**
 * A model that calls get_weather when it is offered tools, answers with the tool's result once it
 * has one, and otherwise says hello naming itself (so the text shows who answered).
 */
function answers(name: string): (body: JsonBody) => Reply {
  return (body) => {
    const result = toolResultOf(body);
    if (result !== undefined) return { content: `In Paris: ${result}` };
    if (Array.isArray(body.tools) && body.tools.length > 0)
      return { toolCalls: [{ name: 'get_weather', arguments: JSON.stringify(WEATHER_ARGS) }] };
    return { content: `Hello from ${name}` };
  };
}

const WITH_OPENAI_FALLBACK: ModelSpec[] = [
  { name: 'primary', group: 0, sim: { reply: answers('primary') } },
  { name: 'fallback', model: 'gpt-4.1', group: 1, sim: { reply: answers('fallback') } },
];
const WITH_ANTHROPIC_FALLBACK: ModelSpec[] = [
  { name: 'primary', group: 0, sim: { reply: answers('primary') } },
  { name: 'claude', kind: 'anthropic', model: HAIKU, group: 1, sim: { reply: answers('claude') } },
];

/** A fresh sidecar (clean health view) whose primary fails with `fault` on every request. */
async function failingPrimary(tt: Test, models: ModelSpec[], fault: Fault): Promise<Harness> {
  const h = await startHarness(models);
  tt.teardown(() => h.close());
  h.sims.primary.setFault(fault);
  return h;
}

/**
 * The primary was tried first and failed, `by` served, `calls` requests each; what reached `by`
 * names its own model, not the client's. `headers`: the response headers, where the client shows them.
 */
function failedOver(
  tt: Test,
  h: Harness,
  by: string,
  opts: { headers?: Record<string, string | null | undefined>; calls?: number } = {},
): void {
  const calls = opts.calls ?? 1;
  tt.equal(h.sims.primary.requests.length, calls, 'the primary was tried first');
  tt.equal(h.sims[by].requests.length, calls, `${by} served`);
  tt.equal(h.sims[by].requests[0].body.model, h.sims[by].model, `the sidecar replaced the client's "${CLIENT_MODEL}" with ${by}'s model`);
  if (opts.headers) {
    tt.equal(opts.headers['x-llm-failover-provider'], by, 'x-llm-failover-provider names the fallback');
    tt.equal(opts.headers['x-llm-failover-group'], '2', 'x-llm-failover-group: the second group');
    tt.equal(opts.headers['x-llm-failover-attempts'], '2', 'x-llm-failover-attempts: the primary, then the fallback');
  }
}

const headersOf = (res: Response) => Object.fromEntries(res.headers.entries());

t.test('the official OpenAI SDK', async (t) => {
  const weather: OpenAI.Chat.Completions.ChatCompletionTool = {
    type: 'function',
    function: {
      name: 'get_weather',
      description: WEATHER_DESCRIPTION,
      parameters: {
        type: 'object',
        properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city'],
      },
    },
  };

  t.test('chat.completions.create after a 503', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, UNAVAILABLE);
    const { data, response } = await h.client.chat.completions.create({ model: CLIENT_MODEL, messages: HELLO }).withResponse();
    t.equal(data.choices[0].message.content, 'Hello from fallback');
    t.equal(data.choices[0].finish_reason, 'stop');
    t.equal(data.model, 'gpt-4.1', 'the model that answered');
    failedOver(t, h, 'fallback', { headers: headersOf(response) });
  });

  t.test('a stream after an error event before the first token', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, ERROR_EVENT);
    const { data: stream, response } = await h.client.chat.completions
      .create({ model: CLIENT_MODEL, messages: HELLO, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    t.equal(text, 'Hello from fallback');
    t.equal(finish, 'stop');
    t.ok(usage && usage.total_tokens > 0, 'the usage chunk came through');
    failedOver(t, h, 'fallback', { headers: headersOf(response) });
  });

  t.test('a tool call after a connection reset', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, RESET);
    const { data, response } = await h.client.chat.completions
      .create({ model: CLIENT_MODEL, messages: HELLO, tools: [weather] })
      .withResponse();
    const call = data.choices[0].message.tool_calls?.[0];
    t.equal(call?.type, 'function');
    t.equal(call?.type === 'function' ? call.function.name : undefined, 'get_weather');
    t.same(call?.type === 'function' ? JSON.parse(call.function.arguments) : undefined, WEATHER_ARGS);
    t.equal(data.choices[0].finish_reason, 'tool_calls');
    failedOver(t, h, 'fallback', { headers: headersOf(response) });
  });

  t.test('through an Anthropic fallback: plain, streamed, tool call and a streamed tool call', async (t) => {
    const plain = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, UNAVAILABLE);
    const { data, response } = await plain.client.chat.completions.create({ model: CLIENT_MODEL, messages: HELLO }).withResponse();
    t.equal(data.choices[0].message.content, 'Hello from claude');
    t.equal(data.choices[0].finish_reason, 'stop');
    t.equal(data.model, HAIKU);
    failedOver(t, plain, 'claude', { headers: headersOf(response) });

    const streamed = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, ERROR_EVENT);
    // the SDK's stream helper assembles the final message the way apps read it
    const runner = streamed.client.chat.completions.stream({ model: CLIENT_MODEL, messages: HELLO });
    const deltas: string[] = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    t.equal(deltas.join(''), 'Hello from claude');
    t.ok(deltas.length > 1, 'the text arrived in pieces');
    t.equal(final.choices[0].message.content, 'Hello from claude');
    t.equal(final.choices[0].finish_reason, 'stop');
    failedOver(t, streamed, 'claude');

    const tools = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, UNAVAILABLE);
    const called = await tools.client.chat.completions.create({ model: CLIENT_MODEL, messages: HELLO, tools: [weather] });
    const call = called.choices[0].message.tool_calls?.[0];
    t.equal(call?.type === 'function' ? call.function.name : undefined, 'get_weather');
    t.same(call?.type === 'function' ? JSON.parse(call.function.arguments) : undefined, WEATHER_ARGS);
    t.equal(called.choices[0].finish_reason, 'tool_calls');
    failedOver(t, tools, 'claude');

    const streamedTools = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, ERROR_EVENT);
    const toolRunner = streamedTools.client.chat.completions.stream({ model: CLIENT_MODEL, messages: HELLO, tools: [weather] });
    const finalTools = await toolRunner.finalChatCompletion();
    const streamedCall = finalTools.choices[0].message.tool_calls?.[0];
    t.equal(streamedCall?.type === 'function' ? streamedCall.function.name : undefined, 'get_weather');
    t.same(
      streamedCall?.type === 'function' ? JSON.parse(streamedCall.function.arguments) : undefined,
      WEATHER_ARGS,
      'the argument fragments assemble into the arguments',
    );
    t.equal(finalTools.choices[0].finish_reason, 'tool_calls');
    failedOver(t, streamedTools, 'claude');
  });
});

t.test('the Vercel AI SDK (@ai-sdk/openai)', async (t) => {
  // provider('id') and provider.languageModel('id') are the Responses API (POST /responses; the
  // default since AI SDK 5, still in @ai-sdk/openai 4), which the sidecar does not serve: apps
  // use the chat model, provider.chat('id'), which posts to /chat/completions.
  const chatModel = (h: Harness) => createOpenAI({ baseURL: `${h.sidecar.url}/v1`, apiKey: 'unused' }).chat(CLIENT_MODEL);
  const weather = tool({
    description: WEATHER_DESCRIPTION,
    inputSchema: z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']).optional() }),
  });
  const weatherThatRuns = tool({
    description: WEATHER_DESCRIPTION,
    inputSchema: z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']).optional() }),
    execute: async ({ city, unit }) => `21 degrees ${unit ?? 'celsius'} and sunny in ${city}`,
  });

  /** Every part of a streamText result, and the stream errors it reported. */
  async function drain<TOOLS extends ToolSet>(parts: AsyncIterable<TextStreamPart<TOOLS>>) {
    const seen: TextStreamPart<TOOLS>[] = [];
    for await (const part of parts) seen.push(part);
    return { parts: seen, errors: seen.filter((p) => p.type === 'error') };
  }

  t.test('generateText after a 503', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, UNAVAILABLE);
    const result = await generateText({ model: chatModel(h), prompt: QUESTION, maxRetries: 0 });
    t.equal(result.text, 'Hello from fallback');
    t.equal(result.finishReason, 'stop');
    t.equal(result.response.modelId, 'gpt-4.1');
    t.equal(h.sims.fallback.requests[0].path, '/v1/chat/completions', 'chat completions, not the Responses API');
    failedOver(t, h, 'fallback', { headers: result.response.headers });
  });

  t.test('streamText after an error event before the first token', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, ERROR_EVENT);
    const result = streamText({ model: chatModel(h), prompt: QUESTION, maxRetries: 0 });
    const { parts, errors } = await drain(result.fullStream);
    t.same(errors, [], 'no error reached the app');
    const deltas = parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : []));
    t.ok(deltas.length > 1, 'the text arrived in pieces');
    t.equal(deltas.join(''), 'Hello from fallback');
    t.equal(await result.text, 'Hello from fallback');
    t.equal(await result.finishReason, 'stop');
    t.ok((await result.usage).totalTokens! > 0, 'usage came through');
    failedOver(t, h, 'fallback', { headers: (await result.response).headers });
  });

  t.test('a tool call (tool() with a zod schema) after a connection reset', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, RESET);
    const result = await generateText({ model: chatModel(h), prompt: QUESTION, tools: { get_weather: weather }, maxRetries: 0 });
    t.equal(result.toolCalls.length, 1);
    t.equal(result.toolCalls[0].toolName, 'get_weather');
    t.same(result.toolCalls[0].input, WEATHER_ARGS, 'arguments parsed and validated by the zod schema');
    t.equal(result.finishReason, 'tool-calls');
    const offered = h.sims.fallback.requests[0].body.tools;
    t.equal(offered[0].function.name, 'get_weather', 'the tool reached the model');
    failedOver(t, h, 'fallback', { headers: result.response.headers });
  });

  t.test('through an Anthropic fallback: generateText, streamText, a tool call and a streamed tool round trip', async (t) => {
    const plain = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, UNAVAILABLE);
    const text = await generateText({ model: chatModel(plain), prompt: QUESTION, maxRetries: 0 });
    t.equal(text.text, 'Hello from claude');
    t.equal(text.finishReason, 'stop');
    t.equal(text.response.modelId, HAIKU);
    failedOver(t, plain, 'claude', { headers: text.response.headers });

    const streamed = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, ERROR_EVENT);
    const stream = streamText({ model: chatModel(streamed), prompt: QUESTION, maxRetries: 0 });
    const { errors } = await drain(stream.fullStream);
    t.same(errors, [], 'no error reached the app');
    t.equal(await stream.text, 'Hello from claude');
    t.equal(await stream.finishReason, 'stop');
    failedOver(t, streamed, 'claude', { headers: (await stream.response).headers });

    const tools = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, UNAVAILABLE);
    const called = await generateText({ model: chatModel(tools), prompt: QUESTION, tools: { get_weather: weather }, maxRetries: 0 });
    t.equal(called.toolCalls[0]?.toolName, 'get_weather');
    t.same(called.toolCalls[0]?.input, WEATHER_ARGS);
    t.equal(called.finishReason, 'tool-calls');
    failedOver(t, tools, 'claude', { headers: called.response.headers });

    // two steps: the streamed tool call runs, its result goes back through the sidecar (as an
    // Anthropic tool_result), and Claude's final answer quotes it
    const roundTrip = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, ERROR_EVENT);
    const loop = streamText({
      model: chatModel(roundTrip),
      prompt: QUESTION,
      tools: { get_weather: weatherThatRuns },
      stopWhen: stepCountIs(2),
      maxRetries: 0,
    });
    const { parts, errors: loopErrors } = await drain(loop.fullStream);
    t.same(loopErrors, [], 'no error reached the app');
    const call = parts.find((p) => p.type === 'tool-call');
    t.equal(call?.type === 'tool-call' ? call.toolName : undefined, 'get_weather');
    t.same(call?.type === 'tool-call' ? call.input : undefined, WEATHER_ARGS);
    const steps = await loop.steps;
    t.same(
      steps.map((s) => s.finishReason),
      ['tool-calls', 'stop'],
    );
    t.equal(await loop.text, 'In Paris: 21 degrees celsius and sunny in Paris');
    const [assistant, user] = roundTrip.sims.claude.requests[1].body.messages.slice(-2);
    const toolUse = assistant.content.find((b: { type: string }) => b.type === 'tool_use');
    const toolResult = user.content[0];
    t.equal(toolResult.type, 'tool_result', 'the tool result reached Claude as a tool_result');
    t.equal(toolResult.tool_use_id, toolUse?.id, 'paired with the tool_use before it');
    t.equal(toolUse?.id, call?.type === 'tool-call' ? call.toolCallId : undefined, 'under the id the app saw');
    failedOver(t, roundTrip, 'claude', { calls: 2 });
  });
});

t.test('LangChain ChatOpenAI', async (t) => {
  const chat = (h: Harness) =>
    new ChatOpenAI({
      model: CLIENT_MODEL,
      apiKey: 'unused',
      maxRetries: 0,
      timeout: 20_000,
      configuration: { baseURL: `${h.sidecar.url}/v1` },
    });
  const weather = langchainTool(async ({ city, unit }) => `21 degrees ${unit ?? 'celsius'} in ${city}`, {
    name: 'get_weather',
    description: WEATHER_DESCRIPTION,
    schema: z.object({ city: z.string(), unit: z.enum(['celsius', 'fahrenheit']).optional() }),
  });

  /** Streams and concatenates the chunks, as LangChain apps do to get the whole message. */
  async function streamed(stream: AsyncIterable<AIMessageChunk>): Promise<{ message: AIMessageChunk; chunks: number }> {
    let message: AIMessageChunk | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      message = message ? message.concat(chunk) : chunk;
    }
    return { message: message ?? new AIMessageChunk(''), chunks };
  }

  // LangChain does not show response headers: who served is read from the simulators' requests
  t.test('invoke after a 503', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, UNAVAILABLE);
    const message = await chat(h).invoke(QUESTION);
    t.equal(message.content, 'Hello from fallback');
    t.equal(message.response_metadata.finish_reason, 'stop');
    t.equal(message.response_metadata.model_name, 'gpt-4.1');
    failedOver(t, h, 'fallback');
  });

  t.test('stream after an error event before the first token', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, ERROR_EVENT);
    const { message, chunks } = await streamed(await chat(h).stream(QUESTION));
    t.equal(message.content, 'Hello from fallback');
    t.ok(chunks > 2, 'the text arrived in pieces');
    t.equal(message.response_metadata.finish_reason, 'stop');
    t.ok((message.usage_metadata?.total_tokens ?? 0) > 0, 'usage came through');
    failedOver(t, h, 'fallback');
  });

  t.test('bindTools and a tool call after a connection reset', async (t) => {
    const h = await failingPrimary(t, WITH_OPENAI_FALLBACK, RESET);
    const message = await chat(h).bindTools([weather]).invoke(QUESTION);
    t.equal(message.tool_calls?.length, 1);
    t.equal(message.tool_calls?.[0].name, 'get_weather');
    t.same(message.tool_calls?.[0].args, WEATHER_ARGS);
    t.equal(message.response_metadata.finish_reason, 'tool_calls');
    failedOver(t, h, 'fallback');
  });

  t.test('through an Anthropic fallback: invoke, stream, bindTools and a streamed tool call', async (t) => {
    const plain = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, UNAVAILABLE);
    const message = await chat(plain).invoke(QUESTION);
    t.equal(message.content, 'Hello from claude');
    t.equal(message.response_metadata.finish_reason, 'stop');
    t.equal(message.response_metadata.model_name, HAIKU);
    failedOver(t, plain, 'claude');

    const stream = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, ERROR_EVENT);
    const { message: whole } = await streamed(await chat(stream).stream(QUESTION));
    t.equal(whole.content, 'Hello from claude');
    t.equal(whole.response_metadata.finish_reason, 'stop');
    failedOver(t, stream, 'claude');

    const tools = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, UNAVAILABLE);
    const called = await chat(tools).bindTools([weather]).invoke(QUESTION);
    t.equal(called.tool_calls?.[0]?.name, 'get_weather');
    t.same(called.tool_calls?.[0]?.args, WEATHER_ARGS);
    t.equal(called.response_metadata.finish_reason, 'tool_calls');
    failedOver(t, tools, 'claude');

    const streamedTools = await failingPrimary(t, WITH_ANTHROPIC_FALLBACK, ERROR_EVENT);
    const { message: wholeCall } = await streamed(await chat(streamedTools).bindTools([weather]).stream(QUESTION));
    t.equal(wholeCall.tool_calls?.[0]?.name, 'get_weather');
    t.same(wholeCall.tool_calls?.[0]?.args, WEATHER_ARGS, 'the tool_call_chunks assemble into the arguments');
    t.equal(wholeCall.response_metadata.finish_reason, 'tool_calls');
    failedOver(t, streamedTools, 'claude');
  });
});
