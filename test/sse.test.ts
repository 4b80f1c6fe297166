/**
 * The SSE framing on both sides: the parser reads whatever line ends and chunking a provider
 * sends, and what goes to the client is valid SSE an SDK parses to the same events. (Found by
 * the fuzzing of test/fuzz.test.ts, pinned here with their subject.)
 */
import t from 'tap';
import { OPENAI_TARGET, parsed } from './support/translate.ts';
import { openaiAdapter } from '../sidecar/translate/openai.ts';
import { SseParser } from '../sidecar/translate/sse.ts';

t.test('SseParser: a stream whose last event ends with "\\r\\r" (CR line ends) delivers that event', async (t) => {
  const parser = new SseParser();
  const events = parser.push(Buffer.from('data: a\r\rdata: [DONE]\r\r'));
  t.same(
    events.map((e) => e.data),
    ['a', '[DONE]'],
  );
});

t.test('an OpenAI stream event whose data spans several lines is re-framed as valid SSE', async (t) => {
  const parser = new SseParser();
  const [event] = parser.push(
    Buffer.from(
      'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,\ndata: "delta":{"content":"hi"},"finish_reason":null}]}\n\n',
    ),
  );
  const req = parsed(Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true })))!;
  const step = openaiAdapter.streamTranslator(req, OPENAI_TARGET).push(event);
  const client = new SseParser().push(Buffer.from(step.out ?? ''));
  t.equal(client.length, 1);
  t.same(JSON.parse(client[0].data), JSON.parse(event.data), 'the client parses the same chunk');
});

t.test('an OpenAI stream chunk whose choices hold null fails the attempt as bad_response, it does not throw', async (t) => {
  const req = parsed(Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true })))!;
  for (const before of [[], ['{"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}']]) {
    const translator = openaiAdapter.streamTranslator(req, OPENAI_TARGET);
    for (const data of before) translator.push({ event: 'message', data });
    let step: ReturnType<typeof translator.push> | undefined;
    t.doesNotThrow(() => {
      step = translator.push({ event: 'message', data: '{"id":"x","choices":[null]}' });
    });
    t.equal(step?.error?.reason, 'bad_response', `${before.length ? 'after' : 'before'} content: a bad_response`);
    t.equal(step?.out, undefined, 'nothing an app would crash on is forwarded');
  }
});
