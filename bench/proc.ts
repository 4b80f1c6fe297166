/**
 * Processes for the bench: spawn pinned to a core, read CPU time and memory from /proc, wait
 * for a port, and kill every child we started (on success, on error and on Ctrl-C).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildJs } from '../scripts/build-js.ts';
import { type DockerStage, dockerStage } from '../scripts/dockerfile.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Node 24 from the project (the system node may be older). */
export const NODE = existsSync(join(ROOT, 'node_modules/.bin/node')) ? join(ROOT, 'node_modules/.bin/node') : process.execPath;
/** The core the proxy under test runs on, and the core for everything else. */
export const PROXY_CORE = 0;
export const LOAD_CORE = 1;

const TICK_MS = 1000 / Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

const children = new Set<ChildProcess>();

export interface Spawned {
  child: ChildProcess;
  pid: number;
  /** performance.now() just before spawn. */
  startedAt: number;
  /** Everything the child wrote to stderr (bounded), for error messages. */
  stderr(): string;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

/** Spawns `cmd args` pinned to `core` with taskset (taskset execs, so the pid is the program's own). */
export function spawnPinned(
  core: number,
  cmd: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; stdout?: 'ignore' | 'pipe'; cwd?: string } = {},
): Spawned {
  const startedAt = performance.now();
  const child = spawn('taskset', ['-c', String(core), cmd, ...args], {
    env: options.env ?? process.env,
    stdio: ['ignore', options.stdout ?? 'ignore', 'pipe'],
    cwd: options.cwd ?? ROOT,
  });
  children.add(child);
  let err = '';
  child.stderr?.on('data', (c: Buffer) => {
    if (err.length < 20_000) err += c.toString();
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? -1);
    });
  });
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  const pid = child.pid;
  return {
    child,
    pid,
    startedAt,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Kills every child still running (SIGKILL): the last line of defence on errors and signals. */
export function killAll(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

let installed = false;
/** Kill children on exit, Ctrl-C and SIGTERM. */
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping every process it started\n`);
      killAll();
      process.exit(130);
    });
  }
}

/** Pins this process (the orchestrator) to the load core so it never runs on the proxy's core. */
export function pinSelf(core: number): void {
  spawnSync('taskset', ['-pc', String(core), String(process.pid)], { stdio: 'ignore' });
}

/** utime + stime of every thread of the process, in ms. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the comm field may hold spaces: fields after the closing paren
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** VmRSS, VmHWM (peak RSS) and RssAnon (private memory, without the binary's file pages) in MB. */
export function memory(pid: number): { rssMB: number; hwmMB: number; anonMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024, anonMB: kb('RssAnon') / 1024 };
}

/** The sidecar stage of deploy/Dockerfile: its ENTRYPOINT and ENV, as the image runs it. */
function imageStage(): DockerStage {
  try {
    return dockerStage(readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8'), 'sidecar');
  } catch {
    return { entrypoint: [], env: {} };
  }
}

/**
 * The node flags the sidecar's image starts node with (deploy/Dockerfile's ENTRYPOINT, between
 * node and the script): the bench runs every Node.js process under test with them, so memory
 * and CPU are measured as deployed.
 */
export function imageNodeFlags(): string[] {
  return imageStage().entrypoint.slice(1, -1);
}

/** The environment the image sets (its ENV lines: GLIBC_TUNABLES, NODE_ENV), given to every process under test. */
export function imageEnv(): Record<string, string> {
  return imageStage().env;
}

/**
 * The sidecar as the image ships it: JavaScript built by scripts/build-js.ts, under the
 * repository (packages resolve from its node_modules). Returns the CLI's path, relative to ROOT.
 */
export function buildImageJs(): string {
  const out = join(ROOT, '.scratch/bench-js');
  buildJs(out);
  return relative(ROOT, join(out, 'sidecar/cli.js'));
}

/** Busy and total jiffies of one core, from /proc/stat. */
export function coreTimes(core: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `));
  if (!line) return { busy: 0, total: 0 };
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Busy share (0..1) of each core between two snapshots. */
export function coreBusy(before: ReturnType<typeof coreTimes>, after: ReturnType<typeof coreTimes>): number {
  const total = after.total - before.total;
  return total > 0 ? (after.busy - before.busy) / total : 0;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `url` until it answers 200; returns performance.now() at that moment. */
export async function waitReady(url: string, spawned: Spawned | undefined, timeoutMs = 20_000, everyMs = 5): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (spawned && spawned.child.exitCode !== null)
      throw new Error(`process exited with ${spawned.child.exitCode} before it was ready:\n${spawned.stderr()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return performance.now();
    } catch {
      // not listening yet
    }
    if (performance.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms${spawned ? `:\n${spawned.stderr()}` : ''}`);
    await sleep(everyMs);
  }
}

