/**
 * The request path's metrics are tallied by hand and formatted by prom-client at scrape time:
 * what Prometheus reads must be exactly what prom-client's own counters and histograms say.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import t from 'tap';
import { TalliedCounter, TalliedHistogram } from '../sidecar/observe/tally.ts';

const BUCKETS = [0.01, 0.1, 1];
const VALUES = [0.01, 0.015, 0.5, 1, 100, 0.001];

t.test('a tallied histogram scrapes exactly like prom-client observing the same values', async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const tallied = new TalliedHistogram({
    name: 'h_seconds',
    help: 'h',
    labelNames: ['route', 'outcome'],
    buckets: BUCKETS,
    registers: [ours],
  });
  const reference = new Histogram({
    name: 'h_seconds',
    help: 'h',
    labelNames: ['route', 'outcome'],
    buckets: BUCKETS,
    registers: [theirs],
  });
  for (const [i, v] of VALUES.entries()) {
    const outcome = i % 2 ? 'ok' : 'failed';
    tallied.observe(`/m|${outcome}`, () => ({ route: '/m', outcome }), v);
    reference.observe({ route: '/m', outcome }, v);
  }
  tallied.observe('/m|ok', () => ({ route: '/m', outcome: 'ok' }), Number.NaN); // ignored, never a NaN sum
  t.equal(await ours.metrics(), await theirs.metrics(), 'text exposition');
  t.same(JSON.parse(JSON.stringify(await ours.getMetricsAsJSON())), JSON.parse(JSON.stringify(await theirs.getMetricsAsJSON())), 'JSON');
  t.match(
    await ours.metrics(),
    /^h_seconds_bucket\{le="0.01",route="\/m",outcome="failed"\} 1$/m,
    'a value equal to a bound counts in its bucket',
  );
});

t.test('a tallied counter scrapes exactly like prom-client counting the same', async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const tallied = new TalliedCounter({ name: 'c_total', help: 'c', labelNames: ['code'], registers: [ours] });
  const reference = new Counter({ name: 'c_total', help: 'c', labelNames: ['code'], registers: [theirs] });
  for (const code of ['a', 'b', 'a', 'a']) {
    tallied.inc(code, () => ({ code }));
    reference.inc({ code });
  }
  tallied.inc('b', () => ({ code: 'b' }), 5);
  reference.inc({ code: 'b' }, 5);
  t.equal(await ours.metrics(), await theirs.metrics());
  t.equal(await ours.metrics(), await ours.metrics(), 'scraping twice does not count twice');
});
