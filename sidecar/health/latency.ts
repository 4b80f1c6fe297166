/**
 * Slowness with hysteresis, the owner of the `slow` flag: a model whose time to first token
 * stays over its slowThreshold for `unhealthyThreshold` samples in a row is flagged slow
 * (degraded, when nothing worse holds it); `healthyThreshold` fast samples in a row clear it.
 * Samples come from chat probes and from streamed real traffic alike.
 */
import type { ModelTarget } from '../config/plan.ts';
import type { Origin } from '../observe/events.ts';
import type { HealthView } from './view.ts';

export function observeFirstToken(view: HealthView, model: ModelTarget, ttftMs: number, origin?: Origin): void {
  view.recordLatency(model, { ttftMs });
  const h = view.get(model);
  const { slowThresholdMs } = model.health;
  const { healthyThreshold, unhealthyThreshold } = model.health.probe;
  if (ttftMs > slowThresholdMs) {
    h.slowStreak++;
    h.fastStreak = 0;
    if (!view.flag(model, 'slow') && h.slowStreak >= unhealthyThreshold)
      view.raise(
        model,
        'slow',
        `first token after ${Math.round(ttftMs)} ms, over the ${slowThresholdMs} ms threshold ${h.slowStreak} times in a row`,
        { origin },
      );
  } else {
    h.fastStreak++;
    h.slowStreak = 0;
    if (view.flag(model, 'slow') && h.fastStreak >= healthyThreshold)
      view.clear(model, 'slow', `first token within ${slowThresholdMs} ms ${h.fastStreak} times in a row`, { origin });
  }
}
