/**
 * Waiting without timing assertions: for a condition, for a health transition, or at most so
 * long for a promise. Tests assert outcomes; these only bound how long they wait for them.
 */
import type { Events, HealthEvent } from '../../sidecar/observe/events.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits for `p`, at most `ms` (the timer is cleared either way, so it never holds the process open). */
export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/** Polls `check` every 10 ms until it holds or `ms` passed; returns whether it held. */
export async function eventually(check: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (check()) return true;
    if (Date.now() > end) return false;
    await sleep(10);
  }
}

/** Resolves with the first health event that takes `model` to `to`; rejects after `ms`. */
export function waitForHealth(sidecar: { events: Events }, model: string, to: HealthEvent['to'], ms = 10_000): Promise<HealthEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sidecar.events.off('health', on);
      reject(new Error(`${model} did not become ${to} within ${ms} ms`));
    }, ms);
    const on = (e: HealthEvent) => {
      if (e.model.name !== model || e.to !== to) return;
      clearTimeout(timer);
      sidecar.events.off('health', on);
      resolve(e);
    };
    sidecar.events.on('health', on);
  });
}
