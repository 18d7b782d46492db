#!/bin/sh
# One-time set-up shared by `npm start`, `npm test` and `npm run bench`:
# install the Debian tools strata drives (only the missing ones) and the npm
# dependencies (only when node_modules is absent or older than the lockfile).
set -e
cd "$(dirname "$0")/.."

need=""
want() { command -v "$1" >/dev/null 2>&1 || need="$need $2"; }
want tar2sqfs squashfs-tools-ng
want sqfs2tar squashfs-tools-ng
want unsquashfs squashfs-tools
want bsdtar libarchive-tools
want zstd zstd
want xz xz-utils
want xorriso xorriso
want ssh openssh-client
want sshd openssh-server
want nginx nginx-light
want qemu-system-x86_64 qemu-system-x86
want chromium chromium
want busybox busybox-static
want setfattr attr
want getfattr attr
want cpio cpio
want mmdebstrap mmdebstrap
want rdsquashfs squashfs-tools-ng
want depmod kmod
want dpkg-deb dpkg
want curl curl
[ -x /usr/sbin/dnsmasq ] || need="$need dnsmasq-base"
[ -f /usr/lib/ipxe/undionly.kpxe ] && [ -f /usr/lib/ipxe/snponly.efi ] || need="$need ipxe"
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need="$need ovmf"
[ -f /usr/lib/ipxe/qemu/efi-virtio.rom ] || [ -f /usr/lib/ipxe/qemu/pxe-virtio.rom ] || need="$need ipxe-qemu"
[ -f /usr/lib/grub/i386-pc/pxe.mod ] && command -v grub-mknetdir >/dev/null 2>&1 || need="$need grub-pc-bin grub-common"
ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1 || need="$need linux-image-cloud-amd64"
# UEFI and Secure Boot boots, and the boot loader a backup disk gets.
[ -f /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || need="$need ovmf"
[ -f /usr/lib/shim/shimx64.efi.signed ] || need="$need shim-signed"
[ -f /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed ] || need="$need grub-efi-amd64-signed"
[ -f /usr/lib/grub/x86_64-efi/linux.mod ] || need="$need grub-efi-amd64-bin"
want mkfs.fat dosfstools
want mcopy mtools
[ -f /usr/bin/busybox ] && busybox --help 2>/dev/null | grep -q static || true
if [ -n "$need" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "strata: missing Debian packages:$need (run as root or install them)" >&2
    exit 1
  fi
  echo "strata: installing Debian packages:$need" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $need >/dev/null
fi

# A symlinked node_modules (a git worktree sharing another checkout's) is left
# alone: npm ci would empty the directory it points to, under the other checkout.
if [ -L node_modules ]; then
  :
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-fund --no-audit >&2
fi
