/**
 * The sidecar as users run it: `node sidecar/cli.ts` as a child process (the CLI's output,
 * exit code, RSS and open descriptors read from /proc), started and stopped by PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type tap from 'tap';
import { eventually } from './wait.ts';

export const CLI = join(import.meta.dirname, '../../sidecar/cli.ts');

/** A tap (sub)test, as the callbacks of t.test receive it. */
export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0];

export interface ChildSidecar {
  child: ChildProcess;
  pid: number;
  /** host:port of the proxy and of the admin address, from the "sidecar ready" line. */
  listen: string;
  admin: string;
  url: string;
  adminUrl: string;
  out(): string;
  err(): string;
  /** Resident set size in bytes, from /proc/<pid>/status. */
  rss(): number;
  /** Open file descriptors, from /proc/<pid>/fd. */
  fds(): number;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/** The V8 flags the sidecar's image runs with (deploy/Dockerfile). */
export const IMAGE_NODE_FLAGS = ['--max-old-space-size=64', '--max-semi-space-size=8'];

export function spawnCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  nodeFlags: string[] = [],
): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

/** Starts `node sidecar/cli.ts --config <file> ...` and waits for its "sidecar ready" line. */
export async function startChildSidecar(
  config: string,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
  nodeFlags: string[] = [],
): Promise<ChildSidecar> {
  const hasListen = extraArgs.includes('--listen');
  const args = ['--config', config, ...(hasListen ? [] : ['--listen', '127.0.0.1:0']), '--admin', '127.0.0.1:0', ...extraArgs];
  const p = spawnCli(args, env, nodeFlags);
  let exitCode: number | null | undefined;
  void p.exited.then((c) => (exitCode = c));
  const ready = await eventually(() => /"msg":"sidecar ready"/.test(p.out()) || exitCode !== undefined, 15_000);
  const line = p
    .out()
    .split('\n')
    .find((l) => l.includes('"msg":"sidecar ready"'));
  if (!ready || !line) {
    p.child.kill('SIGKILL');
    throw new Error(`the child sidecar did not start (exit ${exitCode}): ${p.err().slice(0, 2000)} ${p.out().slice(0, 2000)}`);
  }
  const { listen, admin } = JSON.parse(line) as { listen: string; admin: string };
  const pid = p.child.pid!;
  return {
    child: p.child,
    pid,
    listen,
    admin,
    url: `http://${listen}`,
    adminUrl: `http://${admin}`,
    out: p.out,
    err: p.err,
    rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024,
    fds: () => readdirSync(`/proc/${pid}/fd`).length,
    exited: p.exited,
    kill: (signal = 'SIGKILL') => {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
    },
  };
}
