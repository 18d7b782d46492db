# shellcheck shell=sh
# strata: pure helpers for the backup disk's boot partition (docs/booting.md,
# "A backup disk that boots by itself"). Nothing here touches a disk, the
# network or a mount: text and numbers in, text out, so it is tested on any
# host under busybox ash, dash and bash. lib/bootdisk.sh does the acting.
#
# Layout of a disk strata formats with a boot partition (MBR, 512-byte sectors):
#   sector 0           GRUB's boot.img (BIOS) + the partition table
#   sectors 1..2047    GRUB's core.img (BIOS), read by boot.img from sector 1
#   partition 1        EFI system partition (FAT, type 0xEF): EFI/BOOT/BOOTX64.EFI
#   partition 2        strata-boot (ext2, no journal: GRUB reads it as is)
#                      kernel, initrd and grub/grub.cfg of the last good commit
#   partition 3        strata-backup (ext4): the layer cache, as before

STRATA_ESP_START=2048
STRATA_ESP_SECTORS=16384       # 8 MiB
STRATA_BOOTPART_SECTORS=524288 # 256 MiB: two kernel + initrd pairs while one replaces the other
STRATA_BOOTDISK_MIN_SECTORS=1048576 # 512 MiB: smaller disks stay a cache only
STRATA_BOOT_LABEL=strata-boot

# strata_part_dev DISK N: the device node of partition N of DISK
# (/dev/vda 3 -> /dev/vda3, /dev/nvme0n1 3 -> /dev/nvme0n1p3).
strata_part_dev() {
	case "$1" in
		*[0-9]) echo "${1}p$2" ;;
		*) echo "$1$2" ;;
	esac
}

# strata_bootdisk_layout SECTORS: "ESP_START ESP_SIZE BOOT_START BOOT_SIZE
# CACHE_START CACHE_SIZE" in sectors for a disk of SECTORS sectors, or
# status 1 when the disk is too small for a boot partition. MBR counts
# sectors in 32 bits: the cache stops at 2 TiB on bigger disks.
strata_bootdisk_layout() {
	case "$1" in ''|*[!0-9]*) return 1 ;; esac
	[ "$1" -ge "$STRATA_BOOTDISK_MIN_SECTORS" ] || return 1
	_bl_boot=$((STRATA_ESP_START + STRATA_ESP_SECTORS))
	_bl_cache=$((_bl_boot + STRATA_BOOTPART_SECTORS))
	_bl_size=$(($1 - _bl_cache))
	[ "$_bl_size" -le 4294967295 ] || _bl_size=4294967295
	echo "$STRATA_ESP_START $STRATA_ESP_SECTORS $_bl_boot $STRATA_BOOTPART_SECTORS $_bl_cache $_bl_size"
}

# strata_le32_octal N: N as 4 little-endian bytes, written as printf octal escapes.
strata_le32_octal() {
	_lo_n=$1
	_lo_out=''
	for _lo_i in 1 2 3 4; do
		_lo_out="$_lo_out$(printf '\\%03o' $((_lo_n & 255)))"
		_lo_n=$((_lo_n >> 8))
	done
	printf '%s' "$_lo_out"
}

# strata_mbr_entry ACTIVE TYPE START SIZE: one 16-byte MBR partition entry
# as printf octal escapes. ACTIVE is 1 or 0, TYPE a hex byte (ef, 83). The
# CHS fields hold the "use LBA" marker (fe ff ff), as for any disk over 8 GB.
strata_mbr_entry() {
	if [ "$1" = 1 ]; then printf '\\200'; else printf '\\000'; fi
	printf '\\376\\377\\377'
	printf '\\%03o' $((0x$2))
	printf '\\376\\377\\377'
	strata_le32_octal "$3"
	strata_le32_octal "$4"
}

# strata_mbr_table SECTORS: bytes 446..511 of sector 0 (four entries and the
# 55 aa signature) as printf octal escapes, for the layout above.
strata_mbr_table() {
	# shellcheck disable=SC2046
	set -- $(strata_bootdisk_layout "$1") || return 1
	[ "$#" -eq 6 ] || return 1
	strata_mbr_entry 1 ef "$1" "$2"
	strata_mbr_entry 0 83 "$3" "$4"
	strata_mbr_entry 0 83 "$5" "$6"
	_mt_i=0
	while [ "$_mt_i" -lt 16 ]; do printf '\\000'; _mt_i=$((_mt_i + 1)); done
	printf '\\125\\252'
}

# strata_disk_cmdline "CMDLINE" COMMIT: the command line the disk's boot
# entry passes: the booted one, pinned to COMMIT, without the words boot
# loaders add themselves (BOOT_IMAGE=, initrd=).
strata_disk_cmdline() {
	_dc_out="strata.commit=$2"
	set -f
	# shellcheck disable=SC2086
	set -- $1
	set +f
	for _dc_w in "$@"; do
		case "$_dc_w" in
			BOOT_IMAGE=*|initrd=*|strata.commit=*) ;;
			*) _dc_out="$_dc_out $_dc_w" ;;
		esac
	done
	printf '%s\n' "$_dc_out"
}

# strata_grub_quote WORD: WORD as one GRUB word (single quotes; a quote
# inside becomes '\'').
strata_grub_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# strata_manifest_boot_file MANIFEST kernel|initrd: "HEX SIZE" of that file,
# or nothing (a commit without one). The manifest is already checked.
strata_manifest_boot_file() {
	_mb_file=$1
	_mb_want=$2
	while IFS= read -r _mb_line || [ -n "$_mb_line" ]; do
		set -f
		# shellcheck disable=SC2086
		set -- $_mb_line
		set +f
		if [ "$#" -eq 3 ] && [ "$1" = "$_mb_want" ]; then
			echo "${2#sha256:} $3"
			return 0
		fi
	done < "$_mb_file"
	return 0
}

# strata_disk_grub_cfg COMMIT KERNEL_HEX INITRD_HEX CMDLINE: the grub.cfg of
# the boot partition. Serial console lines only when the kernel's console
# is on ttyS0 (BIOS GRUB otherwise talks to the screen only; UEFI firmware
# mirrors its console itself).
strata_disk_grub_cfg() {
	echo "# strata: written by the initramfs after commit $1 booted; replaced after each good boot of a new commit"
	case " $4 " in
		*' console=ttyS0'*)
			echo 'if [ "$grub_platform" = pc ]; then'
			echo '  serial --unit=0 --speed=115200'
			echo '  terminal_input serial console'
			echo '  terminal_output serial console'
			echo 'fi' ;;
	esac
	echo 'set default=0'
	echo 'set timeout=1'
	echo "menuentry 'strata: last good commit $1 (backup disk)' {"
	echo "  echo 'strata: booting the last good commit $1 from the backup disk'"
	_gc_args=''
	set -f
	# shellcheck disable=SC2086
	set -- "$1" "$2" "$3" $4
	set +f
	_gc_k=$2
	_gc_i=$3
	shift 3
	for _gc_w in "$@"; do _gc_args="$_gc_args $(strata_grub_quote "$_gc_w")"; done
	echo "  linux /k-$_gc_k$_gc_args"
	echo "  initrd /i-$_gc_i"
	echo '}'
}
