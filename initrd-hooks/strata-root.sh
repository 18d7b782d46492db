# shellcheck shell=sh
# strata-root.sh: assemble the root file system of a network-booted machine
# from a strata commit (docs/design.md "Boot manifest", "Kernel command line").
#
# POSIX sh; runs under busybox ash (standalone initramfs), dash
# (initramfs-tools) and bash (dracut). It is sourced, not executed: the
# packaging calls
#     strata_boot NEWROOT      # mounts the overlay root on NEWROOT
# and then hands over with its own switch_root (the standalone /init calls
# strata_handover NEWROOT INIT). Parsing lives in lib/parse-cmdline.sh;
# this file only acts.
#
# Layout while booting and afterwards (everything stays reachable in the
# booted system because it sits under /run, which the init moves, or is
# moved onto the new root here):
#   /run/strata/commit            the booted commit id
#   /run/strata/manifest          its manifest
#   /run/strata/objects/<hex>     downloaded layers (tmpfs; no backup disk)
#   /run/strata/backup/strata/    the backup disk: objects/<hex>, last-good.*
#   /run/strata/layers/N          squashfs mounts, N=0 is the base
#   NEWROOT/.rw/{upper,work}      the overlay's writable part (tmpfs)

STRATA_LIB_DIR=${STRATA_LIB_DIR:-/lib/strata}
# shellcheck source=lib/parse-cmdline.sh
. "$STRATA_LIB_DIR/parse-cmdline.sh"
# The client kit's installer, when the initramfs carries the kit.
# shellcheck source=lib/client-kit.sh
[ -f "$STRATA_LIB_DIR/client-kit.sh" ] && . "$STRATA_LIB_DIR/client-kit.sh"
# Boot health: the booted system moves the last good commit (lib/boot-health.sh).
# shellcheck source=lib/boot-health.sh
[ -f "$STRATA_LIB_DIR/boot-health.sh" ] && . "$STRATA_LIB_DIR/boot-health.sh"

STRATA_RUN=/run/strata
# The layer mounts live at /l/N while the overlay is created: lowerdir is one
# mount option and the whole option string must fit in one page, so the
# paths are as short as they can be. /l is moved under /run afterwards.
STRATA_L=/l
STRATA_BACKUP_MNT=$STRATA_RUN/backup
STRATA_BACKUP_DIR=''
STRATA_OBJECTS=''
STRATA_HTTP_TIMEOUT=${STRATA_HTTP_TIMEOUT:-600}

# The backup disk's boot partition (lib/bootdisk.sh). A packaging without
# that file still boots; its backup disks are caches only.
if [ -f "$STRATA_LIB_DIR/bootdisk.sh" ]; then
	# shellcheck source=lib/bootdisk.sh
	. "$STRATA_LIB_DIR/bootdisk.sh"
else
	strata_bootdisk_resolve() { STRATA_BACKUP_DEV=$1; }
	strata_bootdisk_partition() { STRATA_BACKUP_DEV=$1; }
	strata_bootdisk_update() { :; }
fi

strata_log() { echo "strata: $*"; }
strata_warn() { echo "strata: warning: $*"; }

strata_uptime() {
	read -r _up _ < /proc/uptime 2>/dev/null || _up=?
	echo "$_up"
}

# strata_fail MESSAGE: the ONE line a person at the console reads. It says
# what failed and what to check; then a shell (strata.debug) or a reboot.
strata_fail() {
	if [ "$STRATA_DEBUG" = 1 ]; then
		echo "strata: error: $*; strata.debug is set: starting a shell, exit it to reboot"
		if command -v setsid >/dev/null 2>&1 && command -v cttyhack >/dev/null 2>&1; then
			setsid cttyhack sh -i
		else
			sh -i </dev/console >/dev/console 2>&1
		fi
	else
		echo "strata: error: $*; rebooting in ${STRATA_REBOOT_DELAY}s (add strata.debug for a shell)"
		sleep "$STRATA_REBOOT_DELAY"
	fi
	sync
	reboot -f 2>/dev/null
	echo b > /proc/sysrq-trigger 2>/dev/null
	# Still here (no reboot(2) permission?): never continue a broken boot.
	while :; do sleep 60; done
}

# strata_jitter: 0 or 1 second, from the kernel's random uuid (works in
# dash, which has no $RANDOM).
strata_jitter() {
	read -r _ji < /proc/sys/kernel/random/uuid 2>/dev/null || _ji=0
	case "$_ji" in [0-7]*) echo 0 ;; *) echo 1 ;; esac
}

