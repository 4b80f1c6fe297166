/**
 * The command as users run it: `npm start` with no arguments serves the demo; an invalid
 * config exits 2 naming every problem; SIGTERM drains in-flight streams, then exits 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { printSwitches, startDemo } from '../sidecar/cli/demo.ts';
import { loadPlanFromPath } from '../sidecar/config/load.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { capturingLogger, HELLO } from './support/harness.ts';
import { post } from './support/wire.ts';
import { backendYaml, LOOPBACK_SERVER, TEST_KEY } from './support/yaml.ts';

const CLI = join(import.meta.dirname, '../sidecar/cli.ts');

function run(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; out: () => string; err: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  return { child, out: () => out, err: () => err };
}

async function waitFor(check: () => RegExpMatchArray | null | undefined, what: string, ms = 15_000): Promise<RegExpMatchArray> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const m = check();
    if (m) return m;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('with no configuration it runs the demo, answering 200 on /model', async (t) => {
  const p = run(['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
  t.teardown(() => p.child.kill('SIGKILL'));
  const [, url] = await waitFor(() => p.out().match(/curl -s (http:\/\/127\.0\.0\.1:\d+)\/model/), 'the demo to print its curl line');
  const res = await post(`${url}/model`, { messages: HELLO });
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-llm-failover-provider'), 'openai-gpt-4o');
  t.match((res.json.choices as { message: { content: string } }[])[0].message.content, /Hello from gpt-4o/);
  p.child.kill('SIGTERM');
  const [code] = await once(p.child, 'exit');
  t.equal(code, 0, 'SIGTERM exits 0');
});

t.test('the demo schedule fails the primary and every request still succeeds, each switch printed', async (t) => {
  const demo = await startDemo('127.0.0.1:0', '127.0.0.1:0');
  const sidecar = await startSidecar({ plan: demo.plan, logger: createLogger('silent') });
  const lines: string[] = [];
  printSwitches(sidecar.events, (l) => lines.push(l));
  const stop = demo.schedule((l) => lines.push(l), 0.01); // each phase 100-200 ms
  t.teardown(async () => {
    stop();
    await sidecar.close();
    await demo.close();
  });
  const served = new Map<string, number>();
  const failed: number[] = [];
  const end = Date.now() + 1200;
  while (Date.now() < end) {
    const res = await post(`${sidecar.url}/model`, { messages: HELLO });
    if (res.status !== 200) failed.push(res.status);
    const by = res.headers.get('x-llm-failover-provider')!;
    served.set(by, (served.get(by) ?? 0) + 1);
  }
  t.same(failed, [], 'no request failed');
  t.ok((served.get('openai-gpt-4o') ?? 0) > 0, 'the primary served while it was up');
  t.ok((served.get('openai-gpt-4.0-turbo') ?? 0) > 0, 'the fallback served while the primary was down');
  t.ok(
    lines.some((l) => /^\[switch\] openai-gpt-4o -> openai-gpt-4\.0-turbo \(upstream_5xx 503\)$/.test(l)),
    'the switch is printed',
  );
  t.ok(
    lines.some((l) => /^\[health\] openai-gpt-4o: healthy -> (open|cooling)/.test(l)),
    'the health change is printed',
  );
});

t.test('an invalid configuration exits 2 and names every problem', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-'));
  const file = join(dir, 'bad.yaml');
  const backend = backendYaml([{ name: 'a', group: 0 }], { a: 1 }).replace(
    `kind: Inline\n            inline: ${TEST_KEY}`,
    'kind: SecretRef\n            secretRef: {name: missing-secret}',
  );
  writeFileSync(
    file,
    `${backend}---\napiVersion: llm-failover.dev/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{kind: Backend, name: model-failover}]\n  timeouts: {connect: soon}\n`,
  );
  const p = run(['--config', file, '--secrets-dir', dir]);
  const [code] = await once(p.child, 'exit');
  t.equal(code, 2);
  t.match(p.err(), /invalid configuration \(2 problems\)/);
  t.match(p.err(), /FailoverPolicy\/p spec\.timeouts\.connect: a duration above zero, such as/);
  t.match(p.err(), /secret "missing-secret" not found/);
  const usage = run(['--bogus']);
  const [usageCode] = await once(usage.child, 'exit');
  t.equal(usageCode, 2, 'an unknown flag exits 2');
  t.match(usage.err(), /Unknown option '--bogus'/);
});

t.test('SIGTERM: stop accepting, let in-flight streams finish, then exit 0', async (t) => {
  const sim = await startOpenAISimulator({ model: 'slow', chunkDelayMs: 150 });
  t.teardown(() => sim.close());
  const dir = mkdtempSync(join(tmpdir(), 'cli-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, backendYaml([{ name: 'slow', group: 0 }], { slow: sim.port }));
  const p = run(['--config', file, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
  t.teardown(() => p.child.kill('SIGKILL'));
  const [, listen] = await waitFor(() => p.out().match(/"listen":"([\d.:]+)"/), 'the ready log line');
  const res = await fetch(`http://${listen}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: HELLO, stream: true }),
  });
  t.equal(res.status, 200);
  p.child.kill('SIGTERM');
  const text = await res.text();
  t.match(text, /data: \[DONE\]\n\n$/, 'the stream in flight finished whole');
  const [code] = await once(p.child, 'exit');
  t.equal(code, 0);
  await t.rejects(fetch(`http://${listen}/model`, { method: 'POST', body: '{}' }), 'no longer accepting');
});

t.test('log lines are written in batches, yet each arrives within the flush interval and none is lost at exit', async (t) => {
  const sim = await startOpenAISimulator({ model: 'primary' });
  t.teardown(() => sim.close());
  const dir = mkdtempSync(join(tmpdir(), 'cli-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port }));
  const p = run(['--config', file, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-level', 'info']);
  t.teardown(() => p.child.kill('SIGKILL'));
  const [, listen] = await waitFor(() => p.out().match(/"listen":"([\d.:]+)"/), 'the ready log line');
  const requestLines = () =>
    p
      .out()
      .split('\n')
      .filter((l) => l.includes('"event":"request"'));
  t.equal((await post(`http://${listen}/model`, { messages: HELLO })).status, 200);
  // one quiet request: its line is not held for a full buffer (LOG_FLUSH_MS is 250 ms)
  await waitFor(() => (requestLines().length === 1 ? ['ok'] : null), 'the request line, flushed on time', 3000);
  const burst = await Promise.all(Array.from({ length: 40 }, () => post(`http://${listen}/model`, { messages: HELLO })));
  t.ok(burst.every((r) => r.status === 200));
  p.child.kill('SIGTERM');
  const [code] = await once(p.child, 'exit');
  t.equal(code, 0);
  t.equal(requestLines().length, 41, 'every request has its line, the last ones flushed at exit');
  for (const line of requestLines()) t.doesNotThrow(() => JSON.parse(line), 'whole JSON lines');
});

t.test('a deleted configuration file is reported once, not at every poll; its return is reported too', async (t) => {
  const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
  t.teardown(() => sim.close());
  const dir = mkdtempSync(join(tmpdir(), 'cli-'));
  const file = join(dir, 'config.yaml');
  const yaml = backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port }) + LOOPBACK_SERVER;
  writeFileSync(file, yaml);
  const logs: string[] = [];
  const sidecar = await startSidecar({
    plan: loadPlanFromPath(file),
    logger: capturingLogger(logs),
    probes: false,
    watch: { path: file, pollMs: 25 },
  });
  t.teardown(() => sidecar.close());
  const errors = () => logs.filter((l) => l.includes('"level":"error"') && l.includes('configuration change rejected'));

  rmSync(file);
  t.ok(await waitFor(() => (errors().length > 0 ? ['seen'] : null), 'the error line', 3000), 'the missing file is reported');
  await new Promise((r) => setTimeout(r, 500)); // some twenty polls
  t.equal(errors().length, 1, 'once, not at every poll');
  t.equal((await post(`${sidecar.url}/model`, { messages: HELLO })).status, 200, 'the running configuration keeps serving');

  writeFileSync(file, yaml);
  await waitFor(
    () => (logs.some((l) => l.includes('the configuration can be read again and is unchanged')) ? ['back'] : null),
    'the recovery line',
    3000,
  );
  t.pass('its return is reported');
  rmSync(file);
  await waitFor(() => (errors().length === 2 ? ['again'] : null), 'the second error line', 3000);
  t.pass('a new disappearance is reported again');
  t.equal(sidecar.generation, 1, 'nothing was reloaded');
});
