#!/usr/bin/env node
/**
 * The sidecar as the image ships it: the TypeScript of sidecar/, probes/ and simulator/ with its
 * types stripped (node's own `stripTypeScriptTypes`, the very transform type stripping applies
 * at run time) and relative `.ts` imports pointed at `.js`.
 *
 *   node scripts/build-js.ts [--out dist]
 *
 * Why: running .ts makes node load its TypeScript stripper (a WebAssembly build of swc) into
 * every process, about 17 MB of RSS, and strip every file at each start unless a compile cache
 * is warm, which a pod with a read-only root filesystem never has (docs/performance.md). The
 * output is the same code, line for line (types become blanks), so stack traces keep their lines.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
/** What the image runs (the Dockerfile copies the same folders into its build stage). */
export const SHIPPED = ['sidecar', 'probes', 'simulator'];

/** A relative import or export specifier ending in .ts, static or dynamic. */
const TS_SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"\n]+)\.ts\2/g;

/** One module: types stripped, relative .ts specifiers rewritten to .js. */
export function toJs(source: string, file = 'module.ts'): string {
  let js: string;
  try {
    js = stripTypeScriptTypes(source, { mode: 'strip' });
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  return js.replace(TS_SPECIFIER, (_all, lead: string, quote: string, path: string) => `${lead}${quote}${path}.js${quote}`);
}

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) yield path;
  }
}

/** Writes the shipped folders as JavaScript under `out` (emptied first), with package.json. Returns the files written. */
export function buildJs(out: string, root = ROOT): string[] {
  const target = resolve(out);
  rmSync(target, { recursive: true, force: true });
  const written: string[] = [];
  for (const folder of SHIPPED) {
    for (const file of sources(join(root, folder))) {
      const dest = join(target, relative(root, file)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, toJs(readFileSync(file, 'utf8'), relative(root, file)));
      written.push(dest);
    }
  }
  // "type": "module", and the version the CLI prints
  writeFileSync(join(target, 'package.json'), readFileSync(join(root, 'package.json')));
  return written;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist') } } });
  const files = buildJs(values.out!);
  process.stdout.write(`${files.length} modules written to ${relative(process.cwd(), resolve(values.out!)) || '.'}\n`);
}
