/**
 * Config changes without restarts. Kubernetes delivers a ConfigMap update by swapping the
 * `..data` symlink of the mounted folder; this notices (fs.watch, with a poll as a fallback for
 * filesystems that do not report), reads the whole configuration again, and hands over a new
 * Plan only when its content changed and it is valid. An invalid change is reported and the
 * running configuration stays.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { type LoadOptions, loadPlan, readConfigSources, type SourceFile } from './load.ts';
import type { Plan } from './plan.ts';

export interface ConfigWatch {
  stop(): void;
  /** Looks now (tests, SIGHUP). */
  check(): void;
}

export interface WatchHandlers {
  onPlan(plan: Plan): void;
  onRejected(err: unknown): void;
}

function digest(sources: SourceFile[]): string {
  const h = createHash('sha256');
  for (const s of sources) h.update(s.name).update('\0').update(s.text).update('\0');
  return h.digest('hex');
}

export function watchConfig(path: string, options: LoadOptions & { pollMs?: number }, handlers: WatchHandlers): ConfigWatch {
  let last: string | undefined;
  try {
    last = digest(readConfigSources(path));
  } catch {
    last = undefined;
  }
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    let sources: SourceFile[];
    try {
      sources = readConfigSources(path);
    } catch (err) {
      // mid-swap, the folder can be briefly empty: a later look decides
      handlers.onRejected(err);
      return;
    }
    const d = digest(sources);
    if (d === last) return;
    last = d;
    let plan: Plan;
    try {
      plan = loadPlan(sources, options);
    } catch (err) {
      handlers.onRejected(err);
      return;
    }
    handlers.onPlan(plan);
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(check, 100);
    timer.unref();
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path, { persistent: false }, soon);
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined;
  }
  const poll = setInterval(check, options.pollMs ?? 2_000);
  poll.unref();
  return {
    stop() {
      clearInterval(poll);
      clearTimeout(timer);
      watcher?.close();
    },
    check,
  };
}
