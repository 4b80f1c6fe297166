/**
 * Claims of docs/reliability.md, docs/health.md and docs/configuration.md about deadlines,
 * cooldowns, suspicion and the probe schedule that no other suite checks (issue 22):
 * - `timeouts.request`: a 504 `request_deadline_exceeded` naming every attempt, streamed or not;
 * - several rate-limit headers at once: the model cools until the longest, capped by
 *   `cooldown.maxRetryAfter` (OpenAI's and Anthropic's headers), as /status shows it;
 * - with `probe.kind: none`: `cooldown.afterFailure` for an unreachable model and
 *   `cooldown.afterAuthFailure` for refused credentials, each ending by itself;
 * - `suspectAfter` "or 4x the model's usual, if longer";
 * - probe jitter, and `idleInterval` for models two groups below the traffic.
 */
import t from 'tap';
import type { ModelTarget } from '../sidecar/config/plan.ts';
import type { Fault } from '../simulator/index.ts';
import { type Harness, HELLO, startHarness } from './support/harness.ts';
import { eventually, sleep } from './support/wait.ts';
import { post } from './support/wire.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

interface Attempt {
  provider: string;
  reason: string;
  status?: number;
}

const modelNamed = (h: Harness, name: string): ModelTarget => h.sidecar.health.models().find((m) => m.name === name)!;

interface StatusModel {
  name: string;
  state: string;
  until: string | null;
  latency: { firstTokenMs: number | null; totalMs: number | null };
}

async function statusOf(h: Harness, name: string): Promise<StatusModel> {
  const doc = (await (await fetch(`${h.sidecar.adminUrl}/status`)).json()) as { backends: { groups: { models: StatusModel[] }[] }[] };
  return doc.backends.flatMap((b) => b.groups.flatMap((g) => g.models)).find((m) => m.name === name)!;
}

// ---- 1. timeouts.request ----

t.test('timeouts.request: a 504 request_deadline_exceeded that names every attempt, streamed (before content) and not', async (t) => {
  const h = await startHarness(TWO, {
    policy: '  timeouts:\n    request: 500ms\n    response: 10s\n    firstToken: 10s\n    streamIdle: 10s\n',
  });
  t.teardown(() => h.close());
  const cases: { name: string; stream: boolean; slow: Fault }[] = [
    { name: 'non-streamed, no answer in time', stream: false, slow: { kind: 'slowFirstToken', delayMs: 3000 } },
    { name: 'streamed, no headers in time', stream: true, slow: { kind: 'slowFirstToken', delayMs: 3000 } },
    {
      name: 'streamed, 200 and the role chunk, then silence before any content',
      stream: true,
      slow: { kind: 'stallMidStream', afterChunks: 0 },
    },
  ];
  for (const { name, stream, slow } of cases) {
    // the primary fails fast (one attempt on the record), the fallback is too slow for what is left
    h.sims.primary.setFault({ kind: 'status', status: 503 }, { times: 1 });
    h.sims.fallback.setFault(slow, { times: 1 });
    for (const m of h.sidecar.health.models()) h.sidecar.health.set(m, 'healthy', 'test reset');
    const res = await post(`${h.sidecar.url}/model`, { messages: HELLO, stream });
    t.equal(res.status, 504, `${name}: 504`);
    t.match(res.headers.get('content-type'), /application\/json/, `${name}: a JSON error, not an event stream`);
    t.equal(res.json.error?.code, 'request_deadline_exceeded', `${name}: the code`);
    t.match(res.json.error?.message, /deadline/);
    const attempts = (res.json.error?.attempts ?? []) as Attempt[];
    t.same(
      attempts.map((a) => [a.provider, a.reason]),
      [
        ['primary', 'upstream_5xx'],
        ['fallback', 'deadline_exceeded'],
      ],
      `${name}: both attempts are named, in order, with what ended each`,
    );
    t.equal(attempts[0].status, 503, 'with the upstream status');
  }
});

// ---- 2. several rate-limit headers at once ----

/** Milliseconds from `at` to the `until` /status shows. */
const untilIn = (s: StatusModel, at: number) => (s.until === null ? Number.NaN : Date.parse(s.until) - at);

t.test(
  'OpenAI headers sent together: cooling until the longest of retry-after and x-ratelimit-reset-*, capped by maxRetryAfter',
  async (t) => {
    const headers = { 'retry-after': '2', 'x-ratelimit-reset-requests': '6s', 'x-ratelimit-reset-tokens': '1m30s' };
    for (const [cap, expectMs] of [
      ['10m', 90_000],
      ['40s', 40_000],
    ] as const) {
      await t.test(`maxRetryAfter ${cap}`, async (t) => {
        const h = await startHarness(TWO, { policy: `  cooldown:\n    maxRetryAfter: ${cap}\n    afterFailure: 3s\n` });
        t.teardown(() => h.close());
        h.sims.primary.setFault({ kind: 'status', status: 429, headers }, { times: 1 });
        const at = Date.now();
        const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
        t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'failed over');
        const status = await statusOf(h, 'primary');
        t.equal(status.state, 'cooling');
        const ms = untilIn(status, at);
        t.ok(
          ms > expectMs - 3000 && ms <= expectMs + 1000,
          `/status until is ${ms} ms away: the longest header (1m30s)${cap === '40s' ? ', cut to the 40 s cap' : ''}, not the first or the shortest`,
        );
        const view = h.sidecar.health.get(modelNamed(h, 'primary'));
        t.equal(view.until, Date.parse(status.until!), 'the health view says the same');
      });
    }
  },
);

