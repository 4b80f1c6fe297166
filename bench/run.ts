#!/usr/bin/env node
/**
 * `npm run bench` — the sidecar against the floor (bench/floor.ts: the least a Node.js reverse
 * proxy can do), both in front of the same cheap upstream (nginx with canned answers), on this
 * machine, in the same run. docs/performance.md explains the method and the numbers.
 *
 *   npm run bench                  full run (3 rounds, about 5 minutes on 2 cores)
 *   npm run bench -- --quick       one short round (about a minute)
 *   npm run bench -- --rounds 5 --only floor,sidecar
 *   npm run bench -- failover      the failover bench (bench/failover.ts)
 *   npm run bench -- profile       CPU profiles of the sidecar under saturation (bench/profile.ts)
 *
 * The proxy under test runs alone on core 0 (taskset -c 0); nginx, the load generators and this
 * script share core 1. Systems alternate round by round; every figure is the median of the
 * rounds, printed beside its ratio to the floor. Results: bench/results/latest.json.
 */
// This file is the command line: flags, the subcommands, the order of the rounds, and printing.
// What is started is bench/systems.ts, how it is measured bench/measure.ts, what is printed and
// written bench/report.ts.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { type Aggregate, aggregate, FULL, QUICK, type RunResult, runSystem, type Settings } from './measure.ts';
import { buildImageJs, ensureTools, imageEnv, imageNodeFlags, installCleanup, LOAD_CORE, NODE, nodeVersionOk, pinSelf } from './proc.ts';
import { header, machine, progressLine, report, trailer, writeResults } from './report.ts';
import { chooseSystems, startRig, stopRig, systems } from './systems.ts';

async function main(): Promise<void> {
  // the subcommands parse their own options
  if (process.argv[2] === 'failover') {
    const { main: failover } = await import('./failover.ts');
    return failover(process.argv.slice(3));
  }
  if (process.argv[2] === 'profile') {
    const { main: profile } = await import('./profile.ts');
    return profile(process.argv.slice(3));
  }
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      only: { type: 'string' },
      'node-flags': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(
      readFileSync(new URL(import.meta.url), 'utf8')
        .split('*/')[0]
        .replace(/^#!.*\n\/\*\*\n/, '')
        .replace(/^ \* ?/gm, ''),
    );
    return;
  }
  if (positionals.length > 0) throw new Error(`unknown command ${positionals[0]}: use failover, profile or nothing`);

  if (cpus().length < 2) throw new Error('the bench needs 2 cores (proxy on core 0, load on core 1)');
  if (!nodeVersionOk()) throw new Error(`${NODE} is not Node.js 24+: run npm ci first`);
  ensureTools();
  installCleanup();
  pinSelf(LOAD_CORE);
  const s: Settings = { ...(values.quick ? QUICK : FULL) };
  if (values.rounds) s.rounds = Number(values.rounds);
  s.nodeFlags = values['node-flags'] !== undefined ? values['node-flags'].split(/\s+/).filter(Boolean) : imageNodeFlags();
  s.env = imageEnv();
  s.cli = buildImageJs();

  const started = performance.now();
  const rig = await startRig();
  const all = systems(rig.nginx.port, rig.pacedPort, {
    openai: rig.nginx.canned.openaiEvents,
    anthropic: rig.nginx.canned.anthropicEvents,
  });
  const chosen = chooseSystems(all, values.only?.split(','), values.quick);
  const m = machine();
  process.stdout.write(header(m, s, chosen, values['node-flags'] === undefined));

  const runs: RunResult[] = [];
  let exports = { requests: 0, bytes: 0 };
  try {
    for (let round = 0; round < s.rounds; round++) {
      // rotate the order each round so no system always runs first or last
      const order = chosen.map((_, i) => chosen[(i + round) % chosen.length]);
      for (const sys of order) {
        const t0 = performance.now();
        const r = await runSystem(sys, round + 1, s, rig);
        runs.push(r);
        process.stdout.write(progressLine(round + 1, sys, r, performance.now() - t0));
      }
    }
  } finally {
    exports = rig.nginx.otlpExports();
    await stopRig(rig);
  }
  const agg: Record<string, Aggregate> = {};
  for (const sys of chosen) agg[sys.id] = aggregate(runs.filter((r) => r.system === sys.id));
  const { text, targets } = report(chosen, agg, s);
  process.stdout.write(`\n${text}\n`);
  process.stdout.write(trailer(chosen, runs, s, exports));
  process.stdout.write(`\n${((performance.now() - started) / 1000).toFixed(0)} s in all\n`);

  const file = writeResults(m, s, chosen, agg, text, targets, exports, runs);
  process.stdout.write(`results: ${file}\n`);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
