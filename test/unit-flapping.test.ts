/**
 * One failure in ten does not flap a model (docs/health.md: "the breaker's rolling window
 * decides, so one failure in ten does not flap the model"). A simulated minute of steady
 * traffic, 10 requests a second, on the real balancer, passive health and opossum breakers,
 * with the breaker's rolling window and resetTimeout driven by the mock clock. The primary fails
 * 10 % of its attempts at random (seeded: the same run every time); a failed attempt fails over
 * to the fallback, as the request path does. Probes are off, so the breaker's trial is a request.
 */
import t from 'tap';
import type { HealthEvent } from '../sidecar/observe/events.ts';
import { failure, PROBES_OFF, rig, seeded, settle, tick, unitPlan, useMockClock } from './support/unit.ts';

const RATE_PER_S = 10;
const STEP_MS = 1_000 / RATE_PER_S;
const MINUTE_MS = 60_000;
const FAILURE_RATE = 0.1;
const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/*
 * The bound, from the breaker's defaults (consecutiveFailures 5, window 10 s, over 50 % of at
 * least volumeThreshold 3 attempts, resetTimeout 10 s) at 10 attempts a second:
 * - the window holds about 100 attempts; over 50 % of them failing at p = 0.1 is a binomial tail
 *   of about 1e-23: never. Only while the window fills (a pod starting under traffic) can it tip:
 *   2 of the first 3 attempts failing, p = 3 * 0.1^2 * 0.9 + 0.1^3 = 2.8 % (3 of the first 4 or
 *   5 adds a few tenths of a percent);
 * - 5 failures in a row: p = 0.1^5 * 0.9 = 0.9e-5 per attempt, 600 attempts a minute: 0.5 %.
 * So about 3.5 % of simulated minutes open the breaker once, and two openings in one minute have
 * a probability near 0.035^2 / 2 = 0.06 %. An opening costs exactly two transitions (open, then
 * healthy after a successful trial; a failed trial, p = 0.1, keeps it open without a transition).
 * Bound per minute: at most 2 transitions (one opening and its recovery). Taken out for good would
 * be an opening not followed by a recovery: each must end within 3 resetTimeouts (two failed
 * trials in a row: p = 1 %), and the primary must still take at least 80 % of the first attempts
 * (one opening costs at most 30 s of 60 in the worst allowed case; the typical cost is 10 s).
 */
const MAX_TRANSITIONS = 2;
const MAX_OPEN_MS = 3 * 10_000 + 1_000;
const MIN_PRIMARY_SHARE = 0.8;

t.test('10 % random failures under steady traffic: no flapping, never out for good', async (t) => {
  const summary: string[] = [];
  for (const seed of SEEDS) {
    await t.test(`seed ${seed}`, async (t) => {
      useMockClock(t);
      const random = seeded(seed);
      const r = rig(
        t,
        unitPlan(
          [
            { name: 'primary', group: 0 },
            { name: 'fallback', group: 1 },
          ],
          PROBES_OFF,
        ),
      );
      const primary = r.model('primary');
      const fallback = r.model('fallback');
      const settings = r.backend.settings;
      const start = Date.now();
      const ofPrimary = () => r.transitions.filter((e: HealthEvent) => e.model === primary);
      let primaryFirst = 0;
      let failures = 0;
      let unserved = 0;
      for (let at = 0; at < MINUTE_MS; at += STEP_MS) {
        const cursor = r.balancer.cursor(r.backend);
        let served = false;
        for (let pick = cursor.next(); pick && !served; pick = cursor.next()) {
          if (pick.model === primary && cursor.tried.size === 1) primaryFirst++;
          if (pick.model === primary && random() < FAILURE_RATE) {
            failures++;
            r.passive.onFailure(primary, failure('upstream_5xx', { status: 503 }), settings);
            continue; // fails over, as the request path does
          }
          r.passive.onSuccess(pick.model, { stream: true, ttftMs: 300, totalMs: 1_200 });
          served = true;
        }
        if (!served) unserved++;
        await settle(); // opossum counts the outcome (a few microtasks after fire)
        tick(STEP_MS);
      }
      const requests = MINUTE_MS / STEP_MS;
      const events = ofPrimary();
      const opens = events.filter((e) => e.to === 'open');
      t.ok(
        failures > requests * 0.05 && failures < requests * 0.15,
        `about 10 % of the primary's attempts failed (${failures} of about ${requests})`,
      );
      t.equal(unserved, 0, 'every request was served (the fallback took the failed ones)');
      t.ok(
        events.length <= MAX_TRANSITIONS,
        `at most ${MAX_TRANSITIONS} transitions in the minute (${events.map((e) => `${e.to}@${e.at - start}ms`).join(', ') || 'none'})`,
      );
      for (const open of opens) {
        const back = events.find((e) => e.at > open.at && e.to === 'healthy');
        const outFor = (back?.at ?? Date.now()) - open.at;
        t.ok(outFor <= MAX_OPEN_MS, `opened at ${open.at - start} ms (${open.cause}): out for ${outFor} ms, back within ${MAX_OPEN_MS} ms`);
      }
      const share = primaryFirst / requests;
      t.ok(share >= MIN_PRIMARY_SHARE, `the primary took ${(share * 100).toFixed(1)} % of the first attempts`);
      t.ok(r.view.isUsable(fallback), 'the fallback was never harmed');
      summary.push(`seed ${seed}: ${failures} failures, ${events.length} transitions, primary ${(share * 100).toFixed(1)} %`);
    });
  }
  t.comment(summary.join('\n'));
});