# strata_http_get URL FILE: one attempt; FILE only appears when complete.
strata_http_get() {
	rm -f "$2.part"
	if command -v wget >/dev/null 2>&1; then
		# Not `wget -T`: busybox 1.35's static wget segfaults with it. A
		# whole-transfer limit via timeout(1) guards against a stalled server.
		if command -v timeout >/dev/null 2>&1; then
			timeout "$STRATA_HTTP_TIMEOUT" wget -q -O "$2.part" "$1" 2>"$STRATA_RUN/http.err"
		else
			wget -q -O "$2.part" "$1" 2>"$STRATA_RUN/http.err"
		fi
	elif command -v curl >/dev/null 2>&1; then
		curl -fsS --connect-timeout 10 --speed-limit 1 --speed-time 60 -o "$2.part" "$1" 2>"$STRATA_RUN/http.err"
	else
		echo "no wget or curl in this initramfs" > "$STRATA_RUN/http.err"
		return 2
	fi
	_hg=$?
	if [ "$_hg" -ne 0 ]; then rm -f "$2.part"; return "$_hg"; fi
	mv -f "$2.part" "$2"
}

# strata_http_error: the HTTP client's last complaint, on one line, for the
# error line ("connection refused" and "404" call for different fixes).
strata_http_error() {
	_he=''
	[ -s "$STRATA_RUN/http.err" ] && while IFS= read -r _he_l; do [ -n "$_he_l" ] && _he=$_he_l; done < "$STRATA_RUN/http.err"
	echo "${_he:-no answer}"
}

# strata_fetch URL FILE: STRATA_RETRIES attempts with exponential backoff
# and jitter between them.
strata_fetch() {
	_fe_n=1
	while :; do
		strata_http_get "$1" "$2" && return 0
		[ "$_fe_n" -lt "$STRATA_RETRIES" ] || return 1
		_fe_wait=$(strata_backoff "$_fe_n" "$(strata_jitter)")
		strata_log "fetching $1 failed ($(strata_http_error)), attempt $_fe_n of $STRATA_RETRIES, retrying in ${_fe_wait}s"
		sleep "$_fe_wait"
		_fe_n=$((_fe_n + 1))
	done
}

strata_sha256() {
	# shellcheck disable=SC2046
	set -- $(sha256sum "$1" 2>/dev/null)
	echo "${1:-}"
}

strata_size() {
	wc -c < "$1" 2>/dev/null | tr -d ' '
}

# strata_object_ok FILE HEX SIZE: the file is exactly that blob.
strata_object_ok() {
	[ -f "$1" ] || return 1
	[ "$(strata_size "$1")" = "$3" ] || return 1
	[ "$(strata_sha256 "$1")" = "$2" ]
}

# --- network -------------------------------------------------------------

strata_net_configured() {
	while read -r _nc_if _; do
		case "$_nc_if" in Iface|lo|'') ;; *) return 0 ;; esac
	done < /proc/net/route
	return 1
}

# strata_net_up: DHCP on the first interface that gets a lease, unless the
# packaging (dracut, initramfs-tools) configured the network already.
strata_net_up() {
	strata_net_configured && return 0
	command -v udhcpc >/dev/null 2>&1 || return 1
	_nu_t=0
	while [ "$_nu_t" -lt 10 ]; do
		for _nu_dev in /sys/class/net/*; do
			[ "${_nu_dev##*/}" != lo ] && [ -e "$_nu_dev" ] && break 2
		done
		sleep 1
		_nu_t=$((_nu_t + 1))
	done
	_nu_try=1
	while [ "$_nu_try" -le 3 ]; do
		for _nu_dev in /sys/class/net/*; do
			_nu_if=${_nu_dev##*/}
			[ "$_nu_if" = lo ] && continue
			ip link set "$_nu_if" up 2>/dev/null || ifconfig "$_nu_if" up 2>/dev/null
			if udhcpc -i "$_nu_if" -f -q -n -t 4 -T 2 -s "$STRATA_LIB_DIR/udhcpc.script" >/dev/null 2>&1; then
				strata_log "network up on $_nu_if"
				return 0
			fi
		done
		_nu_try=$((_nu_try + 1))
	done
	return 1
}

# --- backup disk ---------------------------------------------------------

