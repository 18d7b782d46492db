import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * Push ids sort by arrival time (`p` + fixed-width base36 milliseconds) and
 * cannot collide across concurrent pushes (6 random base36 characters).
 * Safe as a file name and in a shell word.
 */
export function newPushId(now = Date.now()): string {
  const time = now.toString(36).padStart(9, '0');
  const rnd = randomBytes(6);
  let tail = '';
  for (const b of rnd) tail += ALPHABET[b % 36];
  return `p${time}${tail}`;
}

export const PUSH_ID = /^p[0-9a-z]{15}$/;
