/**
 * Config changes without restarts, the way the kubelet delivers a ConfigMap update: a new
 * timestamped folder, then the `..data` symlink swapped atomically. Streams in flight finish on
 * the configuration they started with; new requests see the new one; an invalid change is
 * rejected and the running configuration keeps serving; unchanged models keep their health.
 */
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadPlanFromPath } from '../sidecar/config/load.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import type { ConfigEvent } from '../sidecar/observe/events.ts';
import { createLogger } from '../sidecar/observe/log.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { capturingLogger, HELLO } from './support/harness.ts';
import { post } from './support/wire.ts';
import { backendYaml, LOOPBACK_SERVER } from './support/yaml.ts';

/** A ConfigMap volume as the kubelet lays it out, with atomic updates. */
function configMapVolume() {
  const dir = mkdtempSync(join(tmpdir(), 'configmap-'));
  let version = 0;
  const write = (files: Record<string, string>) => {
    const ts = join(dir, `..2026_11_25_${String(++version).padStart(2, '0')}`);
    mkdirSync(ts);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(ts, name), text);
    symlinkSync(ts, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data')); // atomic swap
    for (const name of Object.keys(files)) {
      try {
        symlinkSync(join('..data', name), join(dir, name));
      } catch {
        // the per-key link exists already and points through ..data
      }
    }
  };
  return { dir, write };
}

function nextConfig(sidecar: { events: import('../sidecar/observe/events.ts').Events }): Promise<ConfigEvent> {
  return new Promise((resolve) => sidecar.events.once('config', resolve));
}

t.test('a swapped ConfigMap is applied while streams are in flight; nothing is dropped', async (t) => {
  const a = await startOpenAISimulator({ model: 'model-a', chunkDelayMs: 60 });
  const b = await startOpenAISimulator({ model: 'model-b' });
  const volume = configMapVolume();
  const v1 =
    backendYaml(
      [
        { name: 'a', model: 'model-a', group: 0 },
        { name: 'b', model: 'model-b', group: 1 },
      ],
      { a: a.port, b: b.port },
    ) + LOOPBACK_SERVER;
  const v2 =
    backendYaml(
      [
        { name: 'b', model: 'model-b', group: 0 },
        { name: 'a', model: 'model-a', group: 1 },
      ],
      { a: a.port, b: b.port },
    ) + LOOPBACK_SERVER;
  volume.write({ 'config.yaml': v1 });
  const logs: string[] = [];
  const logger = capturingLogger(logs);
  const sidecar = await startSidecar({
    plan: loadPlanFromPath(volume.dir),
    logger,
    probes: false,
    watch: { path: volume.dir, pollMs: 100 },
  });
  t.teardown(async () => {
    await sidecar.close();
    await a.close();
    await b.close();
  });
  t.equal(sidecar.generation, 1);

  // three slow streams on model-a, in flight during the swap
  const streams = Array.from({ length: 3 }, () =>
    fetch(`${sidecar.url}/model`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: HELLO, stream: true }),
    }).then(async (r) => ({ by: r.headers.get('x-llm-failover-provider'), text: await r.text() })),
  );
  while (a.inFlight() < 3) await new Promise((r) => setTimeout(r, 5));
  const applied = nextConfig(sidecar);
  volume.write({ 'config.yaml': v2 });
  const e = await applied;
  t.same([e.ok, e.generation], [true, 2], 'the new configuration was applied');
  t.ok(a.inFlight() > 0, 'while the old streams were still running');

  const fresh = await post(`${sidecar.url}/model`, { messages: HELLO });
  t.equal(fresh.headers.get('x-llm-failover-provider'), 'b', 'new requests follow the new priority order');
  for (const s of await Promise.all(streams)) {
    t.equal(s.by, 'a');
    t.match(s.text, /data: \[DONE\]\n\n$/, 'a stream in flight finished whole on its old configuration');
  }
  t.ok(
    logs.some((l) => l.includes('configuration 2 applied')),
    'the change is logged',
  );
});

t.test('an invalid change is rejected with a clear log line and the running configuration keeps serving', async (t) => {
  const a = await startOpenAISimulator({ model: 'model-a' });
  const volume = configMapVolume();
  const v1 = backendYaml([{ name: 'a', model: 'model-a', group: 0 }], { a: a.port }) + LOOPBACK_SERVER;
  volume.write({ 'config.yaml': v1 });
  const logs: string[] = [];
  const logger = capturingLogger(logs);
  const sidecar = await startSidecar({
    plan: loadPlanFromPath(volume.dir),
    logger,
    probes: false,
    watch: { path: volume.dir, pollMs: 100 },
  });
  t.teardown(async () => {
    await sidecar.close();
    await a.close();
  });
  const rejected = nextConfig(sidecar);
  volume.write({ 'config.yaml': v1.replace('model: "model-a"', 'model: 42') });
  const e = await rejected;
  t.equal(e.ok, false);
  t.match(e.problems?.[0], /spec\.ai\.priorityGroups\[0\]\.providers\[0\]\.openai\.model: Invalid input: expected string, received number/);
  t.ok(
    logs.some((l) => l.includes('"level":"error"') && l.includes('configuration change rejected, still serving configuration 1')),
    'an error line names the problem',
  );
  t.equal(sidecar.generation, 1);
  const res = await post(`${sidecar.url}/model`, { messages: HELLO });
  t.equal(res.status, 200, 'the old configuration still serves');
  t.equal(res.headers.get('x-llm-failover-provider'), 'a');
  const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  t.match(metrics, /^llm_failover_config_reloads_total\{result="rejected"\} 1$/m);
});

t.test('models that did not change keep their health across a reload; changed ones start fresh', async (t) => {
  const a = await startOpenAISimulator({ model: 'model-a' });
  const b = await startOpenAISimulator({ model: 'model-b' });
  const c = await startOpenAISimulator({ model: 'model-c' });
  const volume = configMapVolume();
  const models = [
    { name: 'a', model: 'model-a', group: 0 },
    { name: 'b', model: 'model-b', group: 1 },
  ];
  volume.write({ 'config.yaml': backendYaml(models, { a: a.port, b: b.port }) + LOOPBACK_SERVER });
  const sidecar = await startSidecar({
    plan: loadPlanFromPath(volume.dir),
    logger: createLogger('silent'),
    probes: false,
    watch: { path: volume.dir, pollMs: 100 },
  });
  t.teardown(async () => {
    await sidecar.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  });
  a.setFault({ kind: 'status', status: 429, headers: { 'retry-after': '60' } });
  await post(`${sidecar.url}/model`, { messages: HELLO });
  t.equal(sidecar.health.state(sidecar.health.models()[0]), 'cooling');
  const applied = nextConfig(sidecar);
  // add a third group: a and b are unchanged
  volume.write({
    'config.yaml':
      backendYaml([...models, { name: 'c', model: 'model-c', group: 2 }], { a: a.port, b: b.port, c: c.port }) + LOOPBACK_SERVER,
  });
  await applied;
  const [ma, mb, mc] = sidecar.health.models();
  t.same([ma.name, sidecar.health.state(ma)], ['a', 'cooling'], 'a is still cooling: its Retry-After is honoured');
  t.same([mb.name, sidecar.health.state(mb)], ['b', 'healthy']);
  t.same([mc.name, sidecar.health.state(mc)], ['c', 'healthy']);
  const res = await post(`${sidecar.url}/model`, { messages: HELLO });
  t.equal(res.headers.get('x-llm-failover-provider'), 'b', 'selection on the new configuration still skips the cooling model');
  t.equal(a.requests.length, 1, 'a was not asked again');
});
