/**
 * Rules of docs/translation.md that no other suite checks (issue 22), asserted on what the
 * Anthropic simulator received: `reasoning_effort` with a forced tool sends no thinking;
 * `top_p` below 0.95 is dropped when thinking is on (kept otherwise); tool-call ids with
 * characters Anthropic rejects are mapped, the same way on tool_use and tool_result.
 */
import type OpenAI from 'openai';
import t from 'tap';
import { toolUseId } from '../sidecar/translate/anthropic-request.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';

const NO_MODEL = undefined as unknown as string;

const WEATHER = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

async function claude(t: { teardown(fn: () => unknown): void }): Promise<Harness> {
  const h = await startHarness([{ name: 'claude', kind: 'anthropic', model: 'claude-sonnet-4-5', group: 0 }]);
  t.teardown(() => h.close());
  return h;
}

type Params = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;

t.test('reasoning_effort with a tool_choice that forces a tool: no extended thinking, max_tokens as the client set it', async (t) => {
  const h = await claude(t);
  const forced: [string, Params['tool_choice'], unknown][] = [
    ['a named function', { type: 'function', function: { name: 'get_weather' } }, { type: 'tool', name: 'get_weather' }],
    ['required', 'required', { type: 'any' }],
  ];
  for (const [name, choice, sent] of forced) {
    const res = await h.client.chat.completions.create({
      model: NO_MODEL,
      messages: HELLO,
      tools: [WEATHER],
      tool_choice: choice,
      reasoning_effort: 'high',
      max_completion_tokens: 500,
      temperature: 0.3,
    });
    t.ok(res.choices[0], `${name}: answered`);
    const body = h.sims.claude.requests.at(-1)!.body;
    t.same(body.tool_choice, sent, `${name}: the tool is still forced`);
    t.equal(body.thinking, undefined, `${name}: no thinking (Anthropic refuses both together)`);
    t.equal(body.max_tokens, 500, `${name}: max_tokens not raised by a budget that is not used`);
    t.equal(body.temperature, 0.3, `${name}: temperature kept, as thinking is off`);
  }
  // the control: the same request with tool_choice auto does think
  await h.client.chat.completions.create({
    model: NO_MODEL,
    messages: HELLO,
    tools: [WEATHER],
    tool_choice: 'auto',
    reasoning_effort: 'high',
    max_completion_tokens: 500,
  });
  t.same(h.sims.claude.requests.at(-1)!.body.thinking, { type: 'enabled', budget_tokens: 16384 }, 'auto: extended thinking is on');
});

t.test('top_p with extended thinking: only values of at least 0.95 are sent; without thinking, any value', async (t) => {
  const h = await claude(t);
  const cases: { topP: number; effort?: Params['reasoning_effort']; sent: number | undefined }[] = [
    { topP: 0.9, effort: 'low', sent: undefined },
    { topP: 0.5, effort: 'medium', sent: undefined },
    { topP: 0.95, effort: 'low', sent: 0.95 },
    { topP: 0.97, effort: 'high', sent: 0.97 },
    { topP: 0.9, sent: 0.9 },
    { topP: 0.9, effort: 'minimal', sent: 0.9 },
  ];
  for (const c of cases) {
    await h.client.chat.completions.create({
      model: NO_MODEL,
      messages: HELLO,
      top_p: c.topP,
      ...(c.effort ? { reasoning_effort: c.effort } : {}),
    });
    const body = h.sims.claude.requests.at(-1)!.body;
    const label = `top_p ${c.topP} with reasoning_effort ${c.effort ?? 'unset'}`;
    t.equal(body.top_p, c.sent, `${label}: ${c.sent === undefined ? 'dropped' : 'sent'}`);
    t.equal(
      body.thinking !== undefined,
      c.effort !== undefined && c.effort !== 'minimal',
      `${label}: thinking ${body.thinking ? 'on' : 'off'}`,
    );
  }
});

t.test('tool-call ids with characters Anthropic rejects are mapped the same way on tool_use and tool_result', async (t) => {
  const h = await claude(t);
  const ids = ['call.abc:1/x', 'call_ok-2', 'fc 3+é'];
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
    { role: 'user', content: 'Weather in Paris, Tokyo and Rome?' },
    {
      role: 'assistant',
      content: null,
      tool_calls: ids.map((id, i) => ({
        id,
        type: 'function' as const,
        function: { name: 'get_weather', arguments: JSON.stringify({ city: ['Paris', 'Tokyo', 'Rome'][i] }) },
      })),
    },
    ...ids.map((id, i) => ({ role: 'tool' as const, tool_call_id: id, content: `${18 + i}°C` })),
  ];
  const res = await h.client.chat.completions.create({ model: NO_MODEL, messages, tools: [WEATHER] });
  t.ok(res.choices[0].message, 'answered');
  const sent = h.sims.claude.requests.at(-1)!.body.messages as {
    role: string;
    content: { type: string; id?: string; tool_use_id?: string }[];
  }[];
  const toolUse = sent
    .flatMap((m) => m.content)
    .filter((b) => b.type === 'tool_use')
    .map((b) => b.id);
  const toolResult = sent
    .flatMap((m) => m.content)
    .filter((b) => b.type === 'tool_result')
    .map((b) => b.tool_use_id);
  t.same(toolUse, [toolUseId('call.abc:1/x'), 'call_ok-2', toolUseId('fc 3+é')], 'valid ids are kept as they are');
  t.match(
    toolUse[0],
    /^call_abc_1_x_[0-9a-z]+$/,
    'an invalid one: each character outside [A-Za-z0-9_-] became _, and a hash of the original keeps it distinct',
  );
  t.same(toolResult, toolUse, 'each tool_result names its tool_use by the same id');
  for (const id of toolUse) t.match(id, /^[A-Za-z0-9_-]+$/, `${id} matches Anthropic's pattern`);
});
