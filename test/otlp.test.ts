/**
 * Traces leave the process over real OTLP (http/protobuf, the default), configured only by the
 * standard OTEL_* variables: a loopback receiver decodes what arrived.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import t from 'tap';
import { loadPlan } from '../sidecar/config/load.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { HELLO } from './support/harness.ts';
import { post } from './support/wire.ts';
import { backendYaml, LOOPBACK_SERVER } from './support/yaml.ts';

interface KeyValue {
  key: string;
  value: { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
}
interface DecodedSpan {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: KeyValue[];
  events?: { name: string }[];
}

t.test('spans reach an OTLP http/protobuf receiver with the service and pod resource attributes', async (t) => {
  const root = await protobuf.load(join(import.meta.dirname, 'fixtures/otlp-trace.proto'));
  const Request = root.lookupType('otlp.ExportTraceServiceRequest');
  const received: { contentType?: string; resource: Record<string, unknown>; spans: DecodedSpan[] }[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const decoded = Request.toObject(Request.decode(Buffer.concat(chunks)), {
        bytes: String,
        longs: String,
        enums: Number,
        defaults: false,
      }) as {
        resourceSpans: { resource: { attributes: KeyValue[] }; scopeSpans: { spans: DecodedSpan[] }[] }[];
      };
      for (const rs of decoded.resourceSpans) {
        received.push({
          contentType: req.headers['content-type'],
          resource: Object.fromEntries(rs.resource.attributes.map((a) => [a.key, a.value.stringValue ?? a.value.intValue])),
          spans: rs.scopeSpans.flatMap((s) => s.spans),
        });
      }
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  const sim = await startOpenAISimulator({ model: 'gpt-4o' });
  const fallback = await startOpenAISimulator({ model: 'backup' });
  sim.setFault({ kind: 'status', status: 503 });
  const plan = loadPlan([
    {
      name: 't.yaml',
      text:
        backendYaml(
          [
            { name: 'primary', group: 0 },
            { name: 'fallback', group: 1 },
          ],
          { primary: sim.port, fallback: fallback.port },
        ) + LOOPBACK_SERVER,
    },
  ]);
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
    OTEL_BSP_SCHEDULE_DELAY: '50',
    POD_NAME: 'app-7d9f-abcde',
    POD_NAMESPACE: 'shop',
    NODE_NAME: 'node-3',
  };
  // the SDK reads the OTEL_* variables from the process environment, as in production
  Object.assign(process.env, env);
  const sidecar = await startSidecar({ plan, logger: createLogger('silent'), probes: false });
  t.teardown(async () => {
    await sidecar.close();
    receiver.close();
    await sim.close();
    await fallback.close();
  });
  t.equal((await post(`${sidecar.url}/model`, { messages: HELLO })).status, 200);
  const deadline = Date.now() + 10_000;
  const spans = () => received.flatMap((r) => r.spans);
  while (Date.now() < deadline && spans().length < 3) await new Promise((r) => setTimeout(r, 50));
  t.ok(received.length > 0, 'the receiver got an export');
  t.equal(received[0].contentType, 'application/x-protobuf', 'http/protobuf by default');
  t.same(
    [
      received[0].resource['service.name'],
      received[0].resource['k8s.pod.name'],
      received[0].resource['k8s.namespace.name'],
      received[0].resource['k8s.node.name'],
    ],
    ['llm-failover-sidecar', 'app-7d9f-abcde', 'shop', 'node-3'],
  );
  const names = spans()
    .map((s) => s.name)
    .sort();
  t.same(names, ['POST /model', 'chat fallback', 'chat primary'], 'the request and its two attempts');
  const server = spans().find((s) => s.name === 'POST /model')!;
  t.equal(server.kind, 2, 'SPAN_KIND_SERVER on the wire');
  t.same(
    server.events?.map((e) => e.name),
    ['llm_failover.switch'],
  );
  const attempt = spans().find((s) => s.name === 'chat fallback')!;
  t.equal(attempt.parentSpanId, server.spanId);
  const attr = Object.fromEntries(attempt.attributes.map((a) => [a.key, a.value.stringValue ?? a.value.intValue ?? a.value.boolValue]));
  t.equal(attr['gen_ai.operation.name'], 'chat');
  t.equal(attr['llm_failover.provider'], 'fallback');
});