/** Which of these commands are missing from PATH. */
export function missingCommands(cmds: string[]): string[] {
  return cmds.filter((c) => spawnSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' }).status !== 0);
}

/**
 * wrk, nginx and taskset come from Debian. As root with apt-get they are installed on the spot;
 * otherwise the bench says what to install and stops.
 */
export function ensureTools(): void {
  const need: Record<string, string> = { wrk: 'wrk', nginx: 'nginx-light', taskset: 'util-linux' };
  let missing = missingCommands(Object.keys(need));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((c) => need[c]))];
  const root = process.getuid?.() === 0;
  if (root && missingCommands(['apt-get']).length === 0) {
    process.stderr.write(`bench: installing ${pkgs.join(' ')} from Debian (apt-get)...\n`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
      execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
    } catch {
      // reported below
    }
    missing = missingCommands(Object.keys(need));
  }
  if (missing.length > 0) {
    process.stderr.write(`bench: missing ${missing.join(', ')}. Install them first, e.g.\n  sudo apt-get install -y ${pkgs.join(' ')}\n`);
    process.exit(2);
  }
}

export function nodeVersionOk(): boolean {
  const v = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim();
  return /^v(2[4-9]|[3-9]\d)\./.test(v);
}

/** user + nice + system jiffies of every core (irq and softirq left out: the kernel's share of our own traffic). */
function busyJiffies(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  return v[0] + v[1] + v[2];
}

function selfAndChildrenMs(): number {
  let total = 0;
  const self = readFileSync('/proc/self/stat', 'utf8');
  const f = self.slice(self.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime: exited children we waited for are in the last two
  total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_MS;
  for (const c of children) {
    if (c.pid === undefined) continue;
    try {
      total += cpuMs(c.pid);
    } catch {
      // exited between the listing and the read: counted in cutime next time
    }
  }
  return total;
}

/**
 * CPU used by processes this bench did not start (other people's test runs on a shared
 * machine), as a share of one core: a measurement taken while it is high is disturbed.
 */
export class ForeignCpu {
  #busy = busyJiffies();
  #mine = selfAndChildrenMs();
  #at = performance.now();

  /** Foreign CPU since construction (or the last reset), in cores (0..2). */
  read(): number {
    const busyMs = (busyJiffies() - this.#busy) * TICK_MS;
    const mineMs = selfAndChildrenMs() - this.#mine;
    const wall = performance.now() - this.#at;
    return wall > 0 ? Math.max(0, busyMs - mineMs) / wall : 0;
  }

  reset(): void {
    this.#busy = busyJiffies();
    this.#mine = selfAndChildrenMs();
    this.#at = performance.now();
  }
}

/** Waits (up to maxWaitMs) until other processes use less than `threshold` of a core over 500 ms. */
export async function waitQuiet(threshold = 0.05, maxWaitMs = 30_000): Promise<{ waitedMs: number; foreign: number }> {
  const start = performance.now();
  let said = false;
  for (;;) {
    const f = new ForeignCpu();
    await sleep(500);
    const foreign = f.read();
    if (foreign < threshold || performance.now() - start > maxWaitMs) return { waitedMs: performance.now() - start, foreign };
    if (!said) {
      process.stderr.write(
        `bench: other processes use ${(foreign * 100).toFixed(0)}% of a core; waiting up to ${maxWaitMs / 1000} s for quiet...\n`,
      );
      said = true;
    }
  }
}

/** Polls until something accepts TCP connections on host:port; returns performance.now() then. */
export async function waitPort(port: number, spawned?: Spawned, timeoutMs = 20_000, everyMs = 5): Promise<number> {
  const { connect } = await import('node:net');
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (spawned && spawned.child.exitCode !== null)
      throw new Error(`process exited with ${spawned.child.exitCode} before it listened:\n${spawned.stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return performance.now();
    if (performance.now() > deadline) throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}
