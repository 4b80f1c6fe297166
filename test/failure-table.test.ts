/**
 * The failure table (sidecar/core/failure.ts FAILURES) is the one place a failure reason's
 * meaning is written down: it covers every reason, it says what the health code does today, and
 * passive and active health do exactly what each row says. Health objects are built directly,
 * on a fake clock: no server, no upstream.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_FAILOVER, DEFAULT_HEALTH, type FailoverSettings, type ModelTarget, type ProbeKind } from '../sidecar/config/plan.ts';
import { FAILURES, type FailureReason } from '../sidecar/core/failure.ts';
import { ActiveHealth } from '../sidecar/health/active.ts';
import { Breakers } from '../sidecar/health/breaker.ts';
import { PassiveHealth } from '../sidecar/health/passive.ts';
import { HealthView } from '../sidecar/health/view.ts';
import { Events, type HealthEvent } from '../sidecar/observe/events.ts';

const REASONS = Object.keys(FAILURES) as FailureReason[];
const SETTINGS: FailoverSettings = { ...DEFAULT_FAILOVER, cooldownAfterFailureMs: 10_000, cooldownAfterAuthFailureMs: 60_000 };
const T0 = 1_800_000_000_000;

/** Every member of the FailureReason union, read from its source (the type is gone at run time). */
function declaredReasons(): string[] {
  const source = readFileSync(join(import.meta.dirname, '../sidecar/core/failure.ts'), 'utf8');
  const union = source.match(/export type FailureReason =([^;]*);/)?.[1] ?? '';
  return [...union.matchAll(/\|\s*'([a-z0-9_]+)'/g)].map((m) => m[1]);
}

function target(probe: ProbeKind, breaker: boolean): ModelTarget {
  return {
    name: 'm',
    key: `ns/b/m-${probe}-${breaker}`,
    backend: 'b',
    group: 0,
    provider: 'openai',
    model: 'gpt-test',
    origin: 'http://127.0.0.1:9',
    path: '/v1/chat/completions',
    auth: { kind: 'passthrough', header: 'authorization', prefix: '' },
    timeouts: DEFAULT_FAILOVER.timeouts,
    health: {
      ...DEFAULT_HEALTH,
      probe: { ...DEFAULT_HEALTH.probe, kind: probe },
      breaker: { ...DEFAULT_HEALTH.breaker, enabled: breaker },
    },
  };
}

/** One model's health objects, wired as health/monitor.ts wires them, on a fake clock. */
function rig(t: { teardown(fn: () => void): void }, model: ModelTarget) {
  const now = () => T0;
  const events = new Events();
  const transitions: HealthEvent[] = [];
  events.on('health', (e) => transitions.push(e));
  const view = new HealthView(events, [model], now);
  const breakers = new Breakers(view, [model], { onHalfOpen: () => undefined });
  t.teardown(() => {
    breakers.shutdown();
    view.close();
  });
  return { view, breakers, transitions, passive: new PassiveHealth(view, breakers, now), active: new ActiveHealth(view, breakers, now) };
}

