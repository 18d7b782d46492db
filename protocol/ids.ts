/**
 * Ids and name rules every process must spell the same way: MAC addresses
 * (normalised in match.js, which the browser loads too), push ids and
 * client-chosen push keys. Pure, node builtins only.
 */
import { randomBytes } from 'node:crypto';

export { normalizeMac } from './match.js';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * Push ids sort by arrival time (`p` + fixed-width base36 milliseconds) and
 * cannot collide across concurrent pushes (6 random base36 characters).
 * Safe as a file name and in a shell word.
 */
// The ids this process made in the current millisecond: six random letters
// collide about once in 40 runs of 10,000 ids made in one millisecond
// (birthday bound), so a repeat is drawn again instead of being returned.
let issuedAt = -1;
const issued = new Set<string>();

export function newPushId(now = Date.now()): string {
  const time = now.toString(36).padStart(9, '0');
  if (now !== issuedAt) {
    issuedAt = now;
    issued.clear();
  }
  for (;;) {
    let tail = '';
    for (const b of randomBytes(6)) tail += ALPHABET[b % 36];
    const id = `p${time}${tail}`;
    if (!issued.has(id)) {
      issued.add(id);
      return id;
    }
  }
}

/** The ids newPushId makes. */
export const PUSH_ID = /^p[0-9a-z]{15}$/;

/** What the store accepts as a push id (older and imported ids included): safe as a file name and a shell word. */
export const SAFE_PUSH_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** A client-chosen idempotency key: 16-64 characters, safe in a shell word and a log line. */
export const PUSH_KEY = /^[A-Za-z0-9_-]{16,64}$/;

export const PUSH_KEY_RULE = 'a push key is 16 to 64 characters of A-Z a-z 0-9 _ - (e.g. 16 random bytes in base64url)';
