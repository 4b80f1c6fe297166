/**
 * Request-path metrics kept as plain numbers per label set, handed to prom-client at scrape
 * time. prom-client hashes and validates the labels on every `inc()` / `observe()`, even on a
 * cached child (about 13 µs per request for the five updates a request made, `npm run bench --
 * profile`); here a label set is looked up once per request by a key the caller already has, and
 * recording is an addition. What Prometheus scrapes is the same counters and histograms.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

type Labels = Record<string, string>;

interface Config<T extends string> {
  name: string;
  help: string;
  labelNames: readonly T[];
  registers: Registry[];
}

/** Series by key: the key must determine every label; `labels()` is called once, on first use. */
class SeriesMap<S> {
  readonly #series = new Map<string, S>();
  readonly #make: (labels: Labels) => S;

  constructor(make: (labels: Labels) => S) {
    this.#make = make;
  }

  get(key: string, labels: () => Labels): S {
    let s = this.#series.get(key);
    if (s === undefined) {
      s = this.#make(labels());
      this.#series.set(key, s);
    }
    return s;
  }

  values(): IterableIterator<S> {
    return this.#series.values();
  }
}

export interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

/** A prom-client Counter whose series the request path increments directly. */
export class TalliedCounter<T extends string> {
  readonly #series = new SeriesMap<CounterSeries>((labels) => ({ labels, value: 0 }));

  constructor(config: Config<T>) {
    const series = this.#series;
    new Counter({
      ...config,
      labelNames: [...config.labelNames],
      collect() {
        this.reset();
        for (const s of series.values()) this.inc(s.labels as Partial<Record<T, string>>, s.value);
      },
    });
  }

  inc(key: string, labels: () => Labels, by = 1): void {
    this.#series.get(key, labels).value += by;
  }
}

export interface HistogramSeries {
  readonly labels: Labels;
  /** Observations per bucket (not cumulative); the last one counts values above every bound. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** A prom-client Histogram whose buckets the request path counts directly. */
export class TalliedHistogram<T extends string> {
  readonly #bounds: readonly number[];
  readonly #series: SeriesMap<HistogramSeries>;

  constructor(config: Config<T> & { buckets: readonly number[] }) {
    const bounds = [...config.buckets].sort((a, b) => a - b);
    this.#bounds = bounds;
    this.#series = new SeriesMap((labels) => ({ labels, counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 }));
    new SeriesHistogram({ ...config, labelNames: [...config.labelNames], buckets: bounds }, this.#series);
  }

  observe(key: string, labels: () => Labels, value: number): void {
    if (!Number.isFinite(value)) return;
    const s = this.#series.get(key, labels);
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }
}

/**
 * prom-client's Histogram, exported from our series instead of its own per-observe state: the
 * registry (text format) and `get()` (JSON) both read `getForPromString()`, which prom-client's
 * Histogram defines and this replaces, in the shape prom-client's own produces.
 */
class SeriesHistogram extends Histogram<string> {
  readonly #source: SeriesMap<HistogramSeries>;
  readonly #bounds: number[];
  readonly #name: string;
  readonly #help: string;

  constructor(
    config: { name: string; help: string; labelNames: string[]; buckets: number[]; registers: Registry[] },
    source: SeriesMap<HistogramSeries>,
  ) {
    super(config);
    this.#source = source;
    this.#bounds = config.buckets;
    this.#name = config.name;
    this.#help = config.help;
  }

  async getForPromString() {
    const values: { labels: Record<string, string | number>; sharedLabels: Labels; value: number; metricName: string; exemplar?: null }[] =
      [];
    const bucket = `${this.#name}_bucket`;
    for (const s of this.#source.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += s.counts[i];
        values.push({ labels: { le: this.#bounds[i] }, sharedLabels: s.labels, value: cumulative, metricName: bucket, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.#name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.#name}_count` });
    }
    return { name: this.#name, help: this.#help, type: 'histogram', values, aggregator: 'sum' };
  }
}