strata_resolve_dev() {
	case "$1" in
		LABEL=*|UUID=*)
			if command -v findfs >/dev/null 2>&1; then
				findfs "$1" 2>/dev/null && return 0
			fi
			if command -v blkid >/dev/null 2>&1; then
				case "$1" in
					LABEL=*) blkid -L "${1#LABEL=}" 2>/dev/null && return 0 ;;
					UUID=*) blkid -U "${1#UUID=}" 2>/dev/null && return 0 ;;
				esac
			fi
			return 1 ;;
		*)
			[ -b "$1" ] && echo "$1" ;;
	esac
}

strata_mkfs() {
	_mk_label=''
	case "$STRATA_BACKUP" in LABEL=*) _mk_label=${STRATA_BACKUP#LABEL=} ;; esac
	[ -n "$_mk_label" ] || _mk_label=strata-backup
	if command -v mkfs.ext4 >/dev/null 2>&1; then
		mkfs.ext4 -q -F -L "$_mk_label" "$1" >/dev/null 2>&1
	elif command -v mke2fs >/dev/null 2>&1; then
		# busybox mke2fs makes ext2, which the kernel's ext4 driver mounts.
		mke2fs -L "$_mk_label" "$1" >/dev/null 2>&1
	else
		return 2
	fi
}

# strata_backup_setup: mount the backup disk if strata.backup names one
# that is present and usable. Never fatal: a cache is an optimisation and
# a fallback, not a requirement. Sets STRATA_BACKUP_DIR.
strata_backup_setup() {
	[ -n "$STRATA_BACKUP" ] || return 0
	_bs_dev=''
	_bs_t=0
	# Disks may show up a moment after their driver loads.
	while [ "$_bs_t" -lt 5 ]; do
		_bs_dev=$(strata_resolve_dev "$STRATA_BACKUP") && [ -n "$_bs_dev" ] && break
		_bs_dev=''
		sleep 1
		_bs_t=$((_bs_t + 1))
	done
	if [ -z "$_bs_dev" ]; then
		strata_warn "backup disk strata.backup=$STRATA_BACKUP not found; booting without a local cache (check the disk and its label)"
		return 0
	fi
	# A disk strata partitioned keeps its cache on partition 3.
	strata_bootdisk_resolve "$_bs_dev"
	_bs_dev=$STRATA_BACKUP_DEV
	mkdir -p "$STRATA_BACKUP_MNT"
	if ! mount -t ext4 "$_bs_dev" "$STRATA_BACKUP_MNT" 2>/dev/null; then
		if [ "$STRATA_BACKUP_FORMAT" != 1 ]; then
			strata_warn "backup disk $_bs_dev has no ext4 file system; booting without a local cache (add strata.backup.format=1 to format it)"
			return 0
		fi
		# A whole disk gets a boot partition too, when it is big enough.
		strata_bootdisk_partition "$_bs_dev"
		_bs_dev=$STRATA_BACKUP_DEV
		strata_log "formatting backup disk $_bs_dev as ext4 (strata.backup.format=1)"
		strata_mkfs "$_bs_dev"
		case $? in
			0) ;;
			2) strata_warn "cannot format backup disk $_bs_dev: no mkfs.ext4 or mke2fs in this initramfs; booting without a local cache"; return 0 ;;
			*) strata_warn "formatting backup disk $_bs_dev failed; booting without a local cache (check the disk)"; return 0 ;;
		esac
		if ! mount -t ext4 "$_bs_dev" "$STRATA_BACKUP_MNT" 2>/dev/null; then
			strata_warn "backup disk $_bs_dev does not mount after formatting; booting without a local cache"
			return 0
		fi
	fi
	if ! mkdir -p "$STRATA_BACKUP_MNT/strata/objects" 2>/dev/null || ! touch "$STRATA_BACKUP_MNT/strata/.w" 2>/dev/null; then
		strata_warn "backup disk $_bs_dev is not writable; booting without a local cache (check the disk)"
		umount "$STRATA_BACKUP_MNT" 2>/dev/null
		return 0
	fi
	rm -f "$STRATA_BACKUP_MNT/strata/.w"
	STRATA_BACKUP_DIR=$STRATA_BACKUP_MNT/strata
	strata_log "backup disk $_bs_dev mounted"
}

strata_has_last_good() {
	[ -n "$STRATA_BACKUP_DIR" ] && [ -s "$STRATA_BACKUP_DIR/last-good.manifest" ] && [ -s "$STRATA_BACKUP_DIR/last-good.id" ]
}

