/**
 * The image, without a Docker engine (none on this machine): deploy/Dockerfile parsed and held to
 * its promises (Node 24 bases, production dependencies only, non-root, no HEALTHCHECK), every
 * file the entrypoints load is copied into their stage and passes the .dockerignore, every
 * package they import is a production dependency, and the ENTRYPOINT's node flags run the
 * entrypoints with this repository's Node 24, with a heap cap that fits the container's memory limit.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import { type Any, bytes, DEPLOY, entrypointCwd, entrypointOf, find, NODE, ROOT, readYaml } from './fixtures/deploy/k8s.ts';

const DOCKERFILE = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

interface Instruction {
  stage: string;
  op: string;
  args: string;
}

/** Instructions with their stage name; comments dropped, continuation lines joined. */
function instructions(text: string): Instruction[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const out: Instruction[] = [];
  let stage = '';
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === 'FROM') stage = /\sAS\s+(\S+)/i.exec(m[2])?.[1] ?? `stage${out.length}`;
    out.push({ stage, op: m[1], args: m[2] });
  }
  return out;
}

const INSTR = instructions(DOCKERFILE);
const stages = [...new Set(INSTR.map((i) => i.stage))];
const inStage = (stage: string, op: string) => INSTR.filter((i) => i.stage === stage && i.op === op);

/** COPY sources of a stage (not --from), as repository paths. */
function copied(stage: string): string[] {
  return inStage(stage, 'COPY')
    .filter((c) => !c.args.includes('--from='))
    .flatMap((c) =>
      c.args
        .split(/\s+/)
        .filter((a) => !a.startsWith('--'))
        .slice(0, -1),
    )
    .map((p) => p.replace(/\/$/, ''));
}

/** .dockerignore semantics enough for an allowlist: the last matching pattern decides. */
function ignored(path: string, patterns: string[]): boolean {
  let out = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const p = (negate ? raw.slice(1) : raw).replace(/\/$/, '');
    const re = new RegExp(
      `^${p
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '(.*/)?')
        .replace(/\*\*/g, '.*')
        .replace(/\*/g, '[^/]*')}(/.*)?$`,
    );
    if (re.test(path)) out = !negate;
  }
  return out;
}
const IGNORE = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

interface Closure {
  files: string[];
  packages: Set<string>;
}

/** Every module a script loads at run time: relative imports followed, packages collected; `import type` skipped (erased). */
function closure(entry: string): Closure {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    const specifiers: string[] = [];
    for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm))
      if (!m[2]) specifiers.push(m[4]);
    for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) specifiers.push(m[1]);
    for (const s of specifiers) {
      if (s.startsWith('node:')) continue;
      if (s.startsWith('.')) {
        const target = resolve(dirname(file), s);
        if (!existsSync(target)) throw new Error(`${relative(ROOT, file)} imports ${s}, which does not exist`);
        visit(target);
      } else packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]);
    }
  };
  visit(join(ROOT, entry));
  return { files: [...files].map((f) => relative(ROOT, f)), packages };
}

t.test('multi-stage, every base image is Node 24, the default target is the sidecar', async (t) => {
  const froms = INSTR.filter((i) => i.op === 'FROM');
  t.ok(froms.length >= 2, 'multi-stage');
  for (const f of froms)
    t.match(f.args.split(/\s+/)[0], /(^|\/)node:24([-.]|$)|nodejs24/, `${f.stage}: ${f.args.split(/\s+/)[0]} is Node 24`);
  t.equal(stages.at(-1), 'sidecar', 'a plain docker build gives the sidecar');
  t.ok(stages.includes('injector'), 'and --target injector the injector');
  t.same(
    INSTR.filter((i) => i.op === 'HEALTHCHECK'),
    [],
    'no HEALTHCHECK: Kubernetes probes the sidecar',
  );
});

t.test('production dependencies only, installed without scripts, in a build stage', async (t) => {
  const installs = INSTR.filter((i) => i.op === 'RUN' && /\bnpm\s+(ci|install|i)\b/.test(i.args));
  t.equal(installs.length, 1, 'one npm install');
  t.match(installs[0].args, /\bnpm ci\b/, 'npm ci: exactly the lock file');
  t.match(installs[0].args, /--omit=dev\b/, '--omit=dev: no devDependencies (not the `node` package, not tap)');
  t.match(installs[0].args, /--ignore-scripts\b/, 'no install scripts');
  t.notOk(['sidecar', 'injector'].includes(installs[0].stage), 'not in a runtime stage');
  t.ok(
    inStage('sidecar', 'COPY').some((c) => c.args.includes(`--from=${installs[0].stage}`) && c.args.includes('node_modules')),
    'the sidecar takes node_modules from that stage',
  );
  t.notOk(
    inStage('injector', 'COPY').some((c) => c.args.includes('node_modules')),
    'the injector needs no node_modules',
  );
  t.ok('node' in PKG.devDependencies && !('node' in PKG.dependencies), 'the `node` package is a devDependency, so it is left out');
});

t.test('runtime stages run as a numeric non-root user', async (t) => {
  for (const stage of ['sidecar', 'injector']) {
    const users = inStage(stage, 'USER');
    t.equal(users.length, 1, `${stage}: one USER`);
    const uid = users[0]?.args.split(':')[0];
    t.match(uid, /^\d+$/, `${stage}: numeric, so the kubelet can enforce runAsNonRoot`);
    t.not(Number(uid), 0, `${stage}: not root`);
  }
});