t.test(
  'Anthropic headers on an Anthropic model: cooling until the latest anthropic-ratelimit-*-reset (or retry-after), capped',
  async (t) => {
    const models = [
      { name: 'claude', kind: 'anthropic' as const, model: 'claude-3-5-haiku-latest', group: 0 },
      { name: 'fallback', group: 1 },
    ];
    for (const [cap, expectMs] of [
      ['10m', 40_000],
      ['25s', 25_000],
    ] as const) {
      await t.test(`maxRetryAfter ${cap}`, async (t) => {
        const h = await startHarness(models, { policy: `  cooldown:\n    maxRetryAfter: ${cap}\n    afterFailure: 3s\n` });
        t.teardown(() => h.close());
        const at = Date.now();
        const iso = (s: number) => new Date(at + s * 1000).toISOString();
        h.sims.claude.setFault(
          {
            kind: 'status',
            status: 429,
            headers: {
              'retry-after': '5',
              'anthropic-ratelimit-requests-reset': iso(20),
              'anthropic-ratelimit-tokens-reset': iso(40),
              'anthropic-ratelimit-input-tokens-reset': iso(10),
              'anthropic-ratelimit-output-tokens-reset': iso(15),
            },
          },
          { times: 1 },
        );
        const res = await post(`${h.sidecar.url}/model`, { messages: HELLO });
        t.equal(res.status, 200);
        t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'failed over');
        const status = await statusOf(h, 'claude');
        t.equal(status.state, 'cooling');
        const ms = untilIn(status, at);
        t.ok(
          ms > expectMs - 3000 && ms <= expectMs + 1000,
          `/status until is ${ms} ms away: the tokens reset 40 s out${cap === '25s' ? ', cut to the 25 s cap' : ''}`,
        );
      });
    }
  },
);

// ---- 3. cooldowns with probes off ----

t.test(
  'probe.kind none: an unreachable model stays out for cooldown.afterFailure, refused credentials for afterAuthFailure; each comes back by itself',
  async (t) => {
    const policy = '  health:\n    probe:\n      kind: none\n  cooldown:\n    afterFailure: 400ms\n    afterAuthFailure: 900ms\n';
    const cases = [
      { name: 'connection refused', fault: { kind: 'refuse' as const }, cooldownMs: 400, cause: /connect_refused/ },
      { name: '401', fault: { kind: 'status' as const, status: 401 }, cooldownMs: 900, cause: /auth \(upstream 401\)/ },
      {
        name: '404 (model gone: as for auth)',
        fault: { kind: 'status' as const, status: 404 },
        cooldownMs: 900,
        cause: /model_not_found \(upstream 404\)/,
      },
    ];
    for (const c of cases) {
      await t.test(c.name, async (t) => {
        // probes on, as the CLI runs them: it is the policy's kind none that turns them off for these models
        const h = await startHarness(TWO, { policy, probes: true });
        t.teardown(() => h.close());
        const primary = modelNamed(h, 'primary');
        h.sims.primary.setFault(c.fault);
        await h.sims.primary.ready();
        const first = await post(`${h.sidecar.url}/model`, { messages: HELLO });
        t.equal(first.headers.get('x-llm-failover-provider'), 'fallback', 'failed over');
        const health = h.sidecar.health.get(primary);
        t.equal(health.state, 'unhealthy');
        t.match(health.cause, c.cause);
        // the passive flag's own clock: its end is its start plus the cooldown (the state's
        // `since` may move later, whenever another flag changes under it)
        const flag = h.sidecar.health.flag(primary, 'passive');
        const ms = (flag?.until ?? 0) - (flag?.since ?? 0);
        // (its start and its end are read off the clock a moment apart: a millisecond either way)
        t.ok(Math.abs(ms - c.cooldownMs) <= 2, `out for ${ms} ms from the moment it was marked down: the configured ${c.cooldownMs} ms`);
        const during = await post(`${h.sidecar.url}/model`, { messages: HELLO });
        t.same(
          [during.headers.get('x-llm-failover-provider'), during.headers.get('x-llm-failover-attempts')],
          ['fallback', '1'],
          'skipped while out',
        );
        h.sims.primary.clearFault();
        await h.sims.primary.ready();
        const before = h.sims.primary.requests.length;
        t.ok(
          await eventually(() => h.sidecar.health.state(primary) === 'healthy', c.cooldownMs + 2000),
          'healthy again when the cooldown ends',
        );
        t.equal(h.sims.primary.requests.length, before, 'by itself: nothing probed it, no request reached it');
        t.ok(Date.now() >= (health.until ?? 0) - 5, 'not before its time');
        const back = await post(`${h.sidecar.url}/model`, { messages: HELLO });
        t.equal(back.headers.get('x-llm-failover-provider'), 'primary', 'and traffic returns to it');
      });
    }
  },
);