/** opossum counts a fired outcome a few microtasks later. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

t.test('the table has one row for every failure reason, and no other', async (t) => {
  const declared = declaredReasons();
  t.ok(declared.length >= 20, `the union was read (${declared.length} reasons)`);
  t.same([...REASONS].sort(), [...declared].sort());
});

t.test('the table says what the sidecar does today', async (t) => {
  const where = (pick: (reason: FailureReason) => boolean) => REASONS.filter(pick).sort();
  t.same(
    where((r) => FAILURES[r].health === 'down'),
    ['auth', 'connect_refused', 'connect_timeout', 'dns', 'model_not_found', 'quota_exhausted', 'tls'],
    'down at once: unreachable, credentials, credit, a model gone',
  );
  t.same(
    where((r) => FAILURES[r].health === 'cool'),
    ['overloaded', 'rate_limited'],
    'cool: 429 and 529',
  );
  t.same(
    where((r) => FAILURES[r].health === 'none'),
    ['client_error', 'context_length', 'deadline_exceeded', 'internal', 'marked_down', 'untranslatable'],
    'no effect',
  );
  t.same(
    where((r) => FAILURES[r].definitive),
    ['auth', 'model_not_found', 'quota_exhausted'],
    'a probe failing with these takes a model down at once; unprobed, the auth cooldown',
  );
  t.same(
    where((r) => !FAILURES[r].blamesModel),
    ['client_error', 'context_length', 'deadline_exceeded', 'internal', 'untranslatable'],
    'not the model',
  );
  t.same(
    where((r) => !FAILURES[r].failsOver),
    ['client_error', 'internal'],
    "the request stops: the model's own 4xx, or our bug",
  );
  t.same(
    where((r) => FAILURES[r].client === 'rate_limited'),
    ['rate_limited'],
    'only rate_limited adds up to the 429',
  );
});

t.test('the columns agree with one another', async (t) => {
  for (const reason of REASONS) {
    const m = FAILURES[reason];
    if (!m.blamesModel) t.equal(m.health, 'none', `${reason}: blames no model, so no health effect`);
    if (m.definitive) t.equal(m.health, 'down', `${reason}: definitive means down`);
    t.equal(
      m.failsOver,
      m.client !== 'upstream_error' && m.client !== 'sidecar_error',
      `${reason}: moves on exactly when the client does not see this failure itself`,
    );
  }
});

t.test('passive health does what each row says', async (t) => {
  for (const reason of REASONS) {
    const meaning = FAILURES[reason];
    for (const probe of ['auto', 'none'] as const) {
      for (const breaker of [true, false]) {
        for (const retryAfterMs of [7_000, undefined]) {
          const label = `${reason} (probes ${probe}, breaker ${breaker ? 'on' : 'off'}, retry-after ${retryAfterMs ?? 'none'})`;
          const model = target(probe, breaker);
          const h = rig(t, model);
          h.passive.onFailure(model, { reason, status: 500, message: `simulated ${reason}`, retryAfterMs }, SETTINGS);
          await settle();
          const health = h.view.get(model);
          const stats = h.breakers.stats(model);
          switch (meaning.health) {
            case 'none':
              t.equal(health.state, 'healthy', `${label}: unchanged`);
              t.equal(health.failures, 0, `${label}: not even counted`);
              t.equal(stats?.fires ?? 0, 0, `${label}: not fed to the breaker`);
              break;
            case 'cool':
              t.equal(health.state, 'cooling', label);
              t.equal(
                health.until,
                T0 + (retryAfterMs ?? SETTINGS.cooldownAfterFailureMs),
                `${label}: for the stated wait, else the failure cooldown`,
              );
              t.equal(health.statedWait, retryAfterMs !== undefined, `${label}: a stated wait only when one was stated`);
              break;
            case 'down': {
              t.equal(health.state, 'unhealthy', label);
              const cooldown = meaning.definitive ? SETTINGS.cooldownAfterAuthFailureMs : SETTINGS.cooldownAfterFailureMs;
              t.equal(
                health.until,
                probe === 'none' ? T0 + cooldown : undefined,
                `${label}: until a probe succeeds, or for the ${meaning.definitive ? 'auth' : 'failure'} cooldown`,
              );
              break;
            }
            case 'breaker':
              t.equal(health.failures, 1, `${label}: counted`);
              if (breaker) {
                t.equal(health.state, 'healthy', `${label}: one failure does not flap the model`);
                t.equal(stats?.failures, 1, `${label}: one failure in the breaker's window`);
              } else {
                t.equal(health.state, 'cooling', `${label}: no breaker, a cooldown`);
                t.equal(health.until, T0 + SETTINGS.cooldownAfterFailureMs, `${label}: the failure cooldown`);
                t.equal(health.statedWait, false, `${label}: an assumed wait`);
              }
              break;
          }
          if (meaning.health !== 'none')
            t.equal(h.transitions.length, meaning.health === 'breaker' && breaker ? 0 : 1, `${label}: health events`);
        }
      }
    }
  }
});

t.test('a failed probe does what each row says', async (t) => {
  let seq = 0;
  for (const reason of REASONS) {
    const meaning = FAILURES[reason];
    const model = target('auto', true);
    const h = rig(t, model);
    const fail = () =>
      h.active.onProbe(model, {
        kind: 'chat',
        ok: false,
        durationMs: 5,
        trigger: 'schedule',
        id: `p${++seq}`,
        failure: { reason, message: `simulated ${reason}`, retryAfterMs: 5_000 },
      });
    fail();
    if (meaning.health === 'cool') {
      t.equal(h.view.state(model), 'cooling', `${reason}: cooling for the stated wait`);
      t.equal(h.view.get(model).until, T0 + 5_000, reason);
      continue;
    }
    t.equal(
      h.view.state(model),
      meaning.definitive ? 'unhealthy' : 'healthy',
      `${reason}: ${meaning.definitive ? 'down at once' : 'one failure is below the threshold'}`,
    );
    fail();
    t.equal(h.view.state(model), 'unhealthy', `${reason}: unhealthyThreshold failures in a row take it down`);
  }
});
