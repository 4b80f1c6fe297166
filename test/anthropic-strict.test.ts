/**
 * OpenAI requests the Anthropic translation must reshape before Anthropic takes them (thinking
 * and what it rules out, tool ids, tool loops, empty and whitespace text, who speaks first, the
 * prefill), sent through the sidecar to a simulator that validates as strictly as Anthropic
 * (simulator/anthropic-validate.ts). Only Anthropic is configured, so a translation that breaks a
 * rule reaches the app as Anthropic's 400 instead of being hidden by a failover.
 */
import t from 'tap';
import { type Harness, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';

const TOOL = {
  type: 'function',
  function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};
const ASK = { role: 'user', content: 'Weather in Paris and Tokyo?' };
const call = (id: string, city = 'Paris') => ({
  id,
  type: 'function',
  function: { name: 'get_weather', arguments: JSON.stringify({ city }) },
});
const LOOP = [
  ASK,
  { role: 'assistant', content: null, tool_calls: [call('call_1')] },
  { role: 'tool', tool_call_id: 'call_1', content: '18 degrees' },
];

interface Case {
  name: string;
  body: Record<string, unknown>;
  /** What the translation must have sent (checked on the recorded request). */
  sent?: (body: Record<string, unknown>) => string | undefined;
}

const thinkingOn = (b: Record<string, unknown>) => (b.thinking ? undefined : 'thinking was not enabled');
const thinkingOff = (b: Record<string, unknown>) =>
  b.thinking === undefined ? undefined : `thinking was sent: ${JSON.stringify(b.thinking)}`;

const CASES: Case[] = [
  {
    name: 'reasoning_effort with temperature 0.2 and top_p 0.5',
    body: { messages: [ASK], reasoning_effort: 'high', temperature: 0.2, top_p: 0.5 },
    sent: thinkingOn,
  },
  {
    name: 'reasoning_effort with top_p 0.97 (allowed with thinking)',
    body: { messages: [ASK], reasoning_effort: 'low', top_p: 0.97 },
    sent: (b) => thinkingOn(b) ?? (b.top_p === 0.97 ? undefined : 'top_p lost'),
  },
  {
    name: 'reasoning_effort with temperature 1.7',
    body: { messages: [ASK], reasoning_effort: 'medium', temperature: 1.7 },
    sent: thinkingOn,
  },
  {
    name: 'reasoning_effort with a max_tokens below the budget',
    body: { messages: [ASK], reasoning_effort: 'low', max_tokens: 100 },
    sent: thinkingOn,
  },
  {
    name: 'reasoning_effort xhigh with max_completion_tokens',
    body: { messages: [ASK], reasoning_effort: 'xhigh', max_completion_tokens: 2000 },
    sent: thinkingOn,
  },
  {
    name: 'reasoning_effort with tool_choice required',
    body: { messages: [ASK], tools: [TOOL], reasoning_effort: 'medium', tool_choice: 'required' },
    sent: thinkingOff,
  },
  {
    name: 'reasoning_effort with a named tool_choice',
    body: {
      messages: [ASK],
      tools: [TOOL],
      reasoning_effort: 'high',
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    },
    sent: thinkingOff,
  },
  {
    name: 'reasoning_effort with allowed_tools mode required',
    body: {
      messages: [ASK],
      tools: [TOOL],
      reasoning_effort: 'low',
      tool_choice: {
        type: 'allowed_tools',
        allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'get_weather' } }] },
      },
    },
    sent: thinkingOff,
  },
  {
    name: 'reasoning_effort with a forced deprecated function_call',
    body: { messages: [ASK], functions: [TOOL.function], reasoning_effort: 'low', function_call: { name: 'get_weather' } },
    sent: thinkingOff,
  },
  {
    name: 'reasoning_effort with tool_choice required and parallel_tool_calls false',
    body: { messages: [ASK], tools: [TOOL], reasoning_effort: 'low', tool_choice: 'required', parallel_tool_calls: false },
    sent: thinkingOff,
  },
  {
    name: 'reasoning_effort with tool_choice auto and tools',
    body: { messages: [ASK], tools: [TOOL], reasoning_effort: 'low', tool_choice: 'auto' },
    sent: thinkingOn,
  },
  {
    name: 'reasoning_effort in a tool loop (the last assistant turn holds tool calls)',
    body: { messages: LOOP, tools: [TOOL], reasoning_effort: 'medium' },
    sent: thinkingOff,
  },
  {
    name: 'reasoning_effort after a finished tool loop and a new question',
    body: {
      messages: [...LOOP, { role: 'assistant', content: 'It is 18 degrees.' }, { role: 'user', content: 'And Tokyo?' }],
      tools: [TOOL],
      reasoning_effort: 'low',
    },
  },
  {
    name: 'tool call ids with characters Anthropic refuses',
    body: {
      messages: [
        ASK,
        { role: 'assistant', content: '', tool_calls: [call('call:abc.1/x'), call('call abc+2', 'Tokyo')] },
        { role: 'tool', tool_call_id: 'call:abc.1/x', content: '18' },
        { role: 'tool', tool_call_id: 'call abc+2', content: '25' },
      ],
      tools: [TOOL],
    },
  },
  {
    name: 'parallel tool results, then a user message in the same turn',
    body: {
      messages: [
        ASK,
        { role: 'assistant', content: 'Checking.', tool_calls: [call('call_1'), call('call_2', 'Tokyo')] },
        { role: 'tool', tool_call_id: 'call_1', content: '18' },
        { role: 'tool', tool_call_id: 'call_2', content: '25' },
        { role: 'user', content: 'Thanks, and?' },
      ],
      tools: [TOOL],
    },
  },
  {
    name: 'a tool result given as text parts, and an empty one',
    body: {
      messages: [
        ASK,
        { role: 'assistant', content: null, tool_calls: [call('call_1'), call('call_2', 'Tokyo')] },
        {
          role: 'tool',
          tool_call_id: 'call_1',
          content: [
            { type: 'text', text: '18' },
            { type: 'text', text: '' },
          ],
        },
        { role: 'tool', tool_call_id: 'call_2', content: '' },
      ],
      tools: [TOOL],
    },
  },
  {
    name: 'deprecated functions with a function_call turn and its function result',
    body: {
      messages: [
        ASK,
        { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        { role: 'function', name: 'get_weather', content: '18' },
      ],
      functions: [TOOL.function],
    },
  },
  {
    name: 'arguments that are not a JSON object',
    body: {
      messages: [
        ASK,
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ ...call('call_1'), function: { name: 'get_weather', arguments: '{"city": "Par' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'cut short' },
      ],
      tools: [TOOL],
    },
  },
  {
    name: 'empty and whitespace-only text parts beside real text',
    body: {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: '' },
            { type: 'text', text: 'Hello' },
            { type: 'text', text: '  \n' },
          ],
        },
      ],
    },
  },
  {
    name: 'an empty user message and a whitespace-only one mid-conversation',
    body: {
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: '' },
        { role: 'user', content: ' \t' },
        { role: 'user', content: 'What is kubernetes?' },
      ],
    },
  },
  {
    name: 'a whitespace-only assistant turn mid-conversation',
    body: {
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '   ' },
        { role: 'user', content: 'Still there?' },
      ],
    },
  },
  {
    name: 'a conversation that starts with an assistant greeting',
    body: {
      messages: [
        { role: 'assistant', content: 'Hi, how can I help?' },
        { role: 'user', content: 'What is kubernetes?' },
      ],
    },
  },
  {
    name: 'a system message, then an assistant greeting',
    body: {
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: 'Hi' },
      ],
    },
  },
  {
    name: 'system messages only',
    body: {
      messages: [
        { role: 'system', content: 'Say hello.' },
        { role: 'developer', content: [{ type: 'text', text: 'Politely.' }] },
      ],
    },
  },
  {
    name: 'an empty system message',
    body: {
      messages: [
        { role: 'system', content: '' },
        { role: 'user', content: 'Hi' },
      ],
    },
  },
  {
    name: 'a prefill ending in whitespace',
    body: {
      messages: [
        { role: 'user', content: 'Count to three.' },
        { role: 'assistant', content: 'One, two, ' },
      ],
    },
  },
  {
    name: 'a prefill given as parts, the last ending in a newline',
    body: {
      messages: [
        { role: 'user', content: 'Write a list.' },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: '- one' },
            { type: 'text', text: '\n' },
          ],
        },
      ],
    },
  },
  {
    name: 'consecutive assistant turns',
    body: {
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello.' },
        { role: 'assistant', content: 'Anything else?' },
        { role: 'user', content: 'No.' },
      ],
    },
  },
  {
    name: 'reasoning_effort with a prefill',
    body: {
      messages: [
        { role: 'user', content: 'Count to three.' },
        { role: 'assistant', content: 'One,' },
      ],
      reasoning_effort: 'low',
    },
  },
  { name: 'stop sequences with an empty one', body: { messages: [ASK], stop: ['', 'END'] } },
];

