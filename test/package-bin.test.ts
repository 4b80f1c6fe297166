/**
 * Following the README must not leave the tree dirty: npm sets the run bit of every `bin` on
 * the first `npx`/`npm exec`, so the bit is committed (git would otherwise show the file changed).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };

t.test('every bin of package.json is executable, in the checkout and in git', async (t) => {
  for (const [name, path] of Object.entries(pkg.bin)) {
    t.ok(statSync(join(root, path)).mode & 0o100, `${name}: ${path} has its run bit`);
    const index = spawnSync('git', ['ls-files', '-s', path], { cwd: root, encoding: 'utf8' });
    if (index.status !== 0 || index.stdout === '') continue; // not a git checkout (an unpacked tarball)
    t.match(index.stdout, /^100755 /, `${name}: committed as executable (mode 100755)`);
    t.match(readFileSync(join(root, path), 'utf8'), /^#!\/usr\/bin\/env node\n/, `${name}: starts with a node shebang`);
  }
});
