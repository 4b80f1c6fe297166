/**
 * The README cannot go stale: every `curl` command in its ```sh blocks (and in docs/*.md, where
 * one aims at localhost:8080 or localhost:15000) runs, as written, through /bin/sh with the real
 * curl against the embedded demo that `npm start` serves; only the ports change, to the test's
 * ephemeral ones. Each must exit 0 and return what the README says it returns. A command whose
 * path has no expectation here fails, so a new example cannot slip in unchecked.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startDemo } from '../sidecar/cli/demo.ts';
import { startSidecar } from '../sidecar/runtime/main.ts';
import { createLogger } from '../sidecar/observe/log.ts';

const ROOT = join(import.meta.dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const PROXY_PORT = '8080';
const ADMIN_PORT = '15000';
const CURL = '/usr/bin/curl';
const JQ = ['/usr/bin/jq', '/usr/local/bin/jq', '/bin/jq'].some((p) => existsSync(p));

interface Example {
  file: string;
  /** The command as written, continuation lines joined. */
  command: string;
}

/** Every command line starting with `curl` in the fenced sh/bash/shell blocks of `markdown`. */
function curlCommands(markdown: string, file: string): Example[] {
  const found: Example[] = [];
  for (const [, body] of markdown.matchAll(/^[ \t]*```(?:sh|bash|shell)[^\n]*\n([\s\S]*?)^[ \t]*```/gm)) {
    const lines = body.replace(/\\\n\s*/g, '').split('\n');
    for (const line of lines) if (/^\s*curl\s/.test(line)) found.push({ file, command: line.trim() });
  }
  return found;
}

function examples(): Example[] {
  const all = curlCommands(README, 'README.md');
  for (const name of readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()) {
    const doc = curlCommands(readFileSync(join(ROOT, 'docs', name), 'utf8'), `docs/${name}`);
    all.push(...doc.filter((e) => new RegExp(`localhost:(${PROXY_PORT}|${ADMIN_PORT})\\b`).test(e.command)));
  }
  return all;
}

/** The command aimed at the test's sidecar: the README's ports replaced by the ephemeral ones. */
function rewrite(command: string, proxyPort: string, adminPort: string): string {
  return command
    .replace(new RegExp(`\\b(localhost|127\\.0\\.0\\.1):${PROXY_PORT}\\b`, 'g'), `$1:${proxyPort}`)
    .replace(new RegExp(`\\b(localhost|127\\.0\\.0\\.1):${ADMIN_PORT}\\b`, 'g'), `$1:${adminPort}`);
}

