/**
 * Slowness with hysteresis: a model whose time to first token stays over its slowThreshold for
 * `unhealthyThreshold` samples in a row is degraded; `healthyThreshold` fast samples in a row
 * bring it back. Samples come from chat probes and from streamed real traffic alike.
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
    if (h.state === 'healthy' && h.slowStreak >= unhealthyThreshold)
      view.set(model, 'degraded', `first token after ${Math.round(ttftMs)} ms, over the ${slowThresholdMs} ms threshold ${h.slowStreak} times in a row`, { origin });
  } else {
    h.fastStreak++;
    h.slowStreak = 0;
    if (h.state === 'degraded' && h.fastStreak >= healthyThreshold)
      view.set(model, 'healthy', `first token within ${slowThresholdMs} ms ${h.fastStreak} times in a row`, { origin });
  }
}
