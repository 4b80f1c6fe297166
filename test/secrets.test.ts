/**
 * Secrets, beyond test/telemetry.test.ts (spans, metrics, logs and /status on several failure
 * paths) and the fault matrix (every provider fault, with the key echoed by the provider):
 * Passthrough auth (the client's own token), the CLI's output for an invalid configuration or a
 * failed start with a key planted in the environment, the loopback default and the warning for
 * anything else, and an admin address that can spend nothing.
 * Secrets are re-read when their mounted files change: test/health.test.ts ("a model whose secret
 * was wrong heals when the mounted secret changes").
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { tracing } from './support/tracing.ts';
import { loadPlan } from '../sidecar/config/load.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { spawnCli, startChildSidecar, type TapTest } from './support/child.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post, rawExchange } from './support/wire.ts';
import { backendYaml, policyYaml, TEST_KEY } from './support/yaml.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];
const passthrough = (y: string) => y.replaceAll(/kind: Inline\n\s+inline: \S+/g, 'kind: Passthrough');

async function passthroughRun(t: TapTest, token: string) {
  const { finished, tracerProvider } = tracing();
  const h = await startHarness(TWO, { apiKey: token, mapYaml: passthrough, tracerProvider });
  t.teardown(() => h.close());
  const auth = { authorization: `Bearer ${token}` };
  const ok = await post(`${h.sidecar.url}/model`, { messages: HELLO }, auth);
  t.equal(ok.status, 200, "the client's token is passed through");
  t.equal(h.sims.primary.requests[0]?.headers.authorization, `Bearer ${token}`, "as the provider's credential");
  const responses: string[] = [];
  const faults = [
    { kind: 'status' as const, status: 401, message: `Incorrect API key provided: ${token}.` },
    { kind: 'status' as const, status: 500, message: `trouble serving ${token}` },
    { kind: 'status' as const, status: 429, message: `rate limit for key ${token}`, headers: { 'retry-after': '1' } },
    { kind: 'refuse' as const },
    { kind: 'errorEventAfterFirstToken' as const },
  ];
  for (const fault of faults) {
    for (const stream of [false, true]) {
      for (const s of Object.values(h.sims)) s.setFault(fault);
      await Promise.all(Object.values(h.sims).map((s) => s.ready()));
      for (const m of h.sidecar.health.models()) h.sidecar.health.set(m, 'healthy', 'test reset');
      const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream }, auth);
      responses.push(res.text);
    }
  }
  for (const s of Object.values(h.sims)) s.clearFault();
  const spans = JSON.stringify(
    (await finished()).map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })),
  );
  const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  const status = await (await fetch(`${h.sidecar.adminUrl}/status`)).text();
  t.match(responses.join('\n'), /all_models_failed/, 'the failure paths ran');
  t.ok(h.logs.join('').includes('Incorrect API key provided'), "the provider's echo reached the logs");
  return { logs: h.logs.join(''), spans, metrics, status, responses: responses.join('\n') };
}

t.test("Passthrough auth: the client's token (sk-shaped) appears in no log, span, metric, /status or error", async (t) => {
  const token = 'sk-client-passthrough-SENTINEL-5c4b3a29';
  const out = await passthroughRun(t, token);
  for (const [where, text] of Object.entries(out)) t.notOk(text.includes(token), `not in the ${where}`);
});

t.test('Passthrough auth: a client token of any shape (a JWT) echoed by the provider appears nowhere', async (t) => {
  const token = 'eyJhbGciOiJIUzI1NiJ9.client-SENTINEL-77aa.c2lnbmF0dXJl';
  const out = await passthroughRun(t, token);
  for (const [where, text] of Object.entries(out)) t.notOk(text.includes(token), `not in the ${where}`);
});

/** A config whose key comes from the environment, and something else wrong with it. */
function invalidConfigWithEnvSecret(dir: string): string {
  const file = join(dir, 'bad.yaml');
  const backend = backendYaml(TWO, { primary: 1, fallback: 2 }).replaceAll(
    /kind: Inline\n\s+inline: \S+/g,
    'kind: SecretRef\n            secretRef: {name: openai-secret}',
  );
  writeFileSync(file, `${backend}${policyYaml('  timeouts: {connect: soon}\n  maxAttempts: -3\n')}`);
  return file;
}

t.test('the CLI: an invalid configuration whose secret is planted in the environment exits 2 and prints no key', async (t) => {
  const KEY = 'sk-cli-planted-env-key-6a5b4c3d2e1f';
  const dir = mkdtempSync(join(tmpdir(), 'cli-secret-'));
  const p = spawnCli(['--config', invalidConfigWithEnvSecret(dir), '--secrets-dir', join(dir, 'none')], { OPENAI_SECRET: `Bearer ${KEY}` });
  t.equal(await p.exited, 2, 'exit 2');
  t.match(p.err(), /invalid configuration \(2 problems\)/, 'every problem is named');
  t.match(p.err(), /spec\.timeouts\.connect/);
  for (const [where, text] of [
    ['stderr', p.err()],
    ['stdout', p.out()],
  ]) {
    t.notOk(text.includes(KEY), `no key on ${where}`);
    t.notOk(text.includes(KEY.slice(-8)), `not even its end on ${where}`);
  }
});

