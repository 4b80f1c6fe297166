/**
 * One stage of deploy/Dockerfile as the image runs it: its ENTRYPOINT and its ENV. Read by the
 * bench (to run every process as deployed) and by the deploy tests (to run the entrypoints).
 */
export interface DockerStage {
  /** The exec-form ENTRYPOINT: the node binary, its flags, the script. */
  entrypoint: string[];
  /** `ENV KEY=value` lines. */
  env: Record<string, string>;
}

export function dockerStage(dockerfile: string, stage: string): DockerStage {
  const body = dockerfile
    .split(/^FROM /m)
    .slice(1)
    .find((s) => new RegExp(`^\\S+\\s+AS\\s+${stage}\\s*$`, 'im').test(s.split('\n')[0]));
  if (!body) throw new Error(`no stage ${stage}`);
  const line = body.split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  if (!line) throw new Error(`stage ${stage} has no ENTRYPOINT`);
  const env: Record<string, string> = {};
  for (const m of body.matchAll(/^ENV\s+([A-Z_][A-Z0-9_]*)=(\S+)\s*$/gm)) env[m[1]] = m[2];
  return { entrypoint: JSON.parse(line.slice('ENTRYPOINT '.length)) as string[], env };
}
