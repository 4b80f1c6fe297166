/**
 * The recovery threshold holds whatever took the model down (docs/health.md: `healthyThreshold`
 * successful probes bring a model back). Probe streaks used to survive a transition made by
 * another signal: a model taken down by one user request came back after a single probe,
 * reported as "probe succeeded 7 times in a row".
 */
import t from 'tap';
import type { HealthEvent, ProbeEvent } from '../sidecar/observe/events.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { eventually } from './support/wait.ts';
import { post } from './support/wire.ts';

const PROBES = `  health:
    probe:
      interval: 100ms
      idleInterval: 100ms
      timeout: 300ms
      jitterPercent: 0
      healthyThreshold: 3
      unhealthyThreshold: 2
`;

t.test('a model taken down by user traffic needs healthyThreshold successful probes to come back', async (t) => {
  const h = await startHarness(
    [
      { name: 'primary', group: 0 },
      { name: 'fallback', group: 1 },
    ],
    { policy: PROBES, probes: true },
  );
  t.teardown(() => h.close());
  const probes: ProbeEvent[] = [];
  const health: HealthEvent[] = [];
  h.sidecar.events.on('probe', (e) => e.model.name === 'primary' && probes.push(e));
  h.sidecar.events.on('health', (e) => e.model.name === 'primary' && health.push(e));
  t.ok(await eventually(() => probes.filter((p) => p.ok).length >= 4, 5000), 'the idle primary passed several probes in a row first');

  h.sims.primary.setFault({ kind: 'refuse' });
  await h.sims.primary.ready();
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
  t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'the user request failed over');
  const down = health.find((e) => e.to === 'unhealthy');
  t.ok(down, 'one refused user request took the primary down');
  h.sims.primary.clearFault();
  await h.sims.primary.ready();

  t.ok(await eventually(() => health.some((e) => e.to === 'healthy'), 5000), 'the primary came back');
  const up = health.find((e) => e.to === 'healthy') as HealthEvent;
  const between = probes.filter((p) => p.startedAt >= (down as HealthEvent).at && p.startedAt + p.durationMs <= up.at + 1);
  t.ok(between.filter((p) => p.ok).length >= 3, `3 successful probes after the fall, not one (${between.filter((p) => p.ok).length})`);
  t.match(up.cause, /probe succeeded 3 times in a row/, 'and the cause counts only those');
});

t.test('a suspicion probe starts at once, not behind a probe that is hung on the same outage', async (t) => {
  const h = await startHarness(
    [
      { name: 'primary', group: 0 },
      { name: 'fallback', group: 1 },
    ],
    {
      policy: `  health:
    probe:
      interval: 100ms
      idleInterval: 100ms
      timeout: 2s
      jitterPercent: 0
    suspectAfter: 200ms
`,
      probes: true,
    },
  );
  t.teardown(() => h.close());
  // the primary hangs everything, its model list included: a scheduled model-list probe hangs too
  h.sims.primary.setFault({ kind: 'hang' });
  await new Promise((r) => setTimeout(r, 300));
  const sent = Date.now();
  const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream: true });
  t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'the stuck request moved to the fallback');
  const log = h.sidecar.probes.log.filter((p) => p.model === 'primary');
  const suspicion = log.find((p) => p.trigger === 'suspicion');
  const hungList = log.find((p) => p.trigger === 'schedule' && p.startedAt < sent);
  t.ok(suspicion && hungList, 'a suspicion probe ran while a scheduled probe hung');
  t.ok(
    (suspicion?.startedAt ?? Number.POSITIVE_INFINITY) < (hungList?.at ?? 0),
    'the suspicion probe started before the hung probe gave up',
  );
  h.sims.primary.clearFault();
});
