/**
 * One error hierarchy for the whole of strata, and ONE table of what each
 * code means. Every error carries a stable `code` (scripts, the HTTP API and
 * the agent depend on these words) and a message that says what to do.
 *
 * The table is the only source of an error's HTTP status, its exit code (the
 * same in `strata` and `strata-agent`, so exit 8 means "nothing to do" in
 * both), whether retrying later may help (transient) and whether it is the
 * caller's mistake (a 4xx, never logged as a server error). Adapters map
 * from the table; nothing guesses from the spelling of a code.
 */

export interface ErrorMeaning {
  /** HTTP status the API answers. */
  readonly http: number;
  /** Exit status of `strata` and `strata-agent`. */
  readonly exit: number;
  /** Retrying the same request later may succeed (disk freed, lock released, tool installed). */
  readonly transient: boolean;
  /** The request or its data is at fault, not the server: 4xx, not logged as a server error. */
  readonly userFault: boolean;
  /** One line on what to do about it. */
  readonly hint: string;
}

const m = (http: number, exit: number, transient: boolean, userFault: boolean, hint: string): ErrorMeaning => ({
  http,
  exit,
  transient,
  userFault,
  hint,
});

/** Exit codes of both commands; 0 is success. */
export const EXIT = {
  failure: 1,
  badArgument: 2,
  corrupt: 3,
  notFound: 4,
  conflict: 5,
  badInput: 6,
  chainTooLong: 7,
  nothingToDo: 8,
  noSpace: 9,
  locked: 10,
  notAllowed: 11,
  unavailable: 12,
} as const;

const X = EXIT;

export const ERRORS = {
  E_COMMIT_NOT_FOUND: m(404, X.notFound, false, true, 'check the commit id (strata log PROFILE lists them)'),
  E_AMBIGUOUS_REF: m(400, X.notFound, false, true, 'give more digits of the commit id'),
  E_REF_NOT_FOUND: m(404, X.notFound, false, true, 'check the branch or tag name (strata branches, strata tags)'),
  E_REF_EXISTS: m(409, X.conflict, false, true, 'pick another name or delete the existing one first'),
  E_PROFILE_NOT_FOUND: m(404, X.notFound, false, true, 'check the profile name (strata profiles)'),
  E_PROFILE_EXISTS: m(409, X.conflict, false, true, 'pick another profile name'),
  E_OBJECT_NOT_FOUND: m(404, X.notFound, false, true, 'the object is not in this store; check the digest'),
  E_BAD_DIGEST: m(400, X.badArgument, false, true, 'a digest is 64 lowercase hex digits'),
  E_BAD_TAR: m(400, X.badInput, false, true, 'send a complete, valid tar archive'),
  E_BAD_COMPRESSION: m(400, X.badInput, false, true, 'compress the tar with zstd'),
  E_UNSAFE_PATH: m(400, X.badInput, false, true, 'remove absolute paths and .. components from the archive'),
  E_TOO_LARGE: m(413, X.badInput, false, true, 'split the change or ask the admin to raise the limit'),
  E_NOT_SQUASHFS: m(422, X.badInput, false, true, 'give a squashfs image (mksquashfs or tar2sqfs make one)'),
  E_BAD_ISO: m(400, X.badInput, false, true, 'give an ISO 9660 image with a squashfs root filesystem'),
  E_BAD_SOURCE: m(400, X.badInput, false, true, 'the source tree changed or could not be read; try again when it is quiet'),
  E_BAKE_FAILED: m(422, X.badInput, false, true, 'the tree could not be baked into a layer; see the message'),
  E_CHAIN_TOO_LONG: m(409, X.chainTooLong, false, true, 'flatten the profile (strata flatten PROFILE), then retry'),
  E_CONFLICT: m(409, X.conflict, false, true, 'the change conflicts with the current state; reload and retry'),
  E_STALE_PARENT: m(409, X.conflict, false, true, 'the profile moved on; rebase onto its head and retry'),
  E_NOTHING_TO_DO: m(409, X.nothingToDo, false, true, 'nothing changed; there is nothing to do'),
  E_NO_SPACE: m(507, X.noSpace, true, false, 'free some space (strata gc) and try again'),
  E_LOCKED: m(423, X.locked, true, false, 'another operation holds the lock; try again when it has finished'),
  E_UNAVAILABLE: m(503, X.unavailable, true, false, 'a tool or service is missing or down; fix it and the work is retried'),
  E_BAD_MANIFEST: m(400, X.badInput, false, true, 'the manifest is malformed; see the message'),
  E_BAD_ARGUMENT: m(400, X.badArgument, false, true, 'see --help for the accepted arguments'),
  E_CORRUPT: m(500, X.corrupt, false, false, 'the store is damaged; run strata fsck'),
  E_UNAUTHORIZED: m(401, X.notAllowed, false, true, 'give a valid token or enrolled key'),
  E_FORBIDDEN: m(403, X.notAllowed, false, true, 'this token or key may not do that; ask an admin'),
  E_NOT_FOUND: m(404, X.notFound, false, true, 'check the name or path'),
  E_INTERNAL: m(500, X.failure, false, false, 'a bug or an unexpected failure; see the server log'),
  E_METADATA_LIMIT: m(
    413,
    X.badInput,
    false,
    true,
    'the archive carries too much metadata (paths, link targets, xattrs); split the change or ask the admin to raise the limit',
  ),
  E_QUOTA_EXCEEDED: m(
    413,
    X.noSpace,
    true,
    true,
    'wait for queued pushes to bake, let gc drop old commits, or ask the admin to raise the quota',
  ),
  E_TOO_BUSY: m(429, X.locked, true, true, 'too many at once for this key or connection; wait for the others to finish and retry'),
  E_BAD_RECIPE: m(400, X.badInput, false, true, 'fix the recipe at the lines named (docs/cli.md, "strata build")'),
  E_BUILD_FAILED: m(422, X.badInput, false, true, "read the build log's last lines: a package, suite or command of the recipe failed"),
  E_IN_USE: m(409, X.conflict, false, true, 'an assignment still uses it; assign those clients elsewhere first'),
} as const satisfies Record<string, ErrorMeaning>;

export type ErrorCode = keyof typeof ERRORS;

export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === 'string' && Object.hasOwn(ERRORS, code);

/** The meaning of a code; anything not in the table is an internal error. */
export function meaningOf(code: string): ErrorMeaning {
  return isErrorCode(code) ? ERRORS[code] : ERRORS.E_INTERNAL;
}

export class StrataError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StrataError';
    this.code = code;
    this.details = details;
  }
  get meaning(): ErrorMeaning {
    return ERRORS[this.code];
  }
  toJSON() {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}

export const isStrataError = (e: unknown): e is StrataError => e instanceof StrataError;

/** The exit status of either command for anything thrown: the table's, 1 for what is not a StrataError. */
export function exitCodeFor(e: unknown): number {
  return isStrataError(e) ? e.meaning.exit : EXIT.failure;
}

/** Maps a Node fs error for "disk full" to our code, keeps others as they are. */
export function wrapIoError(e: unknown, what: string): unknown {
  const code = (e as { code?: unknown } | undefined)?.code;
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