t.test('the CLI: a start that fails (the port is taken) exits 1 and prints no key', async (t) => {
  const KEY = 'sk-cli-planted-env-key-0f9e8d7c6b5a';
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;
  const dir = mkdtempSync(join(tmpdir(), 'cli-secret-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    backendYaml(TWO, { primary: 1, fallback: 2 }).replaceAll(
      /kind: Inline\n\s+inline: \S+/g,
      'kind: SecretRef\n            secretRef: {name: openai-secret}',
    ),
  );
  const p = spawnCli(['--config', file, '--secrets-dir', join(dir, 'none'), '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0'], {
    OPENAI_SECRET: `Bearer ${KEY}`,
  });
  const code = await p.exited;
  t.equal(code, 1, 'exit 1');
  t.match(p.err() + p.out(), /EADDRINUSE/, 'the reason is printed');
  t.notOk((p.err() + p.out()).includes(KEY), 'no key in the crash output');
});

t.test('the CLI: a malformed config holding an Inline key does not print the key', async (t) => {
  const KEY = 'sk-inline-planted-key-1a2b3c4d5e6f';
  const dir = mkdtempSync(join(tmpdir(), 'cli-secret-'));
  const file = join(dir, 'bad.yaml');
  // a folded-scalar marker glued to the key: "Block scalar header includes extra characters: >sk-..."
  writeFileSync(file, backendYaml(TWO, { primary: 1, fallback: 2 }).replace(`inline: ${TEST_KEY}`, `inline: >${KEY}`));
  const p = spawnCli(['--config', file]);
  t.equal(await p.exited, 2, 'exit 2');
  t.notOk((p.err() + p.out()).includes(KEY), 'no key on stderr or stdout');
});

t.test('the proxy binds to loopback by default; anything else is logged as a warning', async (t) => {
  const plan = loadPlan([{ name: 'd.yaml', text: backendYaml(TWO, { primary: 1, fallback: 2 }) }]);
  t.equal(plan.server.listen, '127.0.0.1:8080', 'the default proxy address is loopback');
  t.equal(plan.server.admin, '127.0.0.1:15000', 'and so is the admin address');

  const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
  t.teardown(() => sim.close());
  const dir = mkdtempSync(join(tmpdir(), 'bind-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port }));
  const WARNING = /"level":"warn".*"msg":"the proxy port is not on loopback: anyone who reaches it spends the API keys"/;
  for (const [listen, warns] of [
    ['0.0.0.0:0', true],
    ['127.0.0.1:0', false],
    ['localhost:0', false],
  ] as const) {
    const child = await startChildSidecar(file, ['--listen', listen]);
    t.teardown(() => child.kill());
    const port = child.listen.split(':').at(-1);
    t.equal(
      (await post(`http://127.0.0.1:${port}/model`, { messages: HELLO })).status,
      200,
      `--listen ${listen}: serving (reached on loopback)`,
    );
    if (warns) t.match(child.out(), WARNING, `--listen ${listen}: the warning is logged`);
    else t.notMatch(child.out(), WARNING, `--listen ${listen}: no warning`);
    child.kill();
  }
});

t.test('the admin address exposes nothing that could spend a key', async (t) => {
  const h = await startHarness(TWO);
  t.teardown(() => h.close());
  const admin = h.sidecar.adminUrl;
  const chat = JSON.stringify({ messages: HELLO });
  for (const path of ['/healthz', '/readyz', '/status', '/metrics']) {
    t.equal((await fetch(`${admin}${path}`)).status, 200, `GET ${path}: 200`);
    t.equal((await fetch(`${admin}${path}`, { method: 'HEAD' })).status, 200, `HEAD ${path}: 200`);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const res = await fetch(`${admin}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        body: method === 'OPTIONS' ? undefined : chat,
      });
      t.equal(res.status, 405, `${method} ${path}: 405`);
    }
  }
  const paths = [
    '/',
    '/model',
    '/v1/chat/completions',
    '/v1/models',
    '/v1/embeddings',
    '/admin',
    '/debug/pprof',
    '/status/',
    '/STATUS',
    '//status',
    '/status;x',
    '/metrics%2F..',
    '/config',
    '/secrets',
    '/env',
  ];
  for (const path of paths) {
    t.equal((await fetch(`${admin}${path}`)).status, 404, `GET ${path}: 404`);
    t.equal(
      (await fetch(`${admin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat })).status,
      405,
      `POST ${path}: 405`,
    );
  }
  const { port } = new URL(admin);
  // as sent, not normalised by a client
  for (const path of ['/healthz/../v1/chat/completions', '/./model', 'model', '*']) {
    const raw = await rawExchange(
      Number(port),
      `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${chat.length}\r\nconnection: close\r\n\r\n${chat}`,
    );
    t.match(raw, /^HTTP\/1\.1 (400|404|405) /, `POST ${path} (raw): refused`);
  }
  const absolute = await rawExchange(
    Number(port),
    `POST http://127.0.0.1:${h.sims.primary.port}/v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${chat.length}\r\nconnection: close\r\n\r\n${chat}`,
  );
  t.match(absolute, /^HTTP\/1\.1 405 /, 'an absolute-form (proxy) request: 405');
  const connectTunnel = await rawExchange(
    Number(port),
    `CONNECT 127.0.0.1:${h.sims.primary.port} HTTP/1.1\r\nhost: 127.0.0.1:${h.sims.primary.port}\r\n\r\n`,
    2000,
  );
  t.notMatch(connectTunnel, /^HTTP\/1\.1 200/, 'CONNECT opens no tunnel');
  t.equal(h.sims.primary.requests.length + h.sims.fallback.requests.length, 0, 'nothing reached a provider through the admin address');
  const status = await (await fetch(`${admin}/status`)).text();
  t.notOk(status.includes(TEST_KEY) || status.includes(TEST_KEY.slice(-8)), '/status shows no key');
});
