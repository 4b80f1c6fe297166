/**
 * Tools some tests drive (Prometheus, promtool, kubectl's kustomize). Where one is missing a
 * test skips, and says so; under CI (`CI=true`, as `.ci/run` runs) it fails instead: CI
 * installs every tool the suite needs, so a missing one is a broken install, not a skip.
 */
import { spawnSync } from 'node:child_process';

export function hasTool(command: string, args: string[] = ['--version']): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

/** tap's `skip` option for a test that needs `command`: false where it runs (always under CI), else why not. */
export function unlessTool(available: boolean, why: string): false | string {
  if (available) return false;
  if (process.env.CI === 'true') throw new Error(`${why}, and CI must run every test (.ci/run installs the tools)`);
  return why;
}
