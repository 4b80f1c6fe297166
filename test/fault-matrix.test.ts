/**
 * The fault matrix: every fault a provider can produce, streamed and not. For each one the client
 * gets the right outcome (a 200 through failover to the healthy fallback, or — after the commit
 * point — an error event and no [DONE]), the health view records it as passive.ts says, the
 * metrics count it, nothing hangs, every socket is closed afterwards, and the planted key (echoed
 * by the provider in its error message, as OpenAI does) and the client's token appear nowhere.
 *
 * A fresh sidecar per case: health state and breaker windows must not leak between cases.
 *
 * The matrix runs twice: with probes off (the request path alone, as most suites run it), and with
 * probes on at the product's defaults (`probes: true`, no probe policy: first probe of each model
 * at a random moment within the 10 s interval, then every 10 s ±20 %). The client's outcome must
 * be the same either way. Health and metrics are the same too unless a probe of the primary
 * finished before they were read (a few cases in a run, at random): that probe met the fault too
 * and may legitimately have acted first (a 401 or 429 on the model list marks the model down or
 * cooling before the request, which then goes to the fallback at its first attempt; a failed
 * chat probe adds to the unhealthy streak). Those cases assert the client's outcome and that the
 * probe never made the primary look better than the fault says, and say so in a comment.
 */
import t from 'tap';
import type { Fault } from '../simulator/index.ts';
import type { TapTest } from './support/child.ts';
import { type HarnessOptions, HELLO, startHarness } from './support/harness.ts';
import { eventually } from './support/wait.ts';
import { metric, sseData, streamedContent, userRequests } from './support/wire.ts';
import { type ModelSpec, TEST_KEY } from './support/yaml.ts';

type Reason =
  | 'connect_refused'
  | 'connect_reset'
  | 'dns'
  | 'tls'
  | 'upstream_5xx'
  | 'overloaded'
  | 'rate_limited'
  | 'request_timeout'
  | 'auth'
  | 'model_not_found'
  | 'response_timeout'
  | 'first_token_timeout'
  | 'stream_stalled'
  | 'bad_response'
  | 'stream_error';

/** failover: the fallback serves a 200 (attempt 2). cut: the stream committed on the primary, then broke. */
type Outcome = { kind: 'failover'; reason: Reason } | { kind: 'cut'; reason: Reason };

/**
 * What passive.ts makes of the failure: unreachable and credential failures mark the model
 * unhealthy, 429/529 cool it (for the header's duration, else the policy's afterFailure of 9 s),
 * everything transient is one failure in its breaker's window.
 */
type HealthAfter =
  | { state: 'unhealthy' }
  | { state: 'breaker' }
  | { state: 'cooling'; forMs: number }
  | { state: 'cooling'; until: number };

interface Case {
  name: string;
  primary?: 'openai' | 'anthropic';
  /** Built at run time (HTTP dates are relative to now). */
  fault?: () => Fault;
  rig?: Partial<HarnessOptions>;
  nonStreamed: Outcome;
  streamed: Outcome;
  health: () => HealthAfter;
}

const COOLDOWN_MS = 9000;
// The request deadline is 4x the longest phase timeout: a fault that made any attempt wait for a
// default timeout (30 s and more) would end in a 504, which fails the "200" of every case below.
const POLICY = `  timeouts:
    response: 500ms
    firstToken: 500ms
    streamIdle: 300ms
    request: 2s
  cooldown:
    afterFailure: 9s
  maxResponseBytes: 65536
  maxStreamBytes: 65536
`;

/** The key as OpenAI echoes it in a 401 ("Incorrect API key provided: sk-tes********6789"). */
const MASKED_KEY = `${TEST_KEY.slice(0, 6)}********${TEST_KEY.slice(-4)}`;
const ECHO = `Incorrect API key provided: ${TEST_KEY} (${MASKED_KEY}); see your key at https://platform.openai.com/account/api-keys.`;
const CLIENT_TOKEN = 'sk-client-matrix-SENTINEL-5e6f7a8b';

const failover = (reason: Reason): Outcome => ({ kind: 'failover', reason });
const cut = (reason: Reason): Outcome => ({ kind: 'cut', reason });
const both = (o: Outcome) => ({ nonStreamed: o, streamed: o });
const status =
  (code: number, headers?: Record<string, string>): (() => Fault) =>
  () => ({ kind: 'status', status: code, headers, message: ECHO });