# strata_save_last_good ID MANIFEST: written after the root is assembled,
# temp file + rename + sync so a power cut leaves the old or the new pair.
strata_save_last_good() {
	[ -n "$STRATA_BACKUP_DIR" ] || return 0
	cp "$2" "$STRATA_BACKUP_DIR/last-good.manifest.tmp" &&
		echo "$1" > "$STRATA_BACKUP_DIR/last-good.id.tmp" &&
		sync &&
		mv -f "$STRATA_BACKUP_DIR/last-good.manifest.tmp" "$STRATA_BACKUP_DIR/last-good.manifest" &&
		mv -f "$STRATA_BACKUP_DIR/last-good.id.tmp" "$STRATA_BACKUP_DIR/last-good.id" &&
		sync && return 0
	strata_warn "could not record the last good commit on the backup disk (disk full?)"
	return 1
}

# strata_prune_backup LAYERLIST: once the booted commit is the last good one,
# drop every cached layer its chain does not use (an older commit's layers,
# a download cut short), so a backup disk holds one chain instead of every
# layer the machine ever booted. Only called after strata_save_last_good
# succeeded: until then the old last good commit is the fallback and its
# layers must stay. The booted layers are loop-mounted; they are all listed.
strata_prune_backup() {
	[ -n "$STRATA_BACKUP_DIR" ] || return 0
	_pb_n=0
	for _pb_f in "$STRATA_OBJECTS"/* "$STRATA_OBJECTS"/.fetch-*; do
		[ -f "$_pb_f" ] || continue
		_pb_name=${_pb_f##*/}
		case $_pb_name in
			.fetch-*) ;;
			*) grep -q "^$_pb_name " "$1" && continue ;;
		esac
		rm -f "$_pb_f" && _pb_n=$((_pb_n + 1))
	done
	[ "$_pb_n" -eq 0 ] && return 0
	sync
	strata_log "backup disk: removed $_pb_n cached layers commit $STRATA_COMMIT does not use"
}

# --- layers ----------------------------------------------------------------

# strata_prepare_objects: sets STRATA_OBJECTS, the directory layers are
# kept in: the backup disk when there is one, else a tmpfs (RAM).
strata_prepare_objects() {
	if [ -n "$STRATA_BACKUP_DIR" ]; then
		STRATA_OBJECTS=$STRATA_BACKUP_DIR/objects
		return 0
	fi
	STRATA_OBJECTS=$STRATA_RUN/objects
	mkdir -p "$STRATA_OBJECTS"
	# Its own tmpfs: the /run of initramfs-tools is capped at 10% of RAM.
	mount -t tmpfs -o mode=700 strata-objects "$STRATA_OBJECTS" 2>/dev/null ||
		strata_warn "could not mount a tmpfs for layers; keeping them in $STRATA_OBJECTS"
}

# strata_get_layers LAYERLIST OFFLINE: make every layer present and verified
# in the objects dir. Cached ones are checked (size + sha256) and
# re-fetched when wrong; new ones are downloaded and checked.
strata_get_layers() {
	_gl_dir=$STRATA_OBJECTS
	_gl_fetched=0
	_gl_cached=0
	while read -r _gl_hex _gl_size; do
		[ -n "$_gl_hex" ] || continue
		_gl_file=$_gl_dir/$_gl_hex
		if [ -f "$_gl_file" ]; then
			if strata_object_ok "$_gl_file" "$_gl_hex" "$_gl_size"; then
				_gl_cached=$((_gl_cached + 1))
				continue
			fi
			if [ "$2" = offline ]; then
				strata_fail "server unreachable and cached layer $_gl_hex on the backup disk is corrupt; check the network and strata.server=$STRATA_SERVER, or replace the backup disk"
			fi
			strata_warn "cached layer $_gl_hex is corrupt; fetching it again"
			rm -f "$_gl_file"
		elif [ "$2" = offline ]; then
			strata_fail "server unreachable and layer $_gl_hex of the last good commit is missing from the backup disk; check the network and strata.server=$STRATA_SERVER"
		fi
		if ! strata_fetch "$STRATA_SERVER/objects/sha256/$_gl_hex" "$_gl_dir/.fetch-$_gl_hex"; then
			rm -f "$_gl_dir/.fetch-$_gl_hex"
			strata_fail "cannot download layer $_gl_hex from $STRATA_SERVER after $STRATA_RETRIES attempts ($(strata_http_error)); check that the server has the object (strata fsck) and that there is room for it (RAM or backup disk)"
		fi
		if ! strata_object_ok "$_gl_dir/.fetch-$_gl_hex" "$_gl_hex" "$_gl_size"; then
			_gl_got=$(strata_sha256 "$_gl_dir/.fetch-$_gl_hex")
			rm -f "$_gl_dir/.fetch-$_gl_hex"
			strata_fail "layer $_gl_hex downloaded from $STRATA_SERVER is corrupt (digest mismatch: got sha256 $_gl_got); check the server's store (strata fsck) and any HTTP cache in between"
		fi
		mv -f "$_gl_dir/.fetch-$_gl_hex" "$_gl_file"
		_gl_fetched=$((_gl_fetched + 1))
	done < "$1"
	[ -z "$STRATA_BACKUP_DIR" ] || sync
	strata_log "layers ready: $_gl_fetched downloaded, $_gl_cached from the backup disk"
}

