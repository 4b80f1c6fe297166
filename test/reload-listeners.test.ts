/**
 * A reload leaves nothing behind (issue 15.6): a retired configuration unsubscribes what it
 * subscribed to the event stream. Every reload used to leak a 'health' listener (3 at start,
 * 15 after 12 reloads, then MaxListenersExceededWarning).
 */
import t from 'tap';
import { loadPlan } from '../sidecar/config/load.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';
import { backendYaml, LOOPBACK_SERVER } from './support/yaml.ts';

t.test('twelve reloads leave as many event listeners as there were at start', async (t) => {
  const models = [
    { name: 'primary', group: 0 },
    { name: 'fallback', group: 1 },
  ];
  const h = await startHarness(models);
  t.teardown(() => h.close());
  const ports = { primary: h.sims.primary.port, fallback: h.sims.fallback.port };
  const counts = () => Object.fromEntries(h.sidecar.events.eventNames().map((e) => [String(e), h.sidecar.events.listenerCount(e)]));
  const before = counts();
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  for (let i = 0; i < 12; i++) {
    // a different timeout each time: a real change, a new generation
    const plan = loadPlan(
      [
        {
          name: 'r.yaml',
          text: `${backendYaml(models, ports)}${LOOPBACK_SERVER}---\napiVersion: llm-failover.dev/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: p}\nspec:\n  targetRefs: [{kind: Backend, name: model-failover}]\n  timeouts: {connect: ${i + 1}s}\n`,
        },
      ],
      { env: {} },
    );
    h.sidecar.reload(plan);
    t.equal((await post(`${h.sidecar.url}/model`, { messages: HELLO })).status, 200, `reload ${i + 1}: serving`);
  }
  // the last retired generation closes once its requests are done
  await new Promise((r) => setTimeout(r, 50));
  t.equal(h.sidecar.generation, 13);
  t.same(counts(), before, 'the same listeners, per event, as before the reloads');
  t.same(
    warnings.filter((w) => w === 'MaxListenersExceededWarning'),
    [],
    'no listener-leak warning',
  );
});
