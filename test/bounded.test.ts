/**
 * Bounded by design: concurrency and queue caps shed load with a fast 503 instead of piling up
 * memory, and a soak of steady mixed load (streamed and not, some failing over) leaves a child
 * process's RSS flat, its descriptors back at the baseline, and no secret in anything it printed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Agent } from 'undici';
import { startOpenAISimulator } from '../simulator/index.ts';
import { IMAGE_NODE_FLAGS, startChildSidecar } from './support/child.ts';
import { HELLO, startHarness } from './support/harness.ts';
import { eventually, sleep } from './support/wait.ts';
import { chatOnce, type Outcome, post } from './support/wire.ts';
import { backendYaml, policyYaml } from './support/yaml.ts';

const TWO = [
  { name: 'primary', group: 0 },
  { name: 'fallback', group: 1 },
];

t.test(
  'at the concurrency cap requests queue; beyond the queue a fast 503; a queued one times out; then everything is served again',
  async (t) => {
    const h = await startHarness(TWO, {
      server: '  maxConcurrentRequests: 2\n  maxQueuedRequests: 1\n  queueTimeout: 300ms\n',
      policy: '  timeouts:\n    response: 60s\n',
    });
    t.teardown(() => h.close());
    h.sims.primary.setFault({ kind: 'hang' });
    const send = () => {
      const p = post(`${h.sidecar.url}/model`, { messages: HELLO });
      const tracked = { settled: false, p };
      void p.finally(() => (tracked.settled = true));
      return tracked;
    };

    const a = send();
    const b = send();
    t.ok(await eventually(() => h.sims.primary.inFlight() === 2), 'two requests hang upstream, holding both slots');
    const c = send();
    t.ok(await eventually(() => h.sidecar.inFlight() === 3), 'the third is in, waiting in the queue');
    const d = await send().p;
    t.equal(h.sims.primary.requests.length, 2, 'the queued request did not reach a provider');
    t.notOk(c.settled, 'the fourth was answered while the third was still queued: no waiting for it');
    t.equal(d.status, 503, 'the fourth: 503');
    t.equal(d.json.error?.code, 'sidecar_overloaded');
    t.equal(d.json.error?.type, 'service_unavailable');
    t.match(d.json.error?.message, /the queue is full/);
    t.equal(d.headers.get('retry-after'), '1', 'with Retry-After');
    const cr = await c.p;
    t.equal(cr.status, 503, 'the queued one: 503 after the queue timeout');
    t.equal(cr.json.error?.code, 'sidecar_overloaded');
    t.match(cr.json.error?.message, /no slot freed in time/);
    t.equal(cr.headers.get('retry-after'), '1');
    t.notOk(a.settled || b.settled, 'the two hanging requests are still being served');
    t.equal(h.sims.primary.requests.length, 2, 'nothing shed reached a provider');

    // a queued request takes the slot freed by one that ends
    const e = send();
    t.ok(await eventually(() => h.sidecar.inFlight() === 3), 'another request queues');
    // the hangs end: the provider drops its connections (they fail over to the fallback) and comes back
    h.sims.primary.setFault({ kind: 'refuse' });
    const [ar, br, er] = await Promise.all([a.p, b.p, e.p]);
    t.same([ar.status, br.status], [200, 200], 'the hung requests end: failed over, served');
    t.equal(er.status, 200, 'the queued request got a freed slot and was served');
    h.sims.primary.clearFault();
    await h.sims.primary.ready();
    for (const m of h.sidecar.health.models()) h.sidecar.health.set(m, 'healthy', 'test reset');

    const burst = await Promise.all(Array.from({ length: 3 }, () => post(`${h.sidecar.url}/model`, { messages: HELLO })));
    t.same(
      burst.map((r) => r.status),
      [200, 200, 200],
      'two slots and a queue of one: three at once are all served',
    );
    t.ok(await eventually(() => h.sidecar.inFlight() === 0 && h.sims.primary.inFlight() === 0), 'nothing left in flight');
  },
);

t.test(
  'soak: steady mixed load for 9 s against a child process; RSS stays flat, descriptors return, nothing secret is printed',
  async (t) => {
    const KEY = 'sk-soak-planted-key-9f8e7d6c5b4a3210';
    const CLIENT_TOKEN = 'sk-client-soak-SENTINEL-1a2b3c4d';
    const sims = {
      primary: await startOpenAISimulator({ model: 'primary', apiKey: KEY }),
      fallback: await startOpenAISimulator({ model: 'fallback', apiKey: KEY, chunkDelayMs: 1 }),
    };
    t.teardown(() => Promise.all(Object.values(sims).map((s) => s.close())));
    const dir = mkdtempSync(join(tmpdir(), 'soak-'));
    const config = join(dir, 'config.yaml');
    const yaml = backendYaml(TWO, { primary: sims.primary.port, fallback: sims.fallback.port }).replaceAll(
      /kind: Inline\n\s+inline: \S+/g,
      'kind: SecretRef\n            secretRef: {name: openai-secret}',
    );
    writeFileSync(
      config,
      yaml + policyYaml('  timeouts:\n    response: 5s\n    firstToken: 5s\n  health:\n    breaker:\n      resetTimeout: 500ms\n'),
    );
    // With the image's V8 flags (deploy/Dockerfile): unconstrained, V8 sizes its heap to the allocation rate and RSS
    // climbs for ~12 s before it plateaus, which would hide a leak in a 9 s soak; with them, the heap is what it is in
    // production and any growth is real. (Also proves the sidecar serves this load inside its production heap.)
    const child = await startChildSidecar(
      config,
      ['--secrets-dir', join(dir, 'none')],
      { OPENAI_SECRET: `Bearer ${KEY}` },
      IMAGE_NODE_FLAGS,
    );
    t.teardown(() => child.kill());
    const agent = new Agent({ connections: 16 });
    t.teardown(() => agent.destroy().catch(() => undefined));
    const fdsAtStart = child.fds();

    const counts: Record<Outcome, number> = { complete: 0, 'error-event': 0, 'http-error': 0, 'no-response': 0, truncated: 0 };
    const problems: string[] = [];
    const SOAK_MS = 9000;
    const WARMUP_MS = 2500;
    const started = Date.now();
    let stop = false;
    let n = 0;
    const workers = Array.from({ length: 8 }, async (_, w) => {
      while (!stop && n < 200_000) {
        const stream = (n++ + w) % 2 === 0;
        const r = await chatOnce(child.url, stream, agent, { authorization: `Bearer ${CLIENT_TOKEN}` });
        counts[r.outcome]++;
        if (r.outcome !== 'complete' && problems.length < 10) problems.push(`${r.outcome} ${r.status ?? ''} ${r.detail ?? ''}`);
      }
    });
    // the provider misbehaves now and then (echoing the key, as OpenAI does): some requests fail over
    const chaos = (async () => {
      const faults = [
        { kind: 'status' as const, status: 503, message: `Incorrect API key provided: ${KEY}` },
        { kind: 'errorEventBeforeFirstToken' as const },
        { kind: 'reset' as const },
      ];
      for (let i = 0; !stop; i++) {
        await sleep(700);
        sims.primary.setFault(faults[i % faults.length], { times: 15 });
      }
    })();
    await sleep(WARMUP_MS);
    const rssWarm = child.rss();
    await sleep(SOAK_MS - WARMUP_MS);
    const rssEnd = child.rss();
    const fdsLoaded = child.fds();
    stop = true;
    await Promise.all([...workers, chaos]);
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    t.comment(
      `soak: ${total} requests in ${Date.now() - started} ms; RSS ${(rssWarm / 1048576).toFixed(1)} -> ${(rssEnd / 1048576).toFixed(1)} MiB`,
    );

    t.ok(total > 500, `steady load (${total} requests)`);
    t.equal(counts.complete, total, `every request completed whole (${JSON.stringify(counts)}; ${problems.join(' | ')})`);
    const switches = (await (await fetch(`${child.adminUrl}/metrics`)).text()).match(/^llm_failover_switches_total\{.*\} (\d+)$/gm) ?? [];
    t.ok(switches.length > 0, 'some requests failed over');
    t.ok(
      rssEnd - rssWarm < 25 * 1048576,
      `RSS flat: ${((rssEnd - rssWarm) / 1048576).toFixed(1)} MiB over the soak after warm-up (bound +25 MiB)`,
    );

    // the client hangs up, the providers restart (dropping the pooled upstream connections): descriptors return
    await agent.close();
    for (const s of Object.values(sims)) s.setFault({ kind: 'refuse' });
    await Promise.all(Object.values(sims).map((s) => s.ready()));
    for (const s of Object.values(sims)) s.clearFault();
    await Promise.all(Object.values(sims).map((s) => s.ready()));
    t.ok(fdsLoaded > fdsAtStart + 8, `under load the child held more descriptors (${fdsAtStart} -> ${fdsLoaded})`);
    const back = await eventually(() => child.fds() <= fdsAtStart + 3, 5000);
    t.ok(back, `open descriptors back to the baseline (${fdsAtStart} at start, ${child.fds()} now)`);

    const printed = child.out() + child.err();
    t.match(printed, /Incorrect API key provided: \[redacted\]/, 'the provider echoed the key, and it was scrubbed');
    t.notOk(printed.includes(KEY), 'no key in anything the child printed');
    t.notOk(printed.includes(KEY.slice(-10)), 'not even the end of it');
    t.notOk(printed.includes(CLIENT_TOKEN), 'no client token');
    t.equal(child.err(), '', 'nothing on stderr');
  },
);