# strata_mount_layers LAYERLIST NEWROOT
strata_mount_layers() {
	_ml_dir=$STRATA_OBJECTS
	mkdir -p "$STRATA_L"
	mount -t tmpfs -o size=64k,mode=755 strata-layers "$STRATA_L" ||
		strata_fail "cannot mount a tmpfs on $STRATA_L; check that the kernel has tmpfs"
	_ml_n=0
	while read -r _ml_hex _; do
		[ -n "$_ml_hex" ] || continue
		mkdir -p "$STRATA_L/$_ml_n"
		mount -t squashfs -o loop,ro "$_ml_dir/$_ml_hex" "$STRATA_L/$_ml_n" 2>/dev/null ||
			strata_fail "cannot mount layer $_ml_n ($_ml_hex) as squashfs; check that the kernel has the squashfs and loop modules and that the layer is a squashfs image"
		_ml_n=$((_ml_n + 1))
	done < "$1"
	mkdir -p /.rw
	mount -t tmpfs -o mode=755 strata-rw /.rw ||
		strata_fail "cannot mount a tmpfs on /.rw; check that the kernel has tmpfs"
	mkdir -p /.rw/upper /.rw/work
	mkdir -p "$2"
	mount -t overlay -o "lowerdir=$(strata_lowerdirs "$STRATA_L" "$_ml_n"),upperdir=/.rw/upper,workdir=/.rw/work" strata "$2" ||
		strata_fail "cannot mount the overlay root from $_ml_n layers; check that the kernel has the overlay module"
	# /.rw must stay reachable from the booted system: the client agent
	# snapshots /.rw/upper from there. (mkdir goes into the upper dir when
	# the image has no /.rw of its own.)
	# A move fails under a shared mount (systemd in the initrd); a bind
	# of the same tmpfs serves as well there.
	mkdir -p "$2/.rw" 2>/dev/null
	mount --move /.rw "$2/.rw" 2>/dev/null || mount --bind /.rw "$2/.rw" ||
		strata_fail "cannot make /.rw reachable in the new root; check that the base image has a /.rw directory or a writable /"
	mkdir -p "$STRATA_RUN/layers"
	mount --move "$STRATA_L" "$STRATA_RUN/layers" 2>/dev/null || mount --rbind "$STRATA_L" "$STRATA_RUN/layers" 2>/dev/null ||
		strata_warn "could not move the layer mounts to $STRATA_RUN/layers"
	strata_log "root assembled from $_ml_n layers"
}

# --- the whole boot ---------------------------------------------------------

