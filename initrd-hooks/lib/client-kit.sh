# shellcheck shell=sh
# strata_kit_install: leaves the client kit (store/client-kit.ts) in
# $STRATA_RUN, i.e. /run/strata in the booted system: bin/strata-agent and
# the tools it runs, with their own libraries and loader. /run is a tmpfs of
# its own, so none of it is ever in the overlay's upper directory. Never
# fatal: a machine that cannot commit still boots.
strata_kit_install() {
	[ -d "$STRATA_LIB_DIR/kit" ] || return 0
	if cp -a "$STRATA_LIB_DIR/kit/." "$STRATA_RUN/" 2>/dev/null; then
		strata_log "client kit in $STRATA_RUN/bin (strata-agent)"
	else
		strata_warn "could not copy the client kit to $STRATA_RUN (out of RAM?); this boot cannot commit"
	fi
}

# The booted system's heartbeat (a report at boot and every minute, see
# docs/agent.md "Heartbeats"), started with nothing installed in the image:
#   - systemd as init: a runtime unit in /run/systemd/system with a wants
#     link from multi-user.target. /run is handed to the booted system as it
#     is (every packaging moves it), systemd reads units from there and
#     supervises, logs and stops the loop like any service;
#   - any other init: strata_kit_start_loop, a process started just before
#     switch_root and chrooted into the new root (see there).
STRATA_KIT_HEARTBEAT='/run/strata/bin/strata-agent heartbeat --every 60'

# strata_init_is_systemd ROOT INIT: INIT (a path inside ROOT) is systemd,
# following its symlinks inside ROOT (/sbin/init -> ../lib/systemd/systemd).
strata_init_is_systemd() {
	_is_p=$2
	_is_n=0
	while [ "$_is_n" -lt 16 ]; do
		[ "${_is_p##*/}" = systemd ] && return 0
		[ -L "$1$_is_p" ] || return 1
		_is_t=$(readlink "$1$_is_p") || return 1
		case $_is_t in
			/*) _is_p=$_is_t ;;
			*) _is_p=${_is_p%/*}/$_is_t ;;
		esac
		_is_n=$((_is_n + 1))
	done
	return 1
}

# strata_kit_unit ROOT INIT: on a systemd root, writes the heartbeat unit
# into $STRATA_RUN/../systemd/system (the /run the booted system gets) and
# returns 0; returns 1 when INIT is not systemd (nothing written: a
# /run/systemd/system of our making would tell programs systemd runs).
strata_kit_unit() {
	[ -x "$STRATA_RUN/bin/strata-agent" ] || return 0
	strata_init_is_systemd "$1" "$2" || return 1
	_ku_dir=${STRATA_RUN%/strata}/systemd/system
	mkdir -p "$_ku_dir/multi-user.target.wants" || return 0
	cat > "$_ku_dir/strata-heartbeat.service" <<-EOT
	# Written by the strata initramfs (initrd-hooks/lib/client-kit.sh).
	[Unit]
	Description=strata heartbeat: booted commit, uptime and inventory to the strata server every minute
	ConditionPathExists=/run/strata/bin/strata-agent
	ConditionPathExists=!/etc/initrd-release

	[Service]
	ExecStart=$STRATA_KIT_HEARTBEAT
	Restart=always
	RestartSec=10
	EOT
	ln -sf ../strata-heartbeat.service "$_ku_dir/multi-user.target.wants/strata-heartbeat.service"
	strata_log "heartbeat: systemd unit strata-heartbeat.service"
	return 0
}

# strata_kit_start_loop ROOT: for an init that is not systemd, from the
# standalone initramfs's /init (PID 1) after /run, /dev, /proc and /sys
# were moved into ROOT and right before `exec switch_root`. switch_root
# neither kills other processes nor touches other mounts; the loop's root
# and working directory are the overlay mount itself (chroot), which the
# switch moves to / as the same mount, so the loop sees exactly what the
# booted system sees. setsid: no controlling terminal for init to hang up.
strata_kit_start_loop() {
	[ -x "$1$STRATA_RUN/bin/strata-agent" ] || return 0
	# shellcheck disable=SC2086
	setsid chroot "$1" $STRATA_KIT_HEARTBEAT < "$1/dev/null" > "$1/dev/null" 2>&1 &
	strata_log "heartbeat: background loop (pid $!)"
}
