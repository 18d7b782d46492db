/** Who may do what: SSH keys (push and admin) and admin API tokens. */
import { createHash, randomBytes } from 'node:crypto';
import type { StoreCore } from './core.ts';
import { isUniqueViolation } from './db.ts';
import { isStrataError, StrataError, wrapIoError } from './errors.ts';
import { getProfile, NAME_RE } from './profiles.ts';
import type { SshKey } from './types.ts';

export function addKey(core: StoreCore, name: string, publicKeyLine: string, opts: { admin: boolean; profiles: string[] }): SshKey {
  if (!NAME_RE.test(name)) throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable key name`);
  const parts = publicKeyLine.trim().split(/\s+/);
  const algo = parts[0] ?? '';
  const data = Buffer.from(parts[1] ?? '', 'base64');
  // The blob starts with its own algorithm name: a cheap check that this is an OpenSSH public key line.
  const inner = data.length > 4 ? data.subarray(4, 4 + data.readUInt32BE(0)).toString() : '';
  if (!/^(ssh-|ecdsa-|sk-)/.test(algo) || inner !== algo)
    throw new StrataError(
      'E_BAD_ARGUMENT',
      'not an OpenSSH public key line (expected e.g. "ssh-ed25519 AAAA... comment", the content of a .pub file)',
    );
  if (!opts.admin && !opts.profiles.length) throw new StrataError('E_BAD_ARGUMENT', 'a key needs --admin or at least one --profile');
  for (const p of opts.profiles) getProfile(core, p);
  const fingerprint = `SHA256:${createHash('sha256').update(data).digest('base64').replace(/=+$/, '')}`;
  const key: SshKey = { name, publicKey: parts.slice(0, 2).join(' '), fingerprint, admin: opts.admin, profiles: opts.profiles };
  core.t.keys.upsert({ ...key, algo, keyData: data });
  return key;
}

export function removeKey(core: StoreCore, name: string): void {
  if (!core.t.keys.remove(name)) throw new StrataError('E_NOT_FOUND', `no key named ${name}`);
}

export function getKey(core: StoreCore, name: string): SshKey {
  const k = core.t.keys.get(name);
  if (!k) throw new StrataError('E_NOT_FOUND', `no key named ${name}`);
  return k;
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export function createToken(core: StoreCore, name: string): { name: string; token: string } {
  if (!NAME_RE.test(name)) throw new StrataError('E_BAD_ARGUMENT', `"${name}" is not a usable token name`);
  const token = `st_${randomBytes(24).toString('base64url')}`;
  // Only a hash is kept: a leaked database does not leak usable tokens.
  try {
    core.t.tokens.insert(name, hashToken(token), Date.now());
  } catch (e) {
    // Only a taken name is the caller's to fix; anything else (a read-only or
    // damaged database, a full disk) is said as it is.
    if (isUniqueViolation(e)) throw new StrataError('E_REF_EXISTS', `a token named ${name} already exists; revoke it first`);
    const full = wrapIoError(e, `storing the token ${name}`);
    if (isStrataError(full)) throw full;
    throw new StrataError('E_INTERNAL', `cannot store the token ${name}: ${(e as Error).message}`, {}, { cause: e });
  }
  return { name, token };
}

export function verifyToken(core: StoreCore, token: string): { name: string } | null {
  if (!token) return null;
  const name = core.t.tokens.nameOf(hashToken(token));
  return name === undefined ? null : { name };
}

export function revokeToken(core: StoreCore, name: string): void {
  if (!core.t.tokens.remove(name)) throw new StrataError('E_NOT_FOUND', `no token named ${name}`);
}