// ---- 4. suspectAfter, or 4x the usual ----

t.test(
  "suspectAfter 'or 4x the model's usual, if longer': a model that is always slow to its first token is not suspected at suspectAfter",
  async (t) => {
    const h = await startHarness(TWO, {
      probes: true,
      policy:
        '  health:\n    suspectAfter: 150ms\n    slowThreshold: 10s\n    probe:\n      interval: 1m\n      idleInterval: 1m\n      timeout: 3s\n',
    });
    t.teardown(() => h.close());
    const primary = modelNamed(h, 'primary');
    const probes = h.sidecar.probes;
    const suspicions = () => probes.log.filter((p) => p.model === 'primary' && p.trigger === 'suspicion').length;
    h.sims.primary.setFault({ kind: 'slowFirstToken', delayMs: 400 });
    const stream = async () => {
      const s = await h.client.chat.completions.create({ model: undefined as unknown as string, messages: HELLO, stream: true });
      for await (const _ of s);
    };

    // no usual latency yet: the first slow stream is suspected at suspectAfter (the control)
    await stream();
    t.ok(await eventually(() => suspicions() === 1), 'with no history, 400 ms without a first token past 150 ms is suspected');
    await eventually(() => !h.sidecar.health.isSuspected(primary));
    const usual = h.sidecar.health.get(primary).ttftMs ?? 0;
    t.ok(usual >= 350, `the health view learnt the usual first token (${Math.round(usual)} ms)`);
    const status = await statusOf(h, 'primary');
    t.equal(status.latency.firstTokenMs, Math.round(usual), '/status shows it');
    t.equal(status.state, 'healthy');

    // now 400 ms is its usual: 4x that (1.6 s) is the bar, not 150 ms
    const before = suspicions();
    for (let i = 0; i < 2; i++) await stream();
    await sleep(100);
    t.equal(suspicions() - before, 0, 'no suspicion probe for a model answering at its usual pace');
    t.equal(h.sims.fallback.requests.length, 0, 'and no request was sent elsewhere');
    t.equal(h.sidecar.health.state(primary), 'healthy');
  },
);

// ---- 9. probe jitter and idleInterval ----

/** The wait before each scheduled probe of a model: from the end of one to the start of the next. */
function waits(h: Harness, model: string): number[] {
  const runs = h.sidecar.probes.log.filter((p) => p.model === model && p.trigger === 'schedule');
  return runs.slice(1).map((r, i) => r.startedAt - runs[i].at);
}

t.test('probe intervals are spread by jitterPercent; without jitter they are regular', async (t) => {
  const INTERVAL = 80;
  const probe = (jitter: number) =>
    `  health:\n    probe:\n      interval: ${INTERVAL}ms\n      idleInterval: ${INTERVAL}ms\n      jitterPercent: ${jitter}\n`;
  const [still, spread] = await Promise.all(
    [0, 50].map(async (jitter) => {
      const h = await startHarness([{ name: 'only', group: 0 }], { probes: true, policy: probe(jitter) });
      await sleep(1600);
      const w = waits(h, 'only');
      await h.close();
      return w;
    }),
  );
  t.ok(still.length >= 8 && spread.length >= 8, `enough probes to compare (${still.length}, ${spread.length})`);
  // a busy machine only makes timers late, never early: a wait shorter than the interval is jitter's doing
  t.ok(
    Math.min(...still) >= INTERVAL - 3,
    `without jitter no wait is shorter than the ${INTERVAL} ms interval (shortest ${Math.min(...still)} ms)`,
  );
  t.ok(Math.min(...spread) < INTERVAL * 0.85, `with 50 % jitter some are (shortest ${Math.min(...spread)} ms of ${spread.length})`);
  t.ok(new Set(spread.map((w) => Math.round(w / 5))).size >= 4, 'and the waits differ from one another');
});

t.test('idle models two groups below the traffic are probed every idleInterval, the next group every interval', async (t) => {
  const h = await startHarness(
    [
      { name: 'first', group: 0 },
      { name: 'second', group: 1 },
      { name: 'third', group: 2 },
    ],
    { probes: true, policy: '  health:\n    probe:\n      interval: 50ms\n      idleInterval: 500ms\n      jitterPercent: 0\n' },
  );
  t.teardown(() => h.close());
  await sleep(1300);
  const count = (m: string) => h.sidecar.probes.log.filter((p) => p.model === m && p.trigger === 'schedule').length;
  const [second, third] = [count('second'), count('third')];
  t.ok(second >= 8, `the next group's model is probed at the interval (${second} probes)`);
  t.ok(third >= 1, `the far model is still probed (${third})`);
  t.ok(third * 3 < second, `but far less often (${third} against ${second})`);
  t.same([...new Set(h.sidecar.probes.log.filter((p) => p.model === 'third').map((p) => p.kind))], ['models'], 'with the free model list');
});
