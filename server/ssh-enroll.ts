/**
 * What the SSH endpoint says to a key that is pending approval (pure): the
 * status of its held push, and the refusal of everything else, both naming
 * the command an admin runs.
 */
import { StrataError } from '../store/errors.ts';
import type { HeldPush, PendingKey } from '../store/enrollment.ts';

export function pendingStatusLine(k: PendingKey, h: HeldPush): string {
  return `pending key ${k.id} ${k.fingerprint} awaits approval (strata keys approve ${k.id} --profile ${h.profile})`;
}

export function pendingRefusal(k: PendingKey): StrataError {
  return new StrataError(
    'E_FORBIDDEN',
    `key ${k.fingerprint} is pending approval as ${k.id}; an admin lists it with strata keys pending and admits it with strata keys approve ${k.id} --profile PROFILE`,
  );
}