# strata_boot NEWROOT: everything up to (not including) switch_root.
strata_boot() {
	_sb_root=$1
	strata_parse_cmdline "${STRATA_CMDLINE:-$(cat /proc/cmdline)}"
	strata_log "starting at $(strata_uptime)s (commit ${STRATA_COMMIT:-none})"
	mkdir -p "$STRATA_RUN"
	for _sb_m in loop squashfs overlay; do modprobe "$_sb_m" 2>/dev/null; done
	strata_backup_setup

	_sb_mode=online
	if ! _sb_problem=$(strata_check_cmdline); then
		if strata_has_last_good; then
			strata_warn "$_sb_problem; booting the last good commit from the backup disk"
			_sb_mode=offline
		else
			strata_fail "$_sb_problem"
		fi
	fi

	_sb_manifest=$STRATA_RUN/manifest
	if [ "$_sb_mode" = online ]; then
		if ! strata_net_up; then
			if strata_has_last_good; then
				strata_warn "no network (DHCP got no lease); booting the last good commit from the backup disk"
				_sb_mode=offline
			else
				strata_fail "no network: DHCP got no lease on any interface; check the cable/network and the DHCP server (no backup disk to fall back on)"
			fi
		fi
	fi
	if [ "$_sb_mode" = online ]; then
		if ! strata_fetch "$STRATA_SERVER/v1/commits/$STRATA_COMMIT/manifest" "$_sb_manifest"; then
			if strata_has_last_good; then
				strata_warn "server $STRATA_SERVER unreachable after $STRATA_RETRIES attempts ($(strata_http_error)); booting the last good commit from the backup disk"
				_sb_mode=offline
			else
				strata_fail "cannot fetch the manifest of commit $STRATA_COMMIT from $STRATA_SERVER after $STRATA_RETRIES attempts ($(strata_http_error)); check that the server is running and reachable from this machine and knows that commit (no backup disk to fall back on)"
			fi
		fi
	fi
	if [ "$_sb_mode" = offline ]; then
		STRATA_COMMIT=$(cat "$STRATA_BACKUP_DIR/last-good.id")
		cp "$STRATA_BACKUP_DIR/last-good.manifest" "$_sb_manifest"
	fi

	_sb_got=$(strata_sha256 "$_sb_manifest")
	if [ "$_sb_got" != "$STRATA_COMMIT" ]; then
		if [ "$_sb_mode" = offline ]; then
			strata_fail "server unreachable and the last good manifest on the backup disk is damaged (sha256 $_sb_got, expected $STRATA_COMMIT); check the network and strata.server=$STRATA_SERVER"
		fi
		strata_fail "manifest of commit $STRATA_COMMIT from $STRATA_SERVER hashes to $_sb_got, not to the commit id; check the server's store (strata fsck) and any HTTP cache in between"
	fi
	if ! strata_parse_manifest "$_sb_manifest" > "$STRATA_RUN/layers.list"; then
		strata_fail "manifest of commit $STRATA_COMMIT is malformed ($(cat "$STRATA_RUN/layers.list")); check the server's version"
	fi
	[ "$_sb_mode" = offline ] && strata_log "booting last good commit $STRATA_COMMIT from the backup disk"

	strata_prepare_objects
	strata_get_layers "$STRATA_RUN/layers.list" "$_sb_mode"
	strata_mount_layers "$STRATA_RUN/layers.list" "$_sb_root"
	echo "$STRATA_COMMIT" > "$STRATA_RUN/commit"
	if command -v strata_kit_install >/dev/null 2>&1; then
		strata_kit_install
		# Heartbeats: a systemd unit now, or a loop strata_handover starts.
		strata_kit_unit "$_sb_root" "${STRATA_INIT:-/sbin/init}" || STRATA_KIT_LOOP=1
	fi
	if command -v strata_health_arm >/dev/null 2>&1 && strata_health_arm "$_sb_mode"; then
		strata_log "health check armed: the last good commit moves once this boot proves healthy"
	elif strata_save_last_good "$STRATA_COMMIT" "$_sb_manifest"; then
		strata_prune_backup "$STRATA_RUN/layers.list"
		# Offline, the disk's entry already is the last good commit's.
		[ "$_sb_mode" = online ] && strata_bootdisk_update "$STRATA_COMMIT" "$_sb_manifest"
	fi
	# Keep the backup disk's files consistent before the system takes over.
	sync
}

# strata_handover NEWROOT INIT: for the standalone busybox /init (PID 1).
# Moves the API file systems and /run into the new root and execs
# switch_root, which deletes the initramfs contents (not other mounts).
strata_handover() {
	_ho_root=$1
	_ho_init=${2:-/sbin/init}
	if [ ! -x "$_ho_root$_ho_init" ] && [ ! -L "$_ho_root$_ho_init" ]; then
		strata_fail "the booted commit has no executable $_ho_init; check the base image (or pass init=PATH)"
	fi
	_ho_up=$(strata_uptime)
	for _ho_m in /run /dev /proc /sys; do
		mkdir -p "$_ho_root$_ho_m" 2>/dev/null
		mount --move "$_ho_m" "$_ho_root$_ho_m" 2>/dev/null || umount -l "$_ho_m" 2>/dev/null
	done
	command -v strata_health_spawn >/dev/null 2>&1 && strata_health_spawn "$_ho_root"
	[ "${STRATA_KIT_LOOP:-0}" = 1 ] && strata_kit_start_loop "$_ho_root"
	echo "strata: switch_root at $_ho_up"
	exec switch_root "$_ho_root" "$_ho_init"
}
