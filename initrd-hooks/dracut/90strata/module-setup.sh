#!/bin/bash
# dracut module "strata": boot the root file system from a strata server
# (kernel command line: root=strata strata.server=... strata.commit=...).
# Install: copy this directory to /usr/lib/dracut/modules.d/90strata and
# either copy strata-root.sh and lib/parse-cmdline.sh, lib/udhcpc.script
# next to it, or set STRATA_HOOKS_DIR to the checkout's initrd-hooks/
# (default /usr/share/strata/initrd-hooks). Then: dracut --add strata ...

# The shared POSIX sh lives in initrd-hooks/, not here: find it.
strata_hooks_dir() {
    local d
    for d in "$moddir" "${STRATA_HOOKS_DIR:-}" /usr/share/strata/initrd-hooks; do
        [[ -n $d && -f $d/strata-root.sh ]] && { echo "$d"; return 0; }
    done
    return 1
}

strata_lib_file() {
    if [[ -f $1/lib/$2 ]]; then echo "$1/lib/$2"; else echo "$1/$2"; fi
}

check() {
    # Only when asked for (dracut --add strata or add_dracutmodules+=" strata ").
    strata_hooks_dir > /dev/null || return 1
    require_binaries busybox || return 1
    return 255
}

depends() {
    # No dependency on dracut's network modules: busybox udhcpc brings the
    # network up when nothing else did (the hook checks for a route first).
    return 0
}

installkernel() {
    instmods loop squashfs overlay virtio_net virtio_pci virtio_blk e1000 e1000e
}

install() {
    local hooks bb a
    hooks=$(strata_hooks_dir)
    inst_simple "$hooks/strata-root.sh" /lib/strata/strata-root.sh
    inst_simple "$(strata_lib_file "$hooks" parse-cmdline.sh)" /lib/strata/parse-cmdline.sh
    inst_script "$(strata_lib_file "$hooks" udhcpc.script)" /lib/strata/udhcpc.script
    # busybox goes to its own directory so it shadows nothing in the image;
    # the hooks put it first on PATH only while strata runs.
    bb=$(command -v busybox)
    inst_simple "$bb" /lib/strata/bin/busybox
    for a in wget sha256sum wc tr losetup mount umount findfs blkid udhcpc ip ifconfig route timeout \
        sync mkdir rm mv cp cat sleep touch reboot setsid cttyhack mke2fs modprobe sh; do
        ln_r /lib/strata/bin/busybox "/lib/strata/bin/$a"
    done
    inst_multiple -o mkfs.ext4 mke2fs
    inst_hook cmdline 90 "$moddir/parse-strata.sh"
    inst_hook mount 90 "$moddir/mount-strata.sh"
}
