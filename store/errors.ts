/**
 * One error hierarchy for the whole of strata. Every error carries a stable
 * `code` (scripts and the HTTP API depend on these words) and a message that
 * says what to do. HTTP statuses and exit codes are mapped only at the edges
 * (server/http-errors.ts, cli/main.ts), never here.
 */
export type ErrorCode =
  | 'E_COMMIT_NOT_FOUND'
  | 'E_AMBIGUOUS_REF'
  | 'E_REF_NOT_FOUND'
  | 'E_REF_EXISTS'
  | 'E_PROFILE_NOT_FOUND'
  | 'E_PROFILE_EXISTS'
  | 'E_OBJECT_NOT_FOUND'
  | 'E_BAD_DIGEST'
  | 'E_BAD_TAR'
  | 'E_BAD_COMPRESSION'
  | 'E_UNSAFE_PATH'
  | 'E_TOO_LARGE'
  | 'E_NOT_SQUASHFS'
  | 'E_BAD_ISO'
  | 'E_BAD_SOURCE'
  | 'E_BAKE_FAILED'
  | 'E_CHAIN_TOO_LONG'
  | 'E_CONFLICT'
  | 'E_STALE_PARENT'
  | 'E_NOTHING_TO_DO'
  | 'E_NO_SPACE'
  | 'E_LOCKED'
  | 'E_BAD_MANIFEST'
  | 'E_BAD_ARGUMENT'
  | 'E_CORRUPT'
  | 'E_UNAUTHORIZED'
  | 'E_FORBIDDEN'
  | 'E_NOT_FOUND'
  | 'E_INTERNAL';

export class StrataError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StrataError';
    this.code = code;
    this.details = details;
  }
  toJSON() {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}

export const isStrataError = (e: unknown): e is StrataError => e instanceof StrataError;

/** Maps a Node fs error for "disk full" to our code, keeps others as they are. */
export function wrapIoError(e: unknown, what: string): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  // ENOSPC/EDQUOT from fs; SQLITE_FULL from better-sqlite3 when the database cannot grow.
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') {
    return new StrataError(
      'E_NO_SPACE',
      `no space left on the device while ${what}; free some space (strata gc) and try again`,
      {},
      { cause: e },
    );
  }
  return e;
}