/** Runs a shell command line with /usr/bin/curl first on PATH; never longer than 10 s. */
function sh(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { timeout: 10_000, env: { PATH: '/usr/bin:/bin', HOME: tmpdir() } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The header names the README says tell who served. */
const SERVED_BY_HEADERS = [...new Set([...README.matchAll(/`(x-llm-failover-[a-z-]+)`/g)].map((m) => m[1]))];
/** The demo's priority order as the README states it, e.g. ["gpt-4o", "gpt-4.0-turbo", "gpt-3.5-turbo"]. */
const DEMO_ORDER = README.match(/\(([\w.-]+(?: > [\w.-]+)+)\)/)?.[1].split(' > ') ?? [];

interface Check {
  equal(found: unknown, wanted: unknown, message: string): unknown;
  ok(value: unknown, message: string): unknown;
  same(found: unknown, wanted: unknown, message: string): unknown;
  match(found: unknown, wanted: RegExp, message: string): unknown;
}

function json(tt: Check, stdout: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(stdout);
  } catch {
    tt.ok(false, `the output is JSON: ${stdout.slice(0, 200)}`);
    return undefined;
  }
}

/** What the README says each path returns, keyed by the request path. */
const EXPECTATIONS: Record<string, (tt: Check, stdout: string) => void> = {
  '/model': chatCompletion,
  '/v1/chat/completions': chatCompletion,
  '/status': (tt, stdout) => {
    const status = json(tt, stdout) as
      | { ready?: boolean; backends?: { groups: { priority: number; models: { model: string; state: string }[] }[] }[] }
      | undefined;
    tt.equal(status?.ready, true, 'ready');
    const groups = status?.backends?.[0]?.groups ?? [];
    tt.same(
      groups.map((g) => g.models.map((m) => m.model)),
      DEMO_ORDER.map((m) => [m]),
      `one model per priority group, in the README's order (${DEMO_ORDER.join(' > ')})`,
    );
    tt.same(
      groups.map((g) => g.priority),
      DEMO_ORDER.map((_, i) => i + 1),
      'priority 1 = highest',
    );
    for (const m of groups.flatMap((g) => g.models)) tt.equal(m.state, 'healthy', `every model's health: ${m.model}`);
  },
  '/healthz': (tt, stdout) => tt.equal(stdout.trim(), 'ok', '/healthz says ok'),
  '/readyz': (tt, stdout) => tt.equal(stdout.trim(), 'ready', '/readyz says ready'),
  '/metrics': (tt, stdout) => tt.match(stdout, /^# HELP /m, 'Prometheus text'),
};

function chatCompletion(tt: Check, stdout: string): void {
  const body = json(tt, stdout) as
    | { object?: string; model?: string; choices?: { message: { role: string; content: string }; finish_reason: string }[] }
    | undefined;
  tt.equal(body?.object, 'chat.completion', 'a chat.completion');
  tt.equal(body?.model, DEMO_ORDER[0], 'answered by the primary of the demo');
  tt.equal(body?.choices?.[0]?.message.role, 'assistant', 'an assistant message');
  tt.match(body?.choices?.[0]?.message.content, /\S/, 'with text');
  tt.equal(body?.choices?.[0]?.finish_reason, 'stop', 'finished');
}

const pathOf = (command: string) => command.match(/localhost:\d+(\/[^\s'"?|]*)/)?.[1] ?? '';

t.test('the README and docs curl examples run against the demo and return what they say', async (t) => {
  t.ok(existsSync(CURL), 'the real curl is at /usr/bin/curl');
  const all = examples();
  t.ok(
    all.some((e) => e.command.includes(`localhost:${PROXY_PORT}/`)),
    'the README shows a request to the proxy',
  );
  t.ok(
    all.some((e) => e.command.includes(`localhost:${ADMIN_PORT}/`)),
    'the README shows a request to the admin address',
  );
  t.ok(SERVED_BY_HEADERS.length >= 4, `the README names the headers that say who served (${SERVED_BY_HEADERS.join(', ')})`);
  t.same(DEMO_ORDER, ['gpt-4o', 'gpt-4.0-turbo', 'gpt-3.5-turbo'], "the README states the demo's priority order");

  // what `npm start` runs, with ephemeral ports instead of 8080 and 15000 (probes on, as there)
  const demo = await startDemo('127.0.0.1:0', '127.0.0.1:0');
  const sidecar = await startSidecar({ plan: demo.plan, logger: createLogger('silent') });
  t.teardown(async () => {
    await sidecar.close();
    await demo.close();
  });
  const proxyPort = new URL(sidecar.url).port;
  const adminPort = new URL(sidecar.adminUrl).port;
  const dir = mkdtempSync(join(tmpdir(), 'readme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  for (const [i, { file, command }] of all.entries()) {
    await t.test(`${file}: ${command.replace(/\s+#[^'"]*$/, '')}`, async (t) => {
      const run = rewrite(command, proxyPort, adminPort);
      t.not(run, command, 'aimed at the test sidecar');
      const expect = EXPECTATIONS[pathOf(command)];
      if (!expect) {
        t.fail(`no expectation for ${pathOf(command) || 'this command'}: add one to test/readme.test.ts`);
        return;
      }
      // a pipe into jq: check the output without it, and that the whole line runs where jq exists
      const [bare, ...piped] = run.split(/\s+\|\s+(?=jq\b)/);
      const res = await sh(bare);
      t.equal(res.code, 0, `exits 0${res.stderr ? `: ${res.stderr}` : ''}`);
      expect(t, res.stdout);
      if (piped.length > 0 && JQ) t.equal((await sh(run)).code, 0, 'the jq pipeline exits 0');

      if (pathOf(command) === '/model' || pathOf(command) === '/v1/chat/completions') {
        // the paragraph after the example: the response headers say who served
        const headersFile = join(dir, `headers-${i}`);
        const withHeaders = await sh(bare.replace(/^curl\s/, `curl -D ${headersFile} `));
        t.equal(withHeaders.code, 0, 'the same command with -D exits 0');
        const headers = new Map(
          readFileSync(headersFile, 'utf8')
            .split('\r\n')
            .filter((l) => l.includes(':'))
            .map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
        );
        for (const name of SERVED_BY_HEADERS) t.ok(headers.has(name), `the response carries ${name}`);
        t.equal(headers.get('x-llm-failover-provider'), 'openai-gpt-4o', 'the provider that served');
        t.equal(headers.get('x-llm-failover-model'), DEMO_ORDER[0], 'the model that served');
        t.equal(headers.get('x-llm-failover-group'), '1', '1 = highest priority');
        t.equal(headers.get('x-llm-failover-attempts'), '1', 'one attempt: the primary is up');
      }
    });
  }
});

t.test('the extractor reads what a README writer would write', async (t) => {
  const md = [
    'text',
    '```sh',
    'npm start',
    'curl -s localhost:8080/model \\',
    '  -d \'{"messages":[]}\'   # a comment',
    '  curl localhost:15000/status | jq .',
    '```',
    '```json',
    'curl not a command here',
    '```',
    '1. in a list item:',
    '   ```bash',
    '   curl -s localhost:15000/healthz',
    '   ```',
  ].join('\n');
  t.same(
    curlCommands(md, 'x.md').map((e) => e.command),
    [
      'curl -s localhost:8080/model -d \'{"messages":[]}\'   # a comment',
      'curl localhost:15000/status | jq .',
      'curl -s localhost:15000/healthz',
    ],
  );
  t.equal(
    rewrite('curl localhost:8080/model && curl localhost:15000/status', '4001', '4002'),
    'curl localhost:4001/model && curl localhost:4002/status',
  );
  t.equal(pathOf('curl -s localhost:15000/status     # every model'), '/status');
});
