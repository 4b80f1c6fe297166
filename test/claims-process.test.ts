/**
 * Claims about the process that no other suite checks (issue 22), on the sidecar as a child
 * process (`node sidecar/cli.ts`):
 * - an `uncaughtException` is logged redacted, the pending log lines are flushed, exit code 1;
 * - tracing is on only with an exporter configured, off with OTEL_SDK_DISABLED=true or
 *   OTEL_TRACES_EXPORTER=none, and then the OpenTelemetry SDK is not even loaded;
 * - every CLI flag's environment twin (README), flags winning over them; `--max-body` enforced;
 *   the CLI's overrides kept across a hot reload;
 * - SIGTERM closes idle keep-alive connections while requests in flight still drain.
 */
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startOpenAISimulator } from '../simulator/index.ts';
import { spawnCli, startChildSidecar } from './support/child.ts';
import { HELLO } from './support/harness.ts';
import { eventually, sleep, within } from './support/wait.ts';
import { metric, parseRawResponse, post, rawConnect, userRequests } from './support/wire.ts';
import { backendYaml, sidecarConfigYaml, TEST_KEY } from './support/yaml.ts';

const THROW_LATER = join(import.meta.dirname, 'fixtures/claims-throw-later.mjs');
const LOADED_MODULES = join(import.meta.dirname, 'fixtures/claims-loaded-modules.mjs');
/** Key-shaped, and known to no scrubber: only the key-shape rule can catch it. */
const PLANTED = 'sk-proj-PLANTEDuncaught0123456789abcdef';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'claims-'));
}

function configFile(yaml: string, dir = tempDir()): string {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** A port nothing listens on right now (for flags that need one fixed in advance). */
async function freePort(): Promise<number> {
  const s = createNetServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

/** Polls an async check every 50 ms until it holds or `ms` passed. */
async function eventuallyAsync(check: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      // not yet
    }
    if (Date.now() > end) return false;
    await sleep(50);
  }
}

/** A raw HTTP/1.1 response that has arrived whole (by its Content-Length, or a chunked body's end). */
function whole(raw: string): boolean {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const length = /\r\ncontent-length: (\d+)/i.exec(raw.slice(0, end))?.[1];
  return length === undefined ? raw.endsWith('\r\n0\r\n\r\n') : Buffer.byteLength(raw.slice(end + 4), 'latin1') >= Number(length);
}

const lines = (out: string) => out.split('\n').filter((l) => l.startsWith('{'));

// ---- 5 / 6. a fatal error ----

t.test('an uncaughtException is logged redacted, the pending log lines are flushed, and the process exits 1', async (t) => {
  const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
  t.teardown(() => sim.close());
  const child = await startChildSidecar(
    configFile(backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port })),
    [],
    { CLAIMS_PLANTED: PLANTED },
    ['--import', THROW_LATER],
  );
  t.teardown(() => child.kill());
  t.equal((await post(`${child.url}/model`, { messages: HELLO })).status, 200);
  // at once: the request's line may still be waiting for its 250 ms flush
  child.kill('SIGUSR2');
  t.equal(await child.exited, 1, 'exit code 1, so Kubernetes restarts it');
  const out = lines(child.out());
  const fatal = out.find((l) => l.includes('uncaught exception'));
  t.ok(fatal, 'the exception is logged');
  const parsed = JSON.parse(fatal ?? '{}') as { level?: string; err?: { message?: string } };
  t.equal(parsed.level, 'fatal');
  t.match(parsed.err?.message, /a timer failed while holding \[redacted\]/, 'with its message, the key-shaped part redacted');
  t.notOk(child.out().includes(PLANTED) || child.err().includes(PLANTED), 'the planted key is nowhere in stdout or stderr');
  t.notOk(child.out().includes(PLANTED.slice(-12)), 'not even its end');
  t.ok(
    out.some((l) => l.includes('"event":"request"')),
    'the request line logged just before the crash was flushed too',
  );
  t.ok(out.indexOf(fatal ?? '') === out.length - 1, 'the fatal line is the last one');
});

// ---- 7. tracing on only with an exporter ----

