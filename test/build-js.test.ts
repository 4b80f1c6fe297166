/**
 * The image ships the sidecar as JavaScript (scripts/build-js.ts, deploy/Dockerfile's build
 * stage): the build must leave nothing that needs type stripping, keep every line where it was
 * (stack traces), and the result must serve like the sources do.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import OpenAI from 'openai';
import t from 'tap';
import { SHIPPED, toJs } from '../scripts/build-js.ts';
import { startOpenAISimulator } from '../simulator/index.ts';
import { imageAppDir, ROOT, runSidecar } from './fixtures/deploy/k8s.ts';
import { HELLO } from './support/harness.ts';
import { backendYaml, LOOPBACK_SERVER, TEST_KEY } from './support/yaml.ts';

t.test('every shipped module is built, with only .js imports that exist, line for line', async (t) => {
  const app = imageAppDir();
  const sources = execFileSync('git', ['ls-files', ...SHIPPED.map((f) => `${f}/*.ts`)], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && !f.endsWith('.test.ts'));
  t.ok(sources.length > 50, `${sources.length} modules`);
  for (const src of sources) {
    const js = readFileSync(join(app, src.replace(/\.ts$/, '.js')), 'utf8');
    t.equal(js.split('\n').length, readFileSync(join(ROOT, src), 'utf8').split('\n').length, `${src}: same lines`);
    const specifiers = [...js.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]);
    const bad = specifiers.filter((s) => !s.endsWith('.js'));
    if (bad.length) t.fail(`${src} still imports ${bad.join(', ')}`);
    for (const s of specifiers) {
      const target = resolve(dirname(join(app, src)), s);
      if (!existsSync(target)) t.fail(`${src}: ${relative(app, target)} missing`);
    }
  }
});

t.test('type-only syntax goes, and only relative .ts specifiers are rewritten', async (t) => {
  const js = toJs(
    [
      "import type { A } from './a.ts';",
      "import { b, type C } from '../b.ts';",
      "export * from './c.ts';",
      "const d = await import('./d.ts');",
      "import x from 'pkg/file.ts';",
      "const s = 'not an import: ./e.ts';",
      'function f(n: number): string { return String(n as unknown); }',
    ].join('\n'),
  );
  t.notMatch(js, /import type|: number|as unknown|type C/, 'types stripped');
  t.match(js, /from '\.\.\/b\.js'/);
  t.match(js, /from '\.\/c\.js'/);
  t.match(js, /import\('\.\/d\.js'\)/);
  t.match(js, /from 'pkg\/file\.ts'/, 'a package path is left alone');
  t.match(js, /'not an import: \.\/e\.ts'/, 'a string that is not a specifier is left alone');
  t.throws(() => toJs('enum E { A }', 'x.ts'), /x\.ts/, 'syntax type stripping cannot erase is an error naming the file');
});

t.test('the built sidecar serves a chat request, as the image runs it', async (t) => {
  const sim = await startOpenAISimulator({ model: 'primary', apiKey: TEST_KEY });
  t.teardown(() => sim.close());
  const dir = imageAppDir();
  const config = join(dir, 'test-config.yaml');
  writeFileSync(config, backendYaml([{ name: 'primary', group: 0 }], { primary: sim.port }) + LOOPBACK_SERVER);
  const sidecar = await runSidecar(['node', '--max-old-space-size=64', 'sidecar/cli.js'], ['--config', config]);
  t.teardown(() => sidecar.stop());
  const client = new OpenAI({ baseURL: `${sidecar.proxyUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  const answer = await client.chat.completions.create({ model: undefined as unknown as string, messages: HELLO });
  t.equal(answer.choices[0].message.content, 'Hello from primary');
  const stream = await client.chat.completions.create({ model: undefined as unknown as string, messages: HELLO, stream: true });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, 'Hello from primary', 'streamed too');
  t.equal(await sidecar.stop(), 0, 'SIGTERM: a clean exit');
});
