/**
 * overlayfs's on-disk vocabulary, as the kernel writes it in an upper dir and
 * as strata's layers carry it (the agent reads it, the store checks and
 * merges it). See the kernel's Documentation/filesystems/overlayfs.rst.
 */

/** Prefix of overlayfs's own xattrs (the trusted. namespace: only root mounts write them). */
export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';

/** A directory with this xattr set to OPAQUE_VALUE hides everything below it in lower layers. */
export const OPAQUE_XATTR = 'trusted.overlay.opaque';
export const OPAQUE_VALUE = 'y';

/** A metacopy upper file has no data of its own (metadata-only copy-up): it cannot be layered. */
export const METACOPY_XATTR = 'trusted.overlay.metacopy';
/** A renamed directory points at its lower origin: meaningful only over the same lowers. */
export const REDIRECT_XATTR = 'trusted.overlay.redirect';

/**
 * Bookkeeping that refers to one mount's inodes and file handles (copy-up
 * origin, impure mark, hardlink counts, upper and uuid marks): it means
 * nothing in a layer and is dropped when a layer is made.
 */
export const MOUNT_BOOKKEEPING_XATTRS: readonly string[] = ['origin', 'impure', 'nlink', 'upper', 'uuid'].map(
  (k) => `${OVERLAY_XATTR_PREFIX}${k}`,
);

/** An overlayfs whiteout ("deleted in this layer") is a character device 0:0. */
export function isWhiteoutDevice(type: string, major: number | bigint, minor: number | bigint): boolean {
  return type === 'char' && Number(major) === 0 && Number(minor) === 0;
}

/** True when xattr `name` with `value` marks an opaque directory. */
export function isOpaqueMark(name: string, value: string | Buffer): boolean {
  return name === OPAQUE_XATTR && value.toString() === OPAQUE_VALUE;
}
