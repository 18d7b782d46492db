# shellcheck shell=sh
# strata: boot health, the initramfs side (docs/booting.md, "Boot health").
# Sourced by strata-root.sh. When the command line asks for it
# (strata.health: the boot route adds it for every client it knows by MAC)
# and this initramfs left the client kit in $STRATA_RUN, the backup disk's
# last good commit is NOT moved here: the booted system's check
# (client-agent/kit/health.sh) moves it once the boot proves good, and
# reports the verdict to the server. Without the kit (dracut and
# initramfs-tools packagings) the initramfs moves it as before.

# Where the booted system finds what it needs: $STRATA_RUN/health (STRATA_RUN
# is set after this file is sourced, so each function names it).

# strata_health_wanted "CMDLINE": strata.health or strata.health=SECONDS
# (how long systemd may take to finish booting), unless strata.health=off.
strata_health_wanted() {
	_hw=no
	set -f
	# shellcheck disable=SC2086
	set -- $1
	set +f
	for _hw_w in "$@"; do
		case $_hw_w in
			strata.health=off|strata.health=0) _hw=off ;;
			strata.health|strata.health=*) [ "$_hw" = off ] || _hw=yes ;;
		esac
	done
	[ "$_hw" = yes ]
}

# strata_health_arm MODE: 0 when the booted system will judge this boot
# (the last good commit then waits for it); writes what that check needs:
# $STRATA_HEALTH_DIR/armed (shell assignments) and lib/ (this initramfs's
# functions that move the last good commit: strata-root.sh and its parts).
strata_health_arm() {
	STRATA_HEALTH_DIR=$STRATA_RUN/health
	[ -f "$STRATA_RUN/lib/strata-agent/health.sh" ] || return 1
	strata_health_wanted "${STRATA_CMDLINE:-$(cat /proc/cmdline)}" || return 1
	mkdir -p "$STRATA_HEALTH_DIR/lib" || return 1
	for _ha_f in strata-root.sh parse-cmdline.sh bootdisk.sh bootdisk-parse.sh; do
		[ -f "$STRATA_LIB_DIR/$_ha_f" ] || continue
		cp "$STRATA_LIB_DIR/$_ha_f" "$STRATA_HEALTH_DIR/lib/" || return 1
	done
	{
		echo "STRATA_HEALTH_MODE='$1'"
		echo "STRATA_HEALTH_BACKUP='$STRATA_BACKUP_DIR'"
		echo "STRATA_HEALTH_OBJECTS='$STRATA_OBJECTS'"
		echo "STRATA_HEALTH_BOOTPART='$STRATA_BOOTPART'"
	} > "$STRATA_HEALTH_DIR/armed" || return 1
}

# strata_health_spawn NEWROOT: starts the check in the booted system, from
# the standalone /init just before switch_root (after /run, /proc, /dev and
# /sys moved into NEWROOT). The child changes its root to NEWROOT itself: that
# mount becomes / at switch_root, so it sees the booted system from the
# start, and it runs the kit's busybox, which lives in /run, not in the
# initramfs that switch_root empties.
strata_health_spawn() {
	STRATA_HEALTH_DIR=$STRATA_RUN/health
	[ -f "$1$STRATA_HEALTH_DIR/armed" ] && [ -x "$1$STRATA_RUN/bin/busybox" ] || return 0
	(
		cd "$1" || exit 1
		exec ".$STRATA_RUN/bin/busybox" chroot . "$STRATA_RUN/bin/busybox" sh "$STRATA_RUN/lib/strata-agent/health.sh"
	) </dev/null &
}
