# shellcheck shell=sh
# strata: the backup disk's boot partition (docs/booting.md, "A backup disk
# that boots by itself"). Sourced by strata-root.sh after its helpers
# (strata_log, strata_warn, strata_fetch, strata_object_ok ...); the pure
# parts live in bootdisk-parse.sh. Nothing here is fatal: a disk that
# cannot boot by itself is still a cache.
#
# The boot loader comes with the initramfs: `strata initrd build` puts
# GRUB's images into $STRATA_LIB_DIR/bootloader (boot.img and core.img for
# BIOS, esp.img.gz: a small FAT EFI system partition holding
# EFI/BOOT/BOOTX64.EFI). Both GRUBs find the partition labelled strata-boot
# and read grub/grub.cfg there. The kernel and initrd come from the server,
# by the digests the booted commit's manifest names.

# shellcheck source=bootdisk-parse.sh
. "$STRATA_LIB_DIR/bootdisk-parse.sh"

STRATA_BOOTLOADER_DIR=${STRATA_BOOTLOADER_DIR:-$STRATA_LIB_DIR/bootloader}
STRATA_BOOTPART=''
STRATA_BOOTPART_MNT=$STRATA_RUN/bootpart

strata_is_whole_disk() {
	[ -e "/sys/class/block/${1##*/}" ] && [ ! -e "/sys/class/block/${1##*/}/partition" ]
}

# strata_ext_label DEV: the volume label of the ext2/3/4 file system on DEV
# (superblock at 1024, label at +120, 16 bytes), read directly: busybox has
# no blkid, and findfs answers only for the first device with a label.
strata_ext_label() {
	dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'
}

# strata_mkfs_ext2 DEV: e2fsprogs when present (as mkfs.ext4: busybox ash
# runs its own applets before PATH, and busybox's mke2fs knows no -t/-F),
# else busybox mke2fs, which makes ext2 anyway.
strata_mkfs_ext2() {
	if command -v mkfs.ext4 >/dev/null 2>&1; then
		mkfs.ext4 -q -F -t ext2 -L "$STRATA_BOOT_LABEL" "$1"
	else
		mke2fs -L "$STRATA_BOOT_LABEL" "$1"
	fi
}

strata_wait_dev() {
	_wd_t=0
	while [ ! -b "$1" ] && [ "$_wd_t" -lt 10 ]; do sleep 1; _wd_t=$((_wd_t + 1)); done
	[ -b "$1" ]
}

