/** Profiles: a named image with its settings; its head is its branch. */
import type { StoreCore } from './core.ts';
import { checkCmdline } from './cmdline-rules.ts';
import { StrataError } from './errors.ts';
import type { ProfileRow } from './tables/profiles.ts';
import type { Compressor, Profile } from './types.ts';

/** Profile and branch names: letters, digits, . _ -; up to 64. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function withHead(core: StoreCore, p: ProfileRow): Profile {
  const ref = core.t.refs.get(p.name);
  return { ...p, head: ref?.type === 'branch' ? ref.commit : null };
}

export function listProfiles(core: StoreCore): Profile[] {
  return core.t.profiles.all().map((p) => withHead(core, p));
}

export function getProfile(core: StoreCore, name: string): Profile {
  const p = core.t.profiles.get(name);
  if (!p)
    throw new StrataError(
      'E_PROFILE_NOT_FOUND',
      `no profile "${name}" (see "strata log" / the profiles list; create one with "strata import ${name} SOURCE")`,
    );
  return withHead(core, p);
}

export function setCmdline(core: StoreCore, profile: string, args: string): Profile {
  getProfile(core, profile);
  if (/[\n\r\0]/.test(args)) throw new StrataError('E_BAD_ARGUMENT', 'a kernel command line cannot contain newlines');
  checkCmdline(args);
  core.t.profiles.setCmdline(profile, args.trim());
  return getProfile(core, profile);
}

export function setCompression(core: StoreCore, profile: string, compressor: Compressor, level: number | null): Profile {
  getProfile(core, profile);
  if (!['zstd', 'lz4', 'gzip', 'xz'].includes(compressor))
    throw new StrataError('E_BAD_ARGUMENT', `unknown compressor ${compressor} (zstd, lz4, gzip or xz)`);
  core.t.profiles.setCompression(profile, compressor, level);
  return getProfile(core, profile);
}
