/**
 * Fault injection for the crash tests: STRATA_FAULT=<point>:<ms> makes the
 * process sleep at that point so a test can SIGKILL it there. Points:
 * 'ref-move' (createCommit, inside its transaction), 'rollback' (inside
 * rollback's transaction, after the ref move), 'gc-delete' (gc, after its
 * transaction committed, before any blob file is deleted). Unset in
 * production: a no-op.
 */
export function faultPoint(name: string): void {
  const f = process.env.STRATA_FAULT;
  if (!f) return;
  const [point, ms] = f.split(':');
  if (point === name) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(ms ?? 1000));
}
