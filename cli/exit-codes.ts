/** Exit codes of the `strata` command, mapped from error codes only here. */
import { StrataError, type ErrorCode } from '../store/errors.ts';

const CODES: Partial<Record<ErrorCode, number>> = {
  E_BAD_ARGUMENT: 2,
  E_COMMIT_NOT_FOUND: 4,
  E_AMBIGUOUS_REF: 4,
  E_REF_NOT_FOUND: 4,
  E_PROFILE_NOT_FOUND: 4,
  E_OBJECT_NOT_FOUND: 4,
  E_NOT_FOUND: 4,
  E_CONFLICT: 5,
  E_STALE_PARENT: 5,
  E_REF_EXISTS: 5,
  E_PROFILE_EXISTS: 5,
  E_BAD_TAR: 6,
  E_BAD_COMPRESSION: 6,
  E_UNSAFE_PATH: 6,
  E_TOO_LARGE: 6,
  E_NOT_SQUASHFS: 6,
  E_BAD_ISO: 6,
  E_BAD_SOURCE: 6,
  E_BAKE_FAILED: 6,
  E_BAD_MANIFEST: 6,
  E_CHAIN_TOO_LONG: 7,
  E_NOTHING_TO_DO: 8,
  E_NO_SPACE: 9,
  E_LOCKED: 10,
  E_CORRUPT: 3,
};

export function exitCodeFor(e: unknown): number {
  if (e instanceof StrataError) return CODES[e.code] ?? 1;
  return 1;
}
