/**
 * Bounded by design: at most `maxConcurrent` requests are served upstream at once, at most
 * `maxQueued` wait for a slot (each for at most `queueTimeoutMs`), and anything beyond gets a
 * fast 503 with Retry-After instead of piling up memory. A request holds its slot from the
 * moment its body is read until its response ends.
 */
export type Admitted = { ok: true; release: () => void } | { ok: false; why: 'queue_full' | 'queue_timeout' | 'aborted' };

export class Admission {
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #queueTimeoutMs: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(maxConcurrent: number, maxQueued: number, queueTimeoutMs: number) {
    this.#maxConcurrent = maxConcurrent;
    this.#maxQueued = maxQueued;
    this.#queueTimeoutMs = queueTimeoutMs;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#waiting.length;
  }

  acquire(signal: AbortSignal): Admitted | Promise<Admitted> {
    if (this.#active < this.#maxConcurrent) {
      this.#active++;
      return { ok: true, release: this.#releaser() };
    }
    if (this.#waiting.length >= this.#maxQueued) return { ok: false, why: 'queue_full' };
    return new Promise((resolve) => {
      const wake = () => {
        cleanup();
        this.#active++;
        resolve({ ok: true, release: this.#releaser() });
      };
      const give = (why: 'queue_timeout' | 'aborted') => {
        cleanup();
        const i = this.#waiting.indexOf(wake);
        if (i !== -1) this.#waiting.splice(i, 1);
        resolve({ ok: false, why });
      };
      const timer = setTimeout(() => give('queue_timeout'), this.#queueTimeoutMs);
      const onAbort = () => give('aborted');
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(wake);
    });
  }

  #releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#active--;
      const next = this.#waiting.shift();
      if (next) next();
    };
  }
}
