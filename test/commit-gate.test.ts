/**
 * The commit gate (sidecar/send/commit-gate.ts) is the one way an attempt reaches its client:
 * nothing before the commit, the served-by headers at it, and after it every failure (a bug
 * included) as an error event, never a silent end. Driven directly, on a sink that records.
 */
import t from 'tap';
import { DEFAULT_FAILOVER, DEFAULT_HEALTH, type ModelTarget } from '../sidecar/config/plan.ts';
import type { Sink } from '../sidecar/core/sink.ts';
import { CommitGate, headerValue } from '../sidecar/send/commit-gate.ts';
import type { ChatRequest } from '../sidecar/translate/provider.ts';

class RecordingSink implements Sink {
  committed = false;
  status = 0;
  headers: Record<string, string> | undefined;
  written: string[] = [];
  ended: string | undefined;
  commit(status: number, headers: Record<string, string>): void {
    this.committed = true;
    this.status = status;
    this.headers = headers;
  }
  reply(status: number, headers: Record<string, string>, body: string | Buffer): void {
    this.commit(status, headers);
    this.ended = String(body);
  }
  write(chunk: string | Buffer): boolean {
    this.written.push(String(chunk));
    return true;
  }
  async waitDrain(): Promise<void> {}
  end(chunk?: string | Buffer): void {
    this.ended = String(chunk ?? '');
  }
}

function target(name: string, model: string | undefined, group = 1): ModelTarget {
  return {
    name,
    key: `ns/b/${name}`,
    backend: 'b',
    group,
    provider: 'openai',
    model,
    origin: 'http://127.0.0.1:9',
    path: '/v1/chat/completions',
    auth: { kind: 'passthrough', header: 'authorization', prefix: '' },
    timeouts: DEFAULT_FAILOVER.timeouts,
    health: DEFAULT_HEALTH,
  };
}

function request(json: Record<string, unknown> = {}): ChatRequest {
  return { raw: Buffer.from(JSON.stringify(json)), json, stream: true, hasModel: 'model' in json, bodies: new Map() };
}

t.test('a stream: events before the first content are held, then go out with the headers', async (t) => {
  const sink = new RecordingSink();
  const gate = new CommitGate(sink, target('openai-gpt-4o', 'gpt-4o'), request(), 3);
  gate.hold('data: role\n\n');
  gate.hold(undefined);
  gate.hold('data: empty\n\n');
  t.notOk(sink.committed, 'nothing sent before the first content');
  t.equal(gate.commit(), 'data: role\n\ndata: empty\n\n', 'the held events start the first write');
  t.equal(sink.status, 200);
  t.same(sink.headers, {
    'content-type': 'text/event-stream; charset=utf-8',
    'x-llm-failover-provider': 'openai-gpt-4o',
    'x-llm-failover-model': 'gpt-4o',
    'x-llm-failover-group': '2',
    'x-llm-failover-attempts': '3',
    'cache-control': 'no-cache',
  });
  t.same(
    Object.keys(sink.headers ?? {}),
    ['content-type', 'x-llm-failover-provider', 'x-llm-failover-model', 'x-llm-failover-group', 'x-llm-failover-attempts', 'cache-control'],
    'in this order',
  );
});

t.test(
  "a whole answer: JSON headers; the client's model when the provider names none; names that are not visible ASCII are percent-encoded",
  async (t) => {
    const sink = new RecordingSink();
    new CommitGate(sink, target('qwen-通义千问', undefined, 0), request({ model: 'my\r\nmodel' }), 1).reply(200, '{"ok":true}');
    t.equal(sink.ended, '{"ok":true}');
    t.same(sink.headers, {
      'content-type': 'application/json',
      'x-llm-failover-provider': encodeURIComponent('qwen-通义千问'),
      'x-llm-failover-model': encodeURIComponent('my\r\nmodel'),
      'x-llm-failover-group': '1',
      'x-llm-failover-attempts': '1',
    });
    t.equal(headerValue('gpt-4o mini (2024)'), 'gpt-4o mini (2024)', 'visible ASCII and spaces as they are');
  },
);

t.test('a failure before the commit sends nothing; after it, an error event ends the stream', async (t) => {
  const failure = { reason: 'upstream_5xx' as const, status: 503, message: 'upstream 503' };
  const before = new RecordingSink();
  t.same(new CommitGate(before, target('a', 'a'), request(), 1).fail(failure), { kind: 'failed', failure }, 'the request may move on');
  t.notOk(before.committed);
  t.equal(before.ended, undefined, 'nothing written');

  const after = new RecordingSink();
  const gate = new CommitGate(after, target('a', 'a'), request(), 1);
  gate.commit();
  t.same(gate.fail(failure), { kind: 'cut', failure });
  t.match(
    after.ended,
    /^data: \{"error":\{"message":"the stream from the model broke after it started: upstream 503","type":"server_error","param":null,"code":"stream_interrupted"\}\}\n\n$/,
  );
  t.notMatch(after.ended, /\[DONE\]/);
});

t.test('a bug of ours: nothing before the commit, an error event after it', async (t) => {
  const before = new RecordingSink();
  new CommitGate(before, target('a', 'a'), request(), 1).crashed();
  t.equal(before.ended, undefined, 'the failover loop answers 500 instead');

  const after = new RecordingSink();
  const gate = new CommitGate(after, target('a', 'a'), request(), 1);
  gate.commit();
  gate.crashed();
  t.match(after.ended, /"message":"the sidecar failed while streaming this answer".*"code":"stream_interrupted"/);
});
