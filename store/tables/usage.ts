/**
 * SQL for what the quotas count (store/quota.ts): bytes of layers and of
 * push archives. Read-only; one query each so a push's check stays cheap.
 */
import type { DB } from '../db.ts';

/** Layers stored plus archives of pushes still waiting to be baked. */
export function storedBytes(db: DB): number {
  const r = db
    .prepare(
      `SELECT (SELECT COALESCE(SUM(size), 0) FROM layers) + (SELECT COALESCE(SUM(bytes), 0) FROM pushes WHERE state IN ('queued','baking')) AS n`,
    )
    .get() as { n: number };
  return r.n;
}

/** One key's queued pushes plus its committed pushes whose commits are still in the store (compressed bytes). */
export function keyPushBytes(db: DB, author: string): number {
  const r = db
    .prepare(
      `SELECT COALESCE(SUM(bytes), 0) AS n FROM pushes p WHERE author = ? AND (state IN ('queued','baking')
         OR (state = 'committed' AND EXISTS (SELECT 1 FROM commits c WHERE c.id = p.commit_id)))`,
    )
    .get(author) as { n: number };
  return r.n;
}
