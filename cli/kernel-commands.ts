/**
 * The CLI's view of kernels that follow the tree (store/commit-boot.ts):
 * the line `strata show` prints, the profile's kernel pin, and
 * `strata initrd build --from COMMIT`.
 */
import { StrataError } from '../store/errors.ts';
import type { BootRecord, Store } from '../store/store.ts';

export function bootOf(s: Store, id: string): BootRecord | null {
  return s.bootRecord(id);
}

/** One line: where the commit's kernel came from (commits older than this feature have no record). */
export function bootLine(s: Store, id: string): string {
  const r = bootOf(s, id);
  if (!r) return 'boot       (no record: committed before kernels followed the tree)';
  return `boot       ${r.source}${r.version ? ` ${r.version}` : ''}: ${r.note}`;
}

export function kernelPinOf(s: Store, profile: string): string | null {
  return s.kernelPin(profile);
}

export function pinKernel(s: Store, profile: string, version: string | null): void {
  s.getProfile(profile);
  if (version !== null && !/^[0-9][\w.+~-]*$/.test(version))
    throw new StrataError('E_BAD_ARGUMENT', `"${version}" is not a kernel version (e.g. 6.1.0-54-cloud-amd64), or "newest"`);
  s.setKernelPin(profile, version);
}

export async function initrdFromCommit(s: Store, rev: string, output: string, kernelVersion?: string) {
  return s.initrdFromCommit(rev, output, kernelVersion);
}