let h: Harness;
t.before(async () => {
  h = await startHarness([{ name: 'claude', kind: 'anthropic', model: 'claude-sonnet-4-5', group: 0 }]);
});
t.teardown(() => h.close());

for (const c of CASES) {
  for (const stream of [false, true]) {
    t.test(`${c.name}${stream ? ', streamed' : ''}: Anthropic takes the translated request`, async (t) => {
      const before = h.sims.claude.requests.length;
      const res = await post(`${h.sidecar.url}/v1/chat/completions`, { ...c.body, stream });
      t.equal(res.status, 200, `served, not refused: ${res.status === 200 ? 'ok' : res.text.slice(0, 400)}`);
      const sent = h.sims.claude.requests[before]?.body as Record<string, unknown> | undefined;
      t.ok(sent, 'the request reached Anthropic');
      if (sent && c.sent) t.equal(c.sent(sent), undefined, 'translated as docs/translation.md says');
    });
  }
}

t.test('two tool call ids that differ only in characters Anthropic refuses stay two ids, each result paired with its call', async (t) => {
  const res = await post(`${h.sidecar.url}/v1/chat/completions`, {
    messages: [
      ASK,
      { role: 'assistant', content: null, tool_calls: [call('call.1'), call('call:1', 'Tokyo')] },
      { role: 'tool', tool_call_id: 'call.1', content: '18' },
      { role: 'tool', tool_call_id: 'call:1', content: '25' },
    ],
    tools: [TOOL],
  });
  t.equal(res.status, 200, `served: ${res.text.slice(0, 300)}`);
  const sent = h.sims.claude.requests.at(-1)?.body as {
    messages: { content: { type: string; id?: string; tool_use_id?: string; input?: { city?: string }; content?: string }[] }[];
  };
  const uses = sent.messages[1].content.filter((b) => b.type === 'tool_use');
  const results = sent.messages[2].content.filter((b) => b.type === 'tool_result');
  t.equal(new Set(uses.map((u) => u.id)).size, 2, 'two distinct tool_use ids');
  t.same(
    results.map((r) => uses.find((u) => u.id === r.tool_use_id)?.input?.city),
    ['Paris', 'Tokyo'],
    'each result answers its own call',
  );
});