/** An instant on a whole second, `ms` from now: what an HTTP date can express. */
const wholeSecondIn = (ms: number) => Math.ceil((Date.now() + ms) / 1000) * 1000;
let dateAt = 0;

const CASES: Case[] = [
  {
    name: 'connection refused',
    fault: () => ({ kind: 'refuse' }),
    ...both(failover('connect_refused')),
    health: () => ({ state: 'unhealthy' }),
  },
  {
    name: 'reset before the headers',
    fault: () => ({ kind: 'reset' }),
    ...both(failover('connect_reset')),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'reset mid-body',
    fault: () => ({ kind: 'resetMidBody' }),
    nonStreamed: failover('connect_reset'),
    streamed: cut('connect_reset'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'TLS handshake failure (tls: true against plain HTTP)',
    rig: { policy: `${POLICY}  providers:\n    primary:\n      tls: true\n` },
    ...both(failover('tls')),
    health: () => ({ state: 'unhealthy' }),
  },
  {
    name: 'DNS failure',
    rig: {
      mapYaml: (y, ports) =>
        y.replace(`host: 127.0.0.1\n          port: ${ports.primary}`, `host: no-such-host.invalid\n          port: ${ports.primary}`),
    },
    ...both(failover('dns')),
    health: () => ({ state: 'unhealthy' }),
  },
  { name: '500', fault: status(500), ...both(failover('upstream_5xx')), health: () => ({ state: 'breaker' }) },
  { name: '502', fault: status(502), ...both(failover('upstream_5xx')), health: () => ({ state: 'breaker' }) },
  { name: '503', fault: status(503), ...both(failover('upstream_5xx')), health: () => ({ state: 'breaker' }) },
  { name: '504', fault: status(504), ...both(failover('upstream_5xx')), health: () => ({ state: 'breaker' }) },
  {
    name: '529 overloaded (Anthropic)',
    primary: 'anthropic',
    fault: status(529),
    ...both(failover('overloaded')),
    health: () => ({ state: 'cooling', forMs: COOLDOWN_MS }),
  },
  {
    name: '429 retry-after: 7 (seconds)',
    fault: status(429, { 'retry-after': '7' }),
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', forMs: 7000 }),
  },
  {
    name: '429 retry-after: <HTTP date>',
    fault: () => {
      dateAt = wholeSecondIn(20_000);
      return { kind: 'status', status: 429, headers: { 'retry-after': new Date(dateAt).toUTCString() }, message: ECHO };
    },
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', until: dateAt }),
  },
  {
    name: '429 retry-after-ms: 4500',
    fault: status(429, { 'retry-after-ms': '4500' }),
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', forMs: 4500 }),
  },
  {
    name: '429 x-ratelimit-reset-requests: 6s',
    fault: status(429, { 'x-ratelimit-reset-requests': '6s' }),
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', forMs: 6000 }),
  },
  {
    // with OpenAI's whole set (limits, remaining, resets of 120ms and 6m0s): the longest, cut to the cap
    name: '429 retry-after: 2 beside x-ratelimit-reset-tokens: 6m0s, capped by maxRetryAfter 8s',
    fault: status(429, { 'retry-after': '2', 'x-ratelimit-reset-tokens': '6m0s' }),
    rig: { policy: POLICY.replace('afterFailure: 9s', 'afterFailure: 9s\n    maxRetryAfter: 8s') },
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', forMs: 8000 }),
  },
  {
    name: '429 anthropic-ratelimit-requests-reset: <RFC 3339> (Anthropic)',
    primary: 'anthropic',
    fault: () => {
      dateAt = Date.now() + 12_345;
      return {
        kind: 'status',
        status: 429,
        headers: { 'anthropic-ratelimit-requests-reset': new Date(dateAt).toISOString() },
        message: ECHO,
      };
    },
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', until: dateAt }),
  },
  {
    // beside Anthropic's retry-after (3 s) and its other buckets' resets (within 2 s): the latest reset wins
    name: '429 retry-after: 3 and anthropic-ratelimit-tokens-reset 15 s out (Anthropic)',
    primary: 'anthropic',
    fault: () => {
      dateAt = Date.now() + 15_000;
      return {
        kind: 'status',
        status: 429,
        headers: { 'retry-after': '3', 'anthropic-ratelimit-tokens-reset': new Date(dateAt).toISOString() },
        message: ECHO,
      };
    },
    ...both(failover('rate_limited')),
    health: () => ({ state: 'cooling', until: dateAt }),
  },
  { name: '408', fault: status(408), ...both(failover('request_timeout')), health: () => ({ state: 'breaker' }) },
  { name: '401', fault: status(401), ...both(failover('auth')), health: () => ({ state: 'unhealthy' }) },
  { name: '403', fault: status(403), ...both(failover('auth')), health: () => ({ state: 'unhealthy' }) },
  { name: '404', fault: status(404), ...both(failover('model_not_found')), health: () => ({ state: 'unhealthy' }) },
  {
    name: 'hang before the headers',
    fault: () => ({ kind: 'hang' }),
    nonStreamed: failover('response_timeout'),
    streamed: failover('first_token_timeout'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'first token slower than its timeout',
    fault: () => ({ kind: 'slowFirstToken', delayMs: 3000 }),
    nonStreamed: failover('response_timeout'),
    streamed: failover('first_token_timeout'),
    health: () => ({ state: 'breaker' }),
  },
  {
    // the stream opened, so its idle timer (300 ms) runs beside the first-token one (500 ms): the first to fire names it
    name: 'stall before the first content chunk',
    fault: () => ({ kind: 'stallMidStream', afterChunks: 0 }),
    nonStreamed: failover('response_timeout'),
    streamed: failover('stream_stalled'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'stall mid-stream',
    fault: () => ({ kind: 'stallMidStream', afterChunks: 2 }),
    nonStreamed: failover('response_timeout'),
    streamed: cut('stream_stalled'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'invalid JSON body / malformed SSE event',
    fault: () => ({ kind: 'invalidJson' }),
    ...both(failover('bad_response')),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'truncated JSON / stream ended without its terminator',
    fault: () => ({ kind: 'truncatedJson' }),
    nonStreamed: failover('bad_response'),
    streamed: cut('bad_response'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'error event before the first token',
    fault: () => ({ kind: 'errorEventBeforeFirstToken' }),
    nonStreamed: failover('upstream_5xx'),
    streamed: failover('stream_error'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'error event after the first token',
    fault: () => ({ kind: 'errorEventAfterFirstToken' }),
    nonStreamed: failover('upstream_5xx'),
    streamed: cut('stream_error'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'overloaded error event before the first token (Anthropic)',
    primary: 'anthropic',
    fault: () => ({ kind: 'errorEventBeforeFirstToken' }),
    ...both(failover('overloaded')),
    health: () => ({ state: 'cooling', forMs: COOLDOWN_MS }),
  },
  {
    name: 'overloaded error event after the first token (Anthropic)',
    primary: 'anthropic',
    fault: () => ({ kind: 'errorEventAfterFirstToken' }),
    nonStreamed: failover('overloaded'),
    streamed: cut('overloaded'),
    health: () => ({ state: 'cooling', forMs: COOLDOWN_MS }),
  },
  {
    name: 'a 200 with an empty body',
    fault: () => ({ kind: 'emptyBody' }),
    ...both(failover('bad_response')),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'a 200 that proves nothing: events without choices, then [DONE]',
    fault: () => ({ kind: 'raw', body: 'data: {"foo":"bar"}\n\ndata: [DONE]\n\n' }),
    ...both(failover('bad_response')),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'keep-alives only after the first token',
    fault: () => ({ kind: 'keepAliveStall', afterChunks: 2, everyMs: 50 }),
    nonStreamed: failover('response_timeout'),
    streamed: cut('stream_stalled'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'an error object inside a chunk after the first token, then [DONE]',
    fault: () => ({ kind: 'errorThenDone' }),
    nonStreamed: failover('upstream_5xx'),
    streamed: cut('stream_error'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'a chunk cut short after the first token, the stream going on to [DONE]',
    fault: () => ({ kind: 'truncatedChunk' }),
    nonStreamed: failover('bad_response'),
    streamed: cut('bad_response'),
    health: () => ({ state: 'breaker' }),
  },
  {
    name: 'a response far larger than any sane completion (maxResponseBytes / maxStreamBytes 64 KiB)',
    fault: () => ({ kind: 'huge', bytes: 1 << 20 }),
    nonStreamed: failover('bad_response'),
    streamed: cut('bad_response'),
    health: () => ({ state: 'breaker' }),
  },
];

/** How bad a state is, for "a probe never made the primary look better than the fault says". */
const BADNESS: Record<string, number> = { healthy: 0, degraded: 1, cooling: 2, open: 2, unhealthy: 2 };

async function runCase(t: TapTest, c: Case, stream: boolean, probes: boolean): Promise<void> {
  const models: ModelSpec[] = [
    { name: 'primary', kind: c.primary ?? 'openai', group: 0 },
    { name: 'fallback', group: 1 },
  ];
  const h = await startHarness(models, { policy: POLICY, ...c.rig, probes });
  t.teardown(() => h.close());
  const primary = h.sidecar.health.models()[0];
  const fault = c.fault?.();
  if (fault) {
    h.sims.primary.setFault(fault);
    await h.sims.primary.ready();
  }
  const expected = stream ? c.streamed : c.nonStreamed;

  // the request's start and end bound a cooldown's `until` (a window, not a timing assertion)
  const before = Date.now();
  const res = await fetch(`${h.sidecar.url}/model`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_TOKEN}` },
    body: JSON.stringify({ messages: HELLO, stream }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  const after = Date.now();
  // probes on: did one of the primary finish before the request ended (it may have acted first)?
  const probedFirst = probes && h.sidecar.probes.log.some((p) => p.model === 'primary' && p.at <= after);
  if (probedFirst)
    t.comment(`a probe of the primary finished first: ${JSON.stringify(h.sidecar.probes.log.filter((p) => p.model === 'primary'))}`);

  // what the client sees: the same with probes on or off
  t.equal(res.status, 200, 'the client gets a 200');
  if (expected.kind === 'failover') {
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'served by the fallback');
    if (stream) {
      t.equal(streamedContent(text), 'Hello from fallback', 'one clean stream from the fallback');
      t.equal(sseData(text).at(-1), '[DONE]', 'ending in [DONE]');
      t.notMatch(text, /"error"/, 'no error event');
    } else {
      t.equal((JSON.parse(text) as { choices: { message: { content: string } }[] }).choices[0].message.content, 'Hello from fallback');
    }
    // probes (on in the second run) reach the fallback too: only the users' requests count here
    t.equal(userRequests(h.sims.fallback.requests).length, 1, 'the fallback served it once');
  } else if (!probedFirst || res.headers.get('x-llm-failover-provider') === 'primary') {
    t.equal(res.headers.get('x-llm-failover-provider'), 'primary', 'the stream had committed on the primary');
    t.equal(res.headers.get('x-llm-failover-attempts'), '1');
    const events = sseData(text);
    t.ok(streamedContent(text).length > 0, 'the content sent before the fault arrived');
    const last = JSON.parse(events.at(-1) ?? '{}') as { error?: { code?: string; message?: string; type?: string } };
    t.equal(last.error?.code, 'stream_interrupted', 'the stream ends with an error event');
    t.equal(last.error?.type, 'server_error');
    t.match(last.error?.message, /the stream from the model broke after it started/);
    t.notOk(events.includes('[DONE]'), 'and no [DONE]');
    t.equal(userRequests(h.sims.fallback.requests).length, 0, 'a committed stream is never replayed elsewhere');
  } else {
    // a chat probe met the stream fault first and took the primary out: the fallback served it whole
    t.equal(res.headers.get('x-llm-failover-provider'), 'fallback', 'the primary was down: the fallback served it');
    t.equal(streamedContent(text), 'Hello from fallback');
    t.equal(sseData(text).at(-1), '[DONE]');
  }

  const health = h.sidecar.health.get(primary);
  const want = c.health();
  const metrics = await (await fetch(`${h.sidecar.adminUrl}/metrics`)).text();
  if (probedFirst) {
    // health and metrics are the probe's as much as the request's: the primary looks no better than the fault says
    const wantState = want.state === 'breaker' ? 'healthy' : want.state;
    t.ok(BADNESS[health.state] >= BADNESS[wantState], `the primary is ${health.state}, at least as bad as ${wantState}`);
  } else {
    if (expected.kind === 'failover') t.equal(res.headers.get('x-llm-failover-attempts'), '2', 'at the second attempt');

    // health
    const breakerFailures = h.sidecar.monitor.breakers.stats(primary)?.failures ?? 0;
    if (want.state === 'breaker') {
      t.equal(health.state, 'healthy', 'one transient failure does not take the model out');
      t.equal(breakerFailures, 1, 'it is counted in the breaker window');
    } else {
      t.equal(health.state, want.state, `the primary is ${want.state}`);
      t.equal(breakerFailures, 0, 'not a breaker failure');
    }
    if (want.state === 'cooling') {
      const until = health.until ?? 0;
      const [lo, hi] = 'forMs' in want ? [before + want.forMs, after + want.forMs] : [want.until, want.until + (after - before)];
      t.ok(
        until >= lo && until <= hi,
        `cooling until ${until - before} ms after the request started (expected ${lo - before}..${hi - before})`,
      );
    }

    // metrics
    t.equal(
      metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'primary', outcome: expected.reason }),
      1,
      `attempts_total{outcome="${expected.reason}"} = 1`,
    );
    t.equal(metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'primary' }), 1, 'one attempt on the primary in all');
    const stateNow = want.state === 'breaker' ? 'healthy' : want.state;
    t.equal(
      metric(metrics, 'llm_failover_model_state', { provider: 'primary', state: stateNow }),
      1,
      `model_state{state="${stateNow}"} = 1`,
    );
    if (expected.kind === 'failover') {
      t.equal(
        metric(metrics, 'llm_failover_switches_total', { from: 'primary', to: 'fallback', reason: expected.reason }),
        1,
        `switches_total{reason="${expected.reason}"} = 1`,
      );
      t.equal(metric(metrics, 'llm_failover_upstream_attempts_total', { provider: 'fallback', outcome: 'success' }), 1);
      t.equal(metric(metrics, 'llm_failover_requests_total', { outcome: 'ok', status_code: '200', stream: String(stream) }), 1);
    } else {
      t.equal(metric(metrics, 'llm_failover_switches_total'), undefined, 'no switch after the commit point');
      t.equal(
        metric(metrics, 'llm_failover_requests_total', { outcome: 'cut', status_code: '200', stream: String(stream) }),
        1,
        'requests_total{outcome="cut"} = 1',
      );
    }
  }
  if (fault?.kind === 'refuse') h.sims.primary.clearFault();

  // every socket closed: nothing left open upstream or inbound (a probe has its own, shorter, life: not waited for)
  const closed = await eventually(
    () => (probes || h.sims.primary.inFlight() === 0) && h.sims.fallback.inFlight() === 0 && h.sidecar.inFlight() === 0,
  );
  t.ok(
    closed,
    `no request left open (simulators ${h.sims.primary.inFlight()}/${h.sims.fallback.inFlight()}, sidecar ${h.sidecar.inFlight()})`,
  );

  // secrets: the provider echoed the key; the client sent its own token
  const status = await (await fetch(`${h.sidecar.adminUrl}/status`)).text();
  const everything = { response: text, logs: h.logs.join(''), metrics, status };
  if (fault?.kind === 'status')
    t.match(everything.logs, /Incorrect API key provided: \[redacted\]/, 'the provider echoed the key, and it was scrubbed');
  for (const [where, out] of Object.entries(everything)) {
    t.notOk(
      out.includes(TEST_KEY) || out.includes(MASKED_KEY) || out.includes(TEST_KEY.slice(-10)),
      `no provider key (whole or masked) in the ${where}`,
    );
    t.notOk(out.includes(CLIENT_TOKEN), `no client token in the ${where}`);
  }
}

for (const probes of [false, true]) {
  for (const c of CASES) {
    for (const stream of [false, true]) {
      t.test(`${c.name}, ${stream ? 'streamed' : 'not streamed'}${probes ? ', probes on (defaults)' : ''}`, (t) =>
        runCase(t, c, stream, probes),
      );
    }
  }
}

t.test('the matrix covers every fault kind the simulator can produce', async (t) => {
  const src = await import('node:fs').then((fs) => fs.readFileSync(new URL('../simulator/faults.ts', import.meta.url), 'utf8'));
  // slowEnd is no failure (the answer is whole): test/streaming.test.ts checks the connection is kept
  const kinds = [...src.matchAll(/\{ kind: '(\w+)'/g)].map((m) => m[1]).filter((k) => k !== 'none' && k !== 'slowEnd');
  const covered = new Set(CASES.map((c) => c.fault?.().kind).filter(Boolean));
  for (const k of kinds) t.ok(covered.has(k as Fault['kind']), `fault kind ${k} is in the matrix`);
});
