/**
 * Config changes without restarts. Kubernetes delivers a ConfigMap update by swapping the
 * `..data` symlink of the mounted folder; this notices (fs.watch, with a poll as a fallback for
 * filesystems that do not report), reads the whole configuration again, and hands over a new
 * Plan only when its content changed and it is valid. An invalid change is reported and the
 * running configuration stays. A problem that persists (the file deleted, an unreadable folder)
 * is reported once, then again only when it changes: a different problem, or the file back.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { type LoadOptions, loadPlan, readConfigSources, type SourceFile } from './load.ts';
import type { Plan } from './plan.ts';

/** What a look found: the same content, a new valid plan (handed to onPlan), an invalid one, or nothing readable. */
export type CheckResult = 'unchanged' | 'changed' | 'rejected' | 'unreadable';

export interface ConfigWatch {
  stop(): void;
  /**
   * Looks now (tests, SIGHUP). `explicit`: someone asked (SIGHUP), so a problem is reported
   * even when it was reported already.
   */
  check(explicit?: boolean): CheckResult;
}

export interface WatchHandlers {
  onPlan(plan: Plan): void;
  onRejected(err: unknown): void;
  /** The configuration is readable again after a reported problem, and unchanged. */
  onRecovered?(): void;
}

const problemOf = (err: unknown) => (err instanceof Error ? `${err.name}: ${err.message}` : String(err));

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
  /** The read failure reported last, while it lasts (undefined: the last look could read). */
  let unreadable: string | undefined;
  /** Why the content last read (digest `last`) is invalid; undefined: it loaded. */
  let invalid: unknown;
  const check = (explicit = false): CheckResult => {
    let sources: SourceFile[];
    try {
      sources = readConfigSources(path);
    } catch (err) {
      // mid-swap, the folder can be briefly empty: a later look decides. Reported once, not at every poll.
      const problem = problemOf(err);
      if (problem !== unreadable || explicit) handlers.onRejected(err);
      unreadable = problem;
      return 'unreadable';
    }
    const d = digest(sources);
    if (d === last) {
      if (unreadable !== undefined || explicit) {
        // back after a reported problem (or asked): say how it stands
        if (invalid !== undefined) handlers.onRejected(invalid);
        else if (unreadable !== undefined) handlers.onRecovered?.();
      }
      unreadable = undefined;
      return invalid !== undefined ? 'rejected' : 'unchanged';
    }
    last = d;
    unreadable = undefined;
    let plan: Plan;
    try {
      plan = loadPlan(sources, options);
    } catch (err) {
      invalid = err;
      handlers.onRejected(err);
      return 'rejected';
    }
    invalid = undefined;
    handlers.onPlan(plan);
    return 'changed';
  };
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => check(), 100);
    timer.unref();
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path, { persistent: false }, soon);
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined;
  }
  const poll = setInterval(() => check(), options.pollMs ?? 2_000);
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
