/**
 * Configuration that loads must run: every value the sidecar will put on the wire (header names,
 * header values from secret files, the environment or Inline) is checked at load, on reload and
 * by `check`, and a rotated secret that is not a valid header value never replaces a good one.
 * HTTPRoute regular expressions are RE2 (as Envoy's), matched in linear time. An invalid Backend
 * is reported once, not again by every reference to it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RE2JS } from 're2js';
import t from 'tap';
import { loadPlan } from '../sidecar/config/load.ts';
import { watchConfig } from '../sidecar/config/watch.ts';
import type { FileSecret } from '../sidecar/core/secret.ts';
import { compileRouteRegex, createRouter } from '../sidecar/config/routes.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { post } from './support/wire.ts';
import { CLI } from './support/child.ts';
import { sleep } from './support/wait.ts';
import { backendYaml, configProblems } from './support/yaml.ts';

const problemsOf = configProblems;

async function check(text: string, secretsDir: string): Promise<{ code: number | null; out: string; err: string }> {
  const file = join(mkdtempSync(join(tmpdir(), 'check-')), 'config.yaml');
  writeFileSync(file, text);
  const child = spawn(process.execPath, [CLI, 'check', '--config', file, '--secrets-dir', secretsDir], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const [code] = await once(child, 'exit');
  return { code, out, err };
}

const BACKEND = (provider: string) => `apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: b
spec:
  type: AI
  ai:
    priorityGroups:
    - providers:
      - name: a
${provider}
`;

const OPENAI_SECRET_REF = `        openai:
          model: gpt-4o
          authToken:
            kind: SecretRef
            secretRef:
              name: openai-secret`;

const ROUTE = (backend: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /model}}]
    backendRefs: [{name: ${backend}, group: gateway.kgateway.dev, kind: Backend}]
`;

function secretsDir(content: string): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'secrets-'));
  mkdirSync(join(dir, 'openai-secret'));
  const file = join(dir, 'openai-secret', 'Authorization');
  writeFileSync(file, content);
  return { dir, file };
}

const KEY_A = 'sk-validation-first-key-0123456789';
const KEY_B = 'sk-validation-second-key-9876543210';

t.test('a secret file with two lines is a problem naming the file, never the value, at load and in check', async (t) => {
  const { dir, file } = secretsDir(`Bearer ${KEY_A}\n${KEY_B}\n`);
  const problems = problemsOf(BACKEND(OPENAI_SECRET_REF), { secretsDir: dir });
  t.equal(problems.length, 1, problems.join('\n'));
  t.match(problems[0], 'bad.yaml Backend/b spec.ai.priorityGroups[0].providers[0].openai.authToken.secretRef.name: ');
  t.match(problems[0], `secret "openai-secret" in ${file} is not a valid header value`);
  t.match(problems[0], /line break/);
  const r = await check(BACKEND(OPENAI_SECRET_REF), dir);
  t.equal(r.code, 2, 'check fails');
  t.match(r.err, `secret "openai-secret" in ${file} is not a valid header value`);
  for (const text of [problems.join('\n'), r.out, r.err]) {
    t.notMatch(text, 'validation-first', 'the key is never printed');
    t.notMatch(text, 'validation-second');
  }
});

t.test('surrounding whitespace and one trailing newline are trimmed; the key loads', async (t) => {
  const { dir } = secretsDir(`  Bearer ${KEY_A}\n`);
  const plan = loadPlan([{ name: 'ok.yaml', text: BACKEND(OPENAI_SECRET_REF) }], { secretsDir: dir, env: {} });
  const m = plan.backends[0].groups[0][0];
  t.equal(m.auth.kind === 'static' && m.auth.token.reveal(), KEY_A);
  if (m.auth.kind === 'static') (m.auth.token as FileSecret).close();
});

t.test('an environment variable with a control character is a problem naming the variable', async (t) => {
  const problems = problemsOf(BACKEND(OPENAI_SECRET_REF), { env: { OPENAI_SECRET: `${KEY_A}\u0007x` } });
  t.equal(problems.length, 1, problems.join('\n'));
  t.match(problems[0], 'secret "openai-secret" in env OPENAI_SECRET is not a valid header value: it holds a control character');
  t.notMatch(problems[0], 'validation-first');
});

t.test('an Inline token with a line break is a problem at its path, without the value', async (t) => {
  const problems = problemsOf(BACKEND(`        openai:\n          authToken: {kind: Inline, inline: "${KEY_A}\\r\\nX-Injected: 1"}`));
  t.equal(problems.length, 1, problems.join('\n'));
  t.match(
    problems[0],
    'bad.yaml Backend/b spec.ai.priorityGroups[0].providers[0].openai.authToken.inline: the Inline token is not a valid header value: it holds a line break',
  );
  t.notMatch(problems[0], 'validation-first');
});

t.test('header names must be RFC 9110 tokens, prefixes valid header values: at load and in check', async (t) => {
  const provider = (override: string) =>
    BACKEND(`        openai:\n          authToken: {kind: Inline, inline: ${KEY_A}}\n        authHeaderOverride: ${override}`);
  const cases: [string, RegExp][] = [
    ['{headerName: "x api key"}', /authHeaderOverride\.headerName: .*not a valid HTTP header name/],
    ['{headerName: "x-api-key:"}', /authHeaderOverride\.headerName: .*not a valid HTTP header name/],
    ['{headerName: content-length}', /authHeaderOverride\.headerName: .*the sidecar sets content-length itself/],
    ['{prefix: "Token\\n"}', /authHeaderOverride\.prefix: .*not a valid header value/],
  ];
  for (const [override, want] of cases) {
    const problems = problemsOf(provider(override));
    t.equal(problems.length, 1, `${override}: ${problems.join('\n')}`);
    t.match(problems[0], want, override);
  }
  const r = await check(provider('{headerName: "x api key"}'), '/nonexistent');
  t.equal(r.code, 2, 'check fails');
  t.match(r.err, /authHeaderOverride\.headerName: .*not a valid HTTP header name/);
  t.same(problemsOf(provider('{headerName: X-Api-Key, prefix: Token}')), [], 'a valid override loads');
});

t.test('a rotated secret file that is not a valid header value keeps the old key', async (t) => {
  const { dir, file } = secretsDir(`Bearer ${KEY_A}\n`);
  const plan = loadPlan([{ name: 'ok.yaml', text: BACKEND(OPENAI_SECRET_REF) }], { secretsDir: dir, env: {}, secretPollMs: 20 });
  const m = plan.backends[0].groups[0][0];
  if (m.auth.kind !== 'static') throw new Error('static auth expected');
  const secret = m.auth.token as FileSecret;
  t.teardown(() => secret.close());
  // watchFile takes its first stat on the thread pool: a write before it lands is the baseline,
  // not a change (on a busy machine the rotation below was then never seen)
  await sleep(100);
  writeFileSync(file, `Bearer ${KEY_B}\nsecond line\n`);
  for (let i = 0; i < 100 && !secret.rejected; i++) await sleep(20);
  t.match(secret.rejected, /not a valid header value: it holds a line break/, 'the rotation was rejected, and why');
  t.notMatch(secret.rejected, 'validation-second');
  t.equal(secret.reveal(), KEY_A, 'the old key stays');
  writeFileSync(file, `Bearer ${KEY_B}\n`);
  for (let i = 0; i < 100 && secret.reveal() !== KEY_B; i++) await sleep(20);
  t.equal(secret.reveal(), KEY_B, 'a valid rotation applies');
  t.equal(secret.rejected, undefined);
});

t.test('RegularExpression routes: RE2, linear time, bounded input', async (t) => {
  const route = (pattern: string) => `${BACKEND(`        openai:\n          authToken: {kind: Inline, inline: ${KEY_A}}`)}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - matches: [{path: {type: RegularExpression, value: '${pattern}'}}]
    backendRefs: [{name: b, group: gateway.kgateway.dev, kind: Backend}]
`;
  t.ok(compileRouteRegex('/(a+)+$') instanceof RE2JS, 'a route pattern is compiled by RE2 (linear time), not by the backtracking RegExp');
  for (const [pattern, what] of [
    ['/(a)\\1', 'a backreference'],
    ['/(?=x)y', 'a lookahead'],
    ['/(?!x)y', 'a negative lookahead'],
    ['/[', 'an unclosed class'],
  ]) {
    const problems = problemsOf(route(pattern));
    t.equal(problems.length, 1, `${what}: ${problems.join('\n')}`);
    t.match(
      problems[0],
      /^bad\.yaml HTTPRoute\/r spec\.rules\[0\]\.matches\[0\]\.path\.value: invalid regular expression \(RE2 syntax, as Envoy uses\): /,
      what,
    );
  }
  const plan = loadPlan([{ name: 'ok.yaml', text: route('/v[0-9]+/(chat|talk)') }]);
  const router = createRouter(plan.routes);
  t.equal(router.match('/v12/chat')?.source, 'HTTPRoute/r rule 0', 'a whole-path match');
  t.equal(router.match('/v12/chat/x'), undefined, 'the whole path must match, not a part');
  t.equal(router.match('/xv1/talk'), undefined);
  t.equal(
    createRouter(loadPlan([{ name: 'ok.yaml', text: route('/a+') }]).routes).match(`/${'a'.repeat(9000)}`),
    undefined,
    'a path over 8 KiB never matches a regex route',
  );
});

t.test('a hostile path against a catastrophic pattern answers at once; the route still serves', async (t) => {
  const h = await startHarness([{ name: 'primary', group: 0 }], {
    yaml: (ports) =>
      backendYaml([{ name: 'primary', group: 0 }], ports).replace(
        'type: PathPrefix\n        value: /model',
        () => "type: RegularExpression\n        value: '/(a+)+$'",
      ) + '---\napiVersion: llm-failover.dev/v1alpha1\nkind: SidecarConfig\nspec:\n  listen: 127.0.0.1:0\n  admin: 127.0.0.1:0\n',
  });
  t.teardown(() => h.close());
  const hostile = await post(`${h.sidecar.url}/${'a'.repeat(39)}!`, { messages: HELLO });
  t.equal(hostile.status, 404, 'no match: 404');
  const good = await post(`${h.sidecar.url}/aaaa`, { messages: HELLO });
  t.equal(good.status, 200, 'the route matches what it should');
  t.equal(good.headers.get('x-llm-failover-provider'), 'primary');
});

t.test('an invalid Backend is one problem: the HTTPRoute and FailoverPolicy naming it add none (loadPlan and check)', async (t) => {
  const text = `${BACKEND('        gemini: {model: gemini-pro}')}${ROUTE('b')}---
apiVersion: llm-failover.dev/v1alpha1
kind: FailoverPolicy
metadata: {name: p}
spec:
  targetRefs: [{kind: Backend, name: b}]
`;
  const problems = problemsOf(text);
  t.same(problems, [
    'bad.yaml Backend/b spec.ai.priorityGroups[0].providers[0].gemini: provider "gemini" is not served by this sidecar yet (served: openai, anthropic)',
  ]);
  const r = await check(text, '/nonexistent');
  t.equal(r.code, 2);
  t.match(r.err, /invalid configuration \(1 problem\)/);
  t.notMatch(r.err, /no Backend/);
  t.match(
    problemsOf(`${BACKEND('        gemini: {model: gemini-pro}')}${ROUTE('other')}`).join('\n'),
    /no Backend default\/other in the configuration/,
    'a reference to a Backend that is not there at all is still reported',
  );
});

t.test('on reload, an invalid header name or secret is rejected with its problem and the running configuration stays', async (t) => {
  const { dir, file } = secretsDir(`Bearer ${KEY_A}\n`);
  const config = join(mkdtempSync(join(tmpdir(), 'reload-')), 'config.yaml');
  writeFileSync(config, BACKEND(OPENAI_SECRET_REF));
  const plans: unknown[] = [];
  const rejected: string[] = [];
  const watch = watchConfig(
    config,
    { secretsDir: dir, env: {}, pollMs: 60_000 },
    { onPlan: (p) => plans.push(p), onRejected: (err) => rejected.push(String((err as Error).message)) },
  );
  t.teardown(() => watch.stop());
  writeFileSync(config, `${BACKEND(OPENAI_SECRET_REF)}        authHeaderOverride: {headerName: "x api key"}\n`);
  watch.check();
  t.equal(plans.length, 0, 'not applied');
  t.match(rejected.at(-1), /authHeaderOverride\.headerName: not a valid HTTP header name/);
  writeFileSync(file, `Bearer ${KEY_A}\n${KEY_B}\n`);
  writeFileSync(config, `${BACKEND(OPENAI_SECRET_REF)}        authHeaderOverride: {headerName: api-key}\n`);
  watch.check();
  t.equal(plans.length, 0, 'not applied');
  t.match(rejected.at(-1), `secret "openai-secret" in ${file} is not a valid header value`);
  t.notMatch(rejected.join('\n'), 'validation-');
});