# strata_bootdisk_resolve DEV: when DEV is a whole disk strata partitioned,
# its cache partition (3) and boot partition (2); when DEV is such a cache
# partition, its boot partition. Sets STRATA_BACKUP_DEV and STRATA_BOOTPART.
strata_bootdisk_resolve() {
	STRATA_BACKUP_DEV=$1
	STRATA_BOOTPART=''
	_br_name=${1##*/}
	if strata_is_whole_disk "$1"; then
		_br_disk=$1
	elif [ -e "/sys/class/block/$_br_name/partition" ] && [ "$(cat "/sys/class/block/$_br_name/partition")" = 3 ]; then
		_br_disk=/dev/$(basename "$(readlink -f "/sys/class/block/$_br_name/..")")
	else
		return 0
	fi
	_br_boot=$(strata_part_dev "$_br_disk" 2)
	_br_cache=$(strata_part_dev "$_br_disk" 3)
	[ -b "$_br_boot" ] && [ -b "$_br_cache" ] || return 0
	# Partition 2 is strata's only if it carries the label strata-boot.
	[ "$(strata_ext_label "$_br_boot")" = "$STRATA_BOOT_LABEL" ] || return 0
	STRATA_BACKUP_DEV=$_br_cache
	STRATA_BOOTPART=$_br_boot
}

# strata_bootdisk_partition DISK: lays out DISK with a boot partition (only
# called where strata.backup.format=1 allowed formatting it). On success
# sets STRATA_BACKUP_DEV to the cache partition, still to be formatted by the
# caller, and STRATA_BOOTPART; otherwise warns, leaves DISK whole and
# STRATA_BACKUP_DEV=DISK (a cache without a boot partition).
strata_bootdisk_partition() {
	STRATA_BACKUP_DEV=$1
	STRATA_BOOTPART=''
	strata_is_whole_disk "$1" || return 0
	_bp_sectors=$(cat "/sys/class/block/${1##*/}/size" 2>/dev/null)
	if ! _bp_table=$(strata_mbr_table "$_bp_sectors"); then
		strata_warn "backup disk $1 is smaller than $((STRATA_BOOTDISK_MIN_SECTORS / 2048)) MiB: formatting it as a layer cache only, without a boot partition (it cannot boot this machine by itself)"
		return 0
	fi
	for _bp_f in boot.img core.img esp.img.gz; do
		if [ ! -s "$STRATA_BOOTLOADER_DIR/$_bp_f" ]; then
			strata_warn "this initramfs carries no boot loader ($STRATA_BOOTLOADER_DIR/$_bp_f): formatting backup disk $1 as a layer cache only (build the initramfs with grub-pc-bin, grub-efi-amd64-bin, dosfstools and mtools installed)"
			return 0
		fi
	done
	command -v mkfs.ext4 >/dev/null 2>&1 || command -v mke2fs >/dev/null 2>&1 ||
		{ strata_warn "no mke2fs in this initramfs: backup disk $1 gets no boot partition"; return 0; }
	strata_log "partitioning backup disk $1: EFI system partition, boot partition, layer cache"
	_bp_core=$(strata_size "$STRATA_BOOTLOADER_DIR/core.img")
	# Sectors 1..2047 hold core.img; wipe them (an old GPT header) first.
	if ! dd if=/dev/zero of="$1" bs=512 seek=1 count=2047 conv=notrunc 2>/dev/null ||
		! dd if="$STRATA_BOOTLOADER_DIR/boot.img" of="$1" bs=440 count=1 conv=notrunc 2>/dev/null ||
		! printf "$_bp_table" | dd of="$1" bs=1 seek=446 conv=notrunc 2>/dev/null ||
		! dd if="$STRATA_BOOTLOADER_DIR/core.img" of="$1" bs=512 seek=1 conv=notrunc 2>/dev/null; then
		strata_warn "writing the boot loader to backup disk $1 failed; using it as a layer cache only"
		return 0
	fi
	[ "$_bp_core" -le $((2047 * 512)) ] || strata_warn "GRUB's core.img ($_bp_core bytes) overlaps partition 1 of $1"
	sync
	blockdev --rereadpt "$1" 2>/dev/null || partprobe "$1" 2>/dev/null
	_bp_esp=$(strata_part_dev "$1" 1)
	_bp_boot=$(strata_part_dev "$1" 2)
	_bp_cache=$(strata_part_dev "$1" 3)
	if ! strata_wait_dev "$_bp_cache"; then
		# No half-made table left behind to confuse the next boot.
		dd if=/dev/zero of="$1" bs=512 count=1 conv=notrunc 2>/dev/null
		blockdev --rereadpt "$1" 2>/dev/null
		strata_warn "the kernel does not show the new partitions of $1; using it whole as a layer cache"
		return 0
	fi
	if ! zcat "$STRATA_BOOTLOADER_DIR/esp.img.gz" | dd of="$_bp_esp" bs=65536 2>/dev/null; then
		strata_warn "writing the EFI system partition $_bp_esp failed; the disk will not boot by itself under UEFI"
	fi
	# ext2, not ext4: GRUB does not replay a journal, so a journal holding the
	# latest grub.cfg rename would leave GRUB reading the old one.
	if ! _bp_err=$(strata_mkfs_ext2 "$_bp_boot" 2>&1 </dev/null); then
		strata_warn "formatting the boot partition $_bp_boot failed ($(echo "$_bp_err" | tail -n 1)); the disk will not boot by itself"
		_bp_boot=''
	fi
	STRATA_BACKUP_DEV=$_bp_cache
	STRATA_BOOTPART=$_bp_boot
}

# strata_bootdisk_update COMMIT MANIFEST: after a good boot of COMMIT, make
# the boot partition boot it: its kernel and initrd (fetched by digest and
# checked), a grub.cfg with this boot's command line. New files first, the
# grub.cfg swapped in by rename, the old pair removed last, so a power cut
# leaves the old or the new chain bootable.
strata_bootdisk_update() {
	[ -n "$STRATA_BOOTPART" ] || return 0
	_bu_m=$STRATA_BOOTPART_MNT
	mkdir -p "$_bu_m"
	if ! mount -t ext4 "$STRATA_BOOTPART" "$_bu_m" 2>/dev/null && ! mount -t ext2 "$STRATA_BOOTPART" "$_bu_m" 2>/dev/null; then
		strata_warn "boot partition $STRATA_BOOTPART does not mount; the backup disk keeps its old boot entry"
		return 0
	fi
	strata_bootdisk_fill "$1" "$2" "$_bu_m"
	sync
	umount "$_bu_m" 2>/dev/null
}

strata_bootdisk_fill() {
	_bf_m=$3
	if [ -s "$_bf_m/grub/grub.cfg" ] && [ "$(cat "$_bf_m/commit" 2>/dev/null)" = "$1" ]; then
		return 0
	fi
	# shellcheck disable=SC2046
	set -- "$1" "$2" "$3" $(strata_manifest_boot_file "$2" kernel) $(strata_manifest_boot_file "$2" initrd)
	if [ "$#" -ne 7 ]; then
		strata_warn "commit $1 names no kernel and initrd in its manifest; the backup disk keeps its old boot entry"
		return 0
	fi
	_bf_k=$4
	_bf_ks=$5
	_bf_i=$6
	_bf_is=$7
	for _bf_pair in "k $_bf_k $_bf_ks" "i $_bf_i $_bf_is"; do
		# shellcheck disable=SC2086
		set -- "$1" $_bf_pair
		_bf_file=$_bf_m/$2-$3
		strata_object_ok "$_bf_file" "$3" "$4" && continue
		rm -f "$_bf_file"
		if ! strata_fetch "$STRATA_SERVER/objects/sha256/$3" "$_bf_m/.fetch"; then
			rm -f "$_bf_m/.fetch"
			strata_warn "cannot download $3 for the boot partition ($(strata_http_error)); the backup disk keeps its old boot entry"
			return 0
		fi
		if ! strata_object_ok "$_bf_m/.fetch" "$3" "$4"; then
			rm -f "$_bf_m/.fetch"
			strata_warn "$3 downloaded for the boot partition is corrupt or the partition is full; the backup disk keeps its old boot entry"
			return 0
		fi
		mv -f "$_bf_m/.fetch" "$_bf_file"
	done
	_bf_commit=$1
	_bf_cmdline=$(strata_disk_cmdline "${STRATA_CMDLINE:-$(cat /proc/cmdline)}" "$_bf_commit")
	mkdir -p "$_bf_m/grub"
	if ! strata_disk_grub_cfg "$_bf_commit" "$_bf_k" "$_bf_i" "$_bf_cmdline" > "$_bf_m/grub/grub.cfg.tmp" ||
		! echo "$_bf_commit" > "$_bf_m/commit.tmp"; then
		strata_warn "cannot write the boot partition's grub.cfg (partition full?); the backup disk keeps its old boot entry"
		return 0
	fi
	sync
	mv -f "$_bf_m/grub/grub.cfg.tmp" "$_bf_m/grub/grub.cfg" && mv -f "$_bf_m/commit.tmp" "$_bf_m/commit"
	sync
	for _bf_old in "$_bf_m"/k-* "$_bf_m"/i-*; do
		case "${_bf_old##*/}" in "k-$_bf_k"|"i-$_bf_i") ;; *) rm -f "$_bf_old" ;; esac
	done
	strata_log "backup disk boots commit $_bf_commit by itself now (kernel $_bf_k, initrd $_bf_i)"
}
