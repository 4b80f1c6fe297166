/**
 * The options of a test that asserts the correct behaviour of a known product bug: tap's todo
 * (the test is listed, not run, and does not fail the suite), or, with `RUN_BUGS=1`, a plain
 * test that runs and fails until the bug is fixed (then drop the option).
 */
export function bug(summary: string): { todo?: string } {
  return process.env.RUN_BUGS ? {} : { todo: `bug: ${summary}` };
}