t.test(
  'tracing is on only with an exporter configured; OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off, without loading the SDK',
  async (t) => {
    const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
    t.teardown(() => sim.close());
    const config = configFile(backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port }));
    const cases: { name: string; env: (endpoint: string) => Record<string, string>; on: boolean; exported?: boolean; console?: boolean }[] =
      [
        { name: 'no OTEL_* at all', env: () => ({}), on: false },
        { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', env: (e) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: e }), on: true, exported: true },
        {
          name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
          env: (e) => ({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${e}/v1/traces` }),
          on: true,
          exported: true,
        },
        { name: 'OTEL_TRACES_EXPORTER=console', env: () => ({ OTEL_TRACES_EXPORTER: 'console' }), on: true, console: true },
        {
          name: 'an endpoint, but OTEL_SDK_DISABLED=true',
          env: (e) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: e, OTEL_SDK_DISABLED: 'true' }),
          on: false,
        },
        {
          name: 'an endpoint, but OTEL_TRACES_EXPORTER=none',
          env: (e) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: e, OTEL_TRACES_EXPORTER: 'none' }),
          on: false,
        },
      ];
    // every case in its own child process, all at once; each with its own OTLP receiver
    const results = await Promise.all(
      cases.map(async (c) => {
        const exports: string[] = [];
        const receiver = createServer((req, res) => {
          exports.push(req.url ?? '');
          req.resume();
          req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
        });
        receiver.listen(0, '127.0.0.1');
        await once(receiver, 'listening');
        const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
        const modulesOut = join(tempDir(), 'modules.txt');
        const child = await startChildSidecar(
          config,
          [],
          { ...c.env(endpoint), OTEL_BSP_SCHEDULE_DELAY: '50', CLAIMS_MODULES_OUT: modulesOut },
          ['--import', LOADED_MODULES],
        );
        try {
          const ready = JSON.parse(lines(child.out()).find((l) => l.includes('"msg":"sidecar ready"')) ?? '{}') as { tracing?: boolean };
          const status = (await post(`${child.url}/model`, { messages: HELLO })).status;
          child.kill('SIGTERM');
          const code = await child.exited;
          await sleep(50);
          return { c, ready, status, code, exports, out: child.out(), modules: readFileSync(modulesOut, 'utf8').split('\n') };
        } finally {
          child.kill();
          receiver.close();
        }
      }),
    );
    for (const { c, ready, status, code, exports, out, modules } of results) {
      await t.test(c.name, async (t) => {
        t.equal(ready.tracing, c.on, `the ready line says tracing ${c.on ? 'on' : 'off'}`);
        t.same([status, code], [200, 0], 'served a request, exited 0 on SIGTERM');
        t.ok(
          modules.some((u) => u.includes('/sidecar/server/handler.ts')),
          'the module list was recorded',
        );
        const sdk = modules.filter((u) => u.includes('/@opentelemetry/sdk-node/') || u.includes('/@opentelemetry/sdk-trace-base/'));
        if (c.on) t.ok(sdk.length > 0, 'the SDK was loaded');
        else t.same(sdk, [], 'the SDK was not even loaded');
        if (c.exported) t.ok(exports.includes('/v1/traces'), 'spans reached the OTLP receiver');
        else t.same(exports, [], 'nothing was exported');
        if (c.console) t.match(out, /POST \/model/, 'the console exporter printed the request span');
      });
    }
  },
);

// ---- 11. environment twins, --max-body, overrides across a reload ----

/** A Backend whose keys come from a mounted Secret named openai-secret, not from the YAML. */
function secretRefBackend(models: { name: string; group: number }[], ports: Record<string, number>): string {
  return backendYaml(models, ports).replaceAll(
    `kind: Inline\n            inline: ${TEST_KEY}`,
    'kind: SecretRef\n            secretRef: {name: openai-secret}',
  );
}

t.test('every flag has its environment twin: LLM_FAILOVER_CONFIG, _LISTEN, _ADMIN, _MAX_BODY, _LOG_LEVEL, _SECRETS_DIR', async (t) => {
  const key = 'sk-from-the-secrets-dir-0123456789';
  const primary = await startOpenAISimulator({ model: 'primary', apiKey: key });
  const fallback = await startOpenAISimulator({ model: 'fallback', apiKey: key });
  t.teardown(() => Promise.all([primary.close(), fallback.close()]));
  const secrets = tempDir();
  mkdirSync(join(secrets, 'openai-secret'));
  writeFileSync(join(secrets, 'openai-secret', 'Authorization'), `Bearer ${key}`);
  const config = configFile(
    secretRefBackend(
      [
        { name: 'primary', group: 0 },
        { name: 'fallback', group: 1 },
      ],
      { primary: primary.port, fallback: fallback.port },
    ),
  );
  const [listen, admin] = [await freePort(), await freePort()];
  const p = spawnCli([], {
    LLM_FAILOVER_CONFIG: config,
    LLM_FAILOVER_LISTEN: `127.0.0.1:${listen}`,
    LLM_FAILOVER_ADMIN: `127.0.0.1:${admin}`,
    LLM_FAILOVER_MAX_BODY: '2048',
    LLM_FAILOVER_LOG_LEVEL: 'warn',
    LLM_FAILOVER_SECRETS_DIR: secrets,
  });
  t.teardown(() => p.child.kill('SIGKILL'));
  t.ok(
    await eventuallyAsync(async () => (await fetch(`http://127.0.0.1:${admin}/readyz`)).status === 200),
    `LLM_FAILOVER_ADMIN: the admin address is 127.0.0.1:${admin} (${p.err().slice(0, 300)})`,
  );
  primary.setFault({ kind: 'status', status: 503 }, { times: 1 });
  const res = await post(`http://127.0.0.1:${listen}/model`, { messages: HELLO });
  t.equal(res.status, 200, 'LLM_FAILOVER_LISTEN: the proxy is there');
  t.equal(
    res.headers.get('x-llm-failover-provider'),
    'fallback',
    "LLM_FAILOVER_CONFIG: the file's Backend serves (its primary failed once)",
  );
  t.equal(
    fallback.requests.at(-1)?.headers.authorization,
    `Bearer ${key}`,
    'LLM_FAILOVER_SECRETS_DIR: the key came from the mounted secret',
  );
  const big = await post(`http://127.0.0.1:${listen}/model`, { messages: [{ role: 'user', content: 'x'.repeat(3000) }] });
  t.same([big.status, big.json.error?.code], [413, 'request_too_large'], 'LLM_FAILOVER_MAX_BODY: 3000 bytes is over the 2048 set');
  t.match(big.json.error?.message, /2048/);
  t.ok(
    await eventually(() => p.out().includes('"event":"switch"'), 3000),
    'LLM_FAILOVER_LOG_LEVEL=warn: the switch (a warn line) is logged',
  );
  t.same(
    lines(p.out()).filter((l) => /"level":"(info|debug|trace)"/.test(l)),
    [],
    'and nothing below warn: no ready line, no request lines',
  );
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);

  // flags win over their twins
  const child = await startChildSidecar(config, ['--log-level', 'info', '--secrets-dir', secrets], {
    LLM_FAILOVER_LOG_LEVEL: 'error',
    LLM_FAILOVER_SECRETS_DIR: '/nonexistent',
    LLM_FAILOVER_MAX_BODY: '1024',
  });
  t.teardown(() => child.kill());
  t.pass(
    '--log-level info beats LLM_FAILOVER_LOG_LEVEL=error: the ready line was logged; --secrets-dir beats its twin: the secret was found',
  );
  t.equal((await post(`${child.url}/model`, { messages: HELLO })).status, 200);
  child.kill('SIGTERM');
  t.equal(await child.exited, 0);
});

t.test('--max-body is enforced, and a value below 1024 bytes is a usage error (exit 2)', async (t) => {
  const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
  t.teardown(() => sim.close());
  const config = configFile(backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port }));
  const child = await startChildSidecar(config, ['--max-body', '2048']);
  t.teardown(() => child.kill());
  const body = (n: number) => ({ messages: [{ role: 'user', content: 'x'.repeat(n) }] });
  t.equal((await post(`${child.url}/model`, body(1500))).status, 200, 'under the limit: served');
  const big = await post(`${child.url}/model`, body(2100));
  t.same([big.status, big.json.error?.code], [413, 'request_too_large'], 'over it: 413');
  t.equal(userRequests(sim.requests).length, 1, 'the large one never reached the provider');
  child.kill('SIGTERM');
  t.equal(await child.exited, 0);

  const bad = spawnCli(['--config', config, '--max-body', '100', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
  t.equal(await bad.exited, 2);
  t.match(bad.err(), /--max-body.*expected a whole number of bytes >= 1024, got "100"/);
});

t.test('the CLI overrides (--listen, --log-level) hold across a hot reload of the configuration file', async (t) => {
  const a = await startOpenAISimulator({ model: 'model-a', apiKey: TEST_KEY });
  const b = await startOpenAISimulator({ model: 'model-b', apiKey: TEST_KEY });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const [flagListen, fileListen, fileListen2, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const ports = { a: a.port, b: b.port };
  const yaml = (order: { name: string; group: number }[], listen: number) =>
    `${backendYaml(
      order.map((m) => ({ ...m, model: `model-${m.name}` })),
      ports,
    )}${sidecarConfigYaml('  logLevel: debug\n', `127.0.0.1:${listen}`)}`;
  const config = configFile(
    yaml(
      [
        { name: 'a', group: 0 },
        { name: 'b', group: 1 },
      ],
      fileListen,
    ),
  );
  const p = spawnCli(['--config', config, '--listen', `127.0.0.1:${flagListen}`, '--admin', `127.0.0.1:${admin}`, '--log-level', 'warn']);
  t.teardown(() => p.child.kill('SIGKILL'));
  const url = `http://127.0.0.1:${flagListen}`;
  t.ok(
    await eventuallyAsync(async () => (await post(`${url}/model`, { messages: HELLO })).status === 200),
    `served on the --listen address (${p.err().slice(0, 300)})`,
  );
  t.equal((await post(`${url}/model`, { messages: HELLO })).headers.get('x-llm-failover-provider'), 'a');

  // the file changes (priority order swapped; its own listen and logLevel still differ from the flags)
  writeFileSync(
    config,
    yaml(
      [
        { name: 'b', group: 0 },
        { name: 'a', group: 1 },
      ],
      fileListen2,
    ),
  );
  p.child.kill('SIGHUP'); // look now (the watcher's own poll would see it within 2 s)
  t.ok(
    await eventuallyAsync(
      async () => (await post(`${url}/model`, { messages: HELLO })).headers.get('x-llm-failover-provider') === 'b',
      5000,
    ),
    'the new configuration is served',
  );
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  t.equal(metric(metrics, 'llm_failover_config_reloads_total', { result: 'applied' }), 1, 'applied as a hot reload, not a restart');
  t.equal((await post(`${url}/model`, { messages: HELLO })).status, 200, 'still on the --listen address');
  for (const port of [fileListen, fileListen2])
    await t.rejects(fetch(`http://127.0.0.1:${port}/model`), `nothing on the file's listen address ${port}`);
  await sleep(400); // past the log flush interval
  t.notMatch(
    p.out(),
    /take effect at the next restart/,
    'the reloaded plan kept the --listen override: no "changes at the next restart" warning',
  );
  t.same(
    lines(p.out()).filter((l) => /"level":"(info|debug|trace)"/.test(l)),
    [],
    "--log-level warn still holds: none of the requests or the reload was logged at the file's debug level",
  );
  p.child.kill('SIGTERM');
  t.equal(await p.exited, 0);
});

// ---- 12. idle keep-alive connections on SIGTERM ----

t.test('SIGTERM closes idle keep-alive connections at once, while a stream in flight still drains', async (t) => {
  const sim = await startOpenAISimulator({
    model: 'slow',
    apiKey: TEST_KEY,
    chunkDelayMs: 100,
    reply: () => ({ content: Array.from({ length: 12 }, (_, i) => `w${i}`).join(' ') }),
  });
  t.teardown(() => sim.close());
  const child = await startChildSidecar(
    configFile(backendYaml([{ name: 'slow', group: 0 }], { slow: sim.port }) + sidecarConfigYaml('  drainGrace: 10s\n')),
  );
  t.teardown(() => child.kill());
  const port = Number(new URL(child.url).port);

  // one quick request on a keep-alive connection, then the connection is left idle
  const idle = await rawConnect(port);
  const body = JSON.stringify({ messages: HELLO });
  idle.socket.write(`POST /model HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  t.ok(await eventually(() => whole(idle.received())), 'the answer arrived whole');
  const first = parseRawResponse(idle.received());
  t.equal(first.status, 200);
  t.notMatch(first.headers.connection ?? '', /close/i, 'kept alive');
  await sleep(100);
  t.notOk(idle.isClosed(), 'the idle connection is open');

  // a slow stream in flight keeps the process draining
  const stream = await fetch(`${child.url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: HELLO, stream: true }),
  });
  t.equal(stream.status, 200);
  let streamDone = false;
  const text = stream.text().finally(() => {
    streamDone = true;
  });
  child.kill('SIGTERM');
  t.ok((await eventually(() => idle.isClosed() || streamDone, 3000)) && idle.isClosed(), 'the idle keep-alive connection is closed');
  t.notOk(streamDone, 'before the stream in flight finished: at SIGTERM, not at exit');
  t.equal(child.child.exitCode, null, 'while the process is still draining');
  await within(text, 5000);
  t.match(await text, /data: \[DONE\]\n\n$/, 'the stream finished whole');
  t.equal(await child.exited, 0);
  idle.socket.destroy();
});

// ---- README "changes to the file apply live": a SidecarConfig setting that cannot ----

t.test("a logLevel changed in the file's SidecarConfig is applied live", async (t) => {
  const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
  t.teardown(() => sim.close());
  const yaml = (level: string) =>
    `${backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port })}${sidecarConfigYaml(`  logLevel: ${level}\n`)}`;
  const config = configFile(yaml('info'));
  const child = await startChildSidecar(config);
  t.teardown(() => child.kill());
  writeFileSync(config, yaml('debug'));
  child.kill('SIGHUP');
  t.ok(await eventually(() => /configuration 2 applied/.test(child.out()), 3000), 'the change was applied as configuration 2');
  // a request the sidecar refuses itself is logged at debug ("rejected 400 missing_messages")
  t.equal((await post(`${child.url}/model`, {})).status, 400);
  await sleep(400); // past the log flush interval
  const applied = lines(child.out()).some((l) => l.includes('"level":"debug"') && l.includes('"event":"rejected"'));
  const warned = /logLevel changes take effect at the next restart/.test(child.out());
  t.ok(applied, 'the new level is in effect');
  t.notOk(warned, 'with no next-restart warning');
  child.kill('SIGTERM');
  t.equal(await child.exited, 0);
});