// the sidecar runs JavaScript the build stage makes from its TypeScript; the injector its TypeScript
for (const [stage, script, source, sourceStage, pattern] of [
  ['sidecar', 'sidecar/cli.js', 'sidecar/cli.ts', 'build', /^llm-failover-sidecar /],
  ['injector', 'deploy/injector/server.ts', 'deploy/injector/server.ts', 'injector', /^llm-failover-injector --cert/],
] as const) {
  t.test(`${stage}: the ENTRYPOINT runs ${script}, and everything it loads is in the image`, async (t) => {
    const entrypoint = entrypointOf(DOCKERFILE, stage);
    t.match(entrypoint[0], /(^|\/)node$/, 'node runs it');
    t.equal(entrypoint.at(-1), script);
    t.ok(existsSync(join(ROOT, source)), `${source} exists`);
    for (const src of copied(sourceStage)) t.ok(existsSync(join(ROOT, src)), `COPY ${src}: exists`);
    t.ok(
      copied(stage).includes('package.json') || inStage(stage, 'COPY').some((c) => c.args.includes(`--from=${sourceStage}`)),
      'package.json ("type": "module") is in the stage',
    );
    if (sourceStage !== stage) {
      t.ok(
        inStage(sourceStage, 'RUN').some((r) => /\bnode scripts\/build-js\.ts --out (\S+)/.test(r.args)),
        `the ${sourceStage} stage strips the types with scripts/build-js.ts`,
      );
      t.ok(
        inStage(stage, 'COPY').some((c) => c.args.includes(`--from=${sourceStage}`)),
        `${stage} takes its code from the ${sourceStage} stage`,
      );
    }

    const { files, packages } = closure(source);
    t.ok(files.length > 0);
    const outside = files.filter((f) => !copied(sourceStage).some((src) => f === src || f.startsWith(`${src}/`)));
    t.same(outside, [], `every module ${source} loads is copied into the ${sourceStage} stage (${files.length} files)`);
    const ignoredFiles = [...files, ...copied(sourceStage), 'package.json'].filter((f) => ignored(f, IGNORE));
    t.same(ignoredFiles, [], 'none is excluded by deploy/Dockerfile.dockerignore');
    if (stage === 'injector') t.same([...packages], [], 'the injector imports no package at run time');
    else {
      const notProd = [...packages].filter((p) => !(p in PKG.dependencies));
      t.same(notProd, [], `every package it imports is a production dependency (${[...packages].sort().join(', ')})`);
    }

    const flags = entrypoint.slice(1, -1);
    const help = spawnSync(NODE, [...flags, script, '--help'], { cwd: entrypointCwd(entrypoint), encoding: 'utf8', timeout: 20_000 });
    t.equal(help.status, 0, `node ${[...flags, script].join(' ')} --help exits 0: Node 24 accepts the flags and runs it`);
    t.match(help.stdout, pattern);
  });
}

t.test("the ENTRYPOINT's heap cap fits the memory limit of the manifests", async (t) => {
  const heapCap = (stage: string) => {
    const flags = entrypointOf(DOCKERFILE, stage).slice(1, -1);
    const r = spawnSync(NODE, [...flags, '-p', 'require("node:v8").getHeapStatistics().heap_size_limit'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    return Number(r.stdout.trim());
  };
  const sidecarLimit = bytes(
    find(readYaml(join(DEPLOY, 'kubernetes/deployment.yaml')), 'Deployment').spec.template.spec.initContainers[0].resources.limits.memory,
  );
  const injectorLimit = bytes(
    (find(readYaml(join(DEPLOY, 'injector/manifests/injector.yaml')), 'Deployment').spec.template.spec.containers as Any[]).find(
      (c) => c.name === 'injector',
    ).resources.limits.memory,
  );
  const MiB = 1024 * 1024;
  for (const [stage, limit] of [
    ['sidecar', sidecarLimit],
    ['injector', injectorLimit],
  ] as const) {
    const cap = heapCap(stage);
    t.ok(cap > 16 * MiB, `${stage}: heap cap ${Math.round(cap / MiB)} MiB`);
    // Measured beside the heap: ~40 MB of native memory and ~55-60 MB of the node binary's pages.
    t.ok(
      limit - cap >= 64 * MiB,
      `${stage}: ${Math.round((limit - cap) / MiB)} MiB of the ${Math.round(limit / MiB)} MiB limit left beside the heap (>= 64)`,
    );
  }
});

t.test('the .dockerignore is an allowlist: no node_modules, tests, git history or local files reach the builder', async (t) => {
  const stat = statSync(join(DEPLOY, 'Dockerfile.dockerignore'));
  t.ok(stat.isFile(), 'deploy/Dockerfile.dockerignore, the name BuildKit looks for beside deploy/Dockerfile');
  for (const p of [
    'node_modules/undici/index.js',
    '.git/HEAD',
    'test/config.test.ts',
    'bench/run.ts',
    '.scratch/dual.ts',
    '.env',
    'docs/kubernetes.md',
    'sidecar/x.test.ts',
  ]) {
    t.ok(ignored(p, IGNORE), `${p} is excluded`);
  }
  for (const p of ['package.json', 'package-lock.json', 'sidecar/cli.ts', 'scripts/build-js.ts', 'deploy/injector/server.ts'])
    t.notOk(ignored(p, IGNORE), `${p} is included`);
});
