/**
 * The folders are the architecture (docs/architecture.md), so they must read downward: the
 * graph of which folder imports which, built from every import line (static, dynamic, types
 * included), has no cycle, and the layers are the ones the docs draw.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import t from 'tap';

const ROOT = join(import.meta.dirname, '..');
const TOPS = ['sidecar', 'probes', 'simulator'];

/** The folder a file belongs to: `sidecar/<folder>` inside the sidecar, else the top-level folder. */
function folderOf(file: string): string {
  const parts = relative(ROOT, file).split('/');
  if (parts[0] === 'sidecar') return parts.length > 2 ? `sidecar/${parts[1]}` : 'sidecar';
  return parts[0];
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** folder -> folders it imports, and one file that shows each edge. */
export function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const top of TOPS) {
    for (const file of sources(join(ROOT, top))) {
      const from = folderOf(file);
      for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
        const to = folderOf(normalize(join(dirname(file), m[1] ?? m[2])));
        if (to === from) continue;
        if (!graph.has(from)) graph.set(from, new Map());
        graph.get(from)?.set(to, relative(ROOT, file));
      }
    }
  }
  return graph;
}

t.test('no two folders import each other, and the folder graph has no cycle at all', async (t) => {
  const graph = folderGraph();
  const twoWay: string[] = [];
  for (const [a, outs] of graph)
    for (const [b, via] of outs) if (a < b && graph.get(b)?.has(a)) twoWay.push(`${a} <-> ${b} (${via}, ${graph.get(b)?.get(a)})`);
  t.same(twoWay, [], 'no two-way pair');
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (n: string, path: string[]) => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'open') {
      cycles.push([...path.slice(path.indexOf(n)), n].join(' -> '));
      return;
    }
    state.set(n, 'open');
    for (const next of graph.get(n)?.keys() ?? []) visit(next, [...path, n]);
    state.set(n, 'done');
  };
  for (const n of graph.keys()) visit(n, []);
  t.same(cycles, [], 'no cycle');
});

t.test('the vocabulary folder imports nothing of ours; health does not import probes', async (t) => {
  const graph = folderGraph();
  t.same([...(graph.get('sidecar/core')?.keys() ?? [])], [], 'sidecar/core is a leaf');
  t.notOk(graph.get('sidecar/health')?.has('probes'), 'health learns of probes through callbacks the runtime wires');
  t.notOk(
    graph.get('simulator')?.has('sidecar') || [...(graph.get('simulator')?.keys() ?? [])].some((k) => k.startsWith('sidecar')),
    'the simulators share no code with what they test',
  );
});
