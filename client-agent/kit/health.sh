# shellcheck shell=sh
# strata boot health, the booted system's side (docs/booting.md, "Boot
# health"). The initramfs starts it just before switch_root, already inside
# the new root (initrd-hooks/lib/boot-health.sh), as
#   /run/strata/bin/busybox sh /run/strata/lib/strata-agent/health.sh
# It judges the boot: the root is the strata overlay; where systemd runs,
# `systemctl is-system-running` says running or degraded within the timeout
# (strata.health=SECONDS, default 300); the profile's own check, if any
# (GET /v1/boot-health/check), exits 0. A good boot moves the backup disk's
# last good commit (with the initramfs's own functions, left in
# /run/strata/health/lib); either way the verdict goes to the server
# (POST /v1/boot-health) and to /run/strata/health/state ("good" or
# "bad: WHY"), written last.

HEALTH_RUN=${STRATA_HEALTH_RUN:-/run/strata}
HEALTH_DIR=$HEALTH_RUN/health
AGENT_KIT=$HEALTH_RUN
# The kit's applets first, then the image's own tools (systemctl, its sh).
PATH=$HEALTH_RUN/bb:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
LC_ALL=C
export LC_ALL
# shellcheck source=config.sh
. "$HEALTH_RUN/lib/strata-agent/config.sh"

health_log() { echo "strata-health: $*" >&2; }

health_json_str() { # a JSON string of $1 (quotes and backslashes escaped, control characters dropped)
	printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# health_mac: the MAC of the interface with the default route (the one the machine booted from).
health_mac() {
	while read -r _hm_if _hm_dst _; do
		[ "$_hm_dst" = 00000000 ] || continue
		cat "/sys/class/net/$_hm_if/address" 2>/dev/null && return 0
	done < /proc/net/route
	return 1
}

# health_timeout "CMDLINE": strata.health=SECONDS, else 300.
health_timeout() {
	_ht=300
	set -f
	# shellcheck disable=SC2086
	set -- $1
	set +f
	for _ht_w in "$@"; do
		case $_ht_w in strata.health=*[!0-9]*|strata.health=) ;; strata.health=*) _ht=${_ht_w#strata.health=} ;; esac
	done
	echo "$_ht"
}

# health_uses_systemd "CMDLINE": the image's init is systemd (the check may
# start before systemd does, so /run/systemd/system cannot tell yet).
health_uses_systemd() {
	_hu_init=/sbin/init
	for _hu_w in $1; do case $_hu_w in init=*) _hu_init=${_hu_w#init=} ;; esac; done
	case $(readlink -f "$_hu_init" 2>/dev/null) in */systemd) return 0 ;; esac
	[ -d /run/systemd/system ]
}

# The checks: each returns 1 with HEALTH_WHY set.
health_check_root() {
	_hr=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)
	[ "$_hr" = overlay ] && [ -s "$HEALTH_RUN/commit" ] && return 0
	HEALTH_WHY="the root file system is ${_hr:-not mounted}, not the strata overlay"
	return 1
}

health_check_systemd() {
	health_uses_systemd "$1" || return 0
	_hs_t=0
	while :; do
		_hs=$(systemctl is-system-running 2>/dev/null)
		case $_hs in
			running|degraded) return 0 ;;
			maintenance|stopping)
				HEALTH_WHY="systemd is $_hs"
				return 1 ;;
		esac
		if [ "$_hs_t" -ge "$2" ]; then
			HEALTH_WHY="systemd is still ${_hs:-not up} after ${2}s ($(systemctl --failed --no-legend --plain 2>/dev/null | awk '{print $1}' | tr '\n' ' '))"
			return 1
		fi
		sleep 2
		_hs_t=$((_hs_t + 2))
	done
}

# health_check_profile TIMEOUT: the profile's own command, run by the image's shell.
health_check_profile() {
	if ! _hp_cmd=$(wget -q -O - "$AGENT_SERVER/v1/boot-health/check?commit=$AGENT_BOOTED" 2>/dev/null); then
		health_log "could not fetch the profile's health check from $AGENT_SERVER; judging by the default checks"
		return 0
	fi
	[ -n "$_hp_cmd" ] || return 0
	_hp_sh=/bin/sh
	[ -x "$_hp_sh" ] || _hp_sh="$HEALTH_RUN/bin/busybox sh"
	# shellcheck disable=SC2086
	_hp_out=$(timeout "$1" $_hp_sh -c "$_hp_cmd" 2>&1 </dev/null)
	_hp_rc=$?
	[ "$_hp_rc" = 0 ] && return 0
	HEALTH_WHY="the profile's health check ($_hp_cmd) exited $_hp_rc$(printf '%s' "$_hp_out" | tail -n 1 | sed 's/^./: &/')"
	return 1
}

# health_promote: this boot is good; the backup disk's last good commit
# becomes it (the initramfs's functions, as the initramfs would have done).
health_promote() {
	[ -f "$HEALTH_DIR/armed" ] || return 0
	(
		# shellcheck source=/dev/null
		. "$HEALTH_DIR/armed"
		[ -n "$STRATA_HEALTH_BACKUP" ] || exit 0
		STRATA_LIB_DIR=$HEALTH_DIR/lib
		# shellcheck source=/dev/null
		. "$STRATA_LIB_DIR/strata-root.sh"
		strata_parse_cmdline "$(cat /proc/cmdline)"
		STRATA_BACKUP_DIR=$STRATA_HEALTH_BACKUP
		STRATA_OBJECTS=$STRATA_HEALTH_OBJECTS
		STRATA_BOOTPART=$STRATA_HEALTH_BOOTPART
		STRATA_COMMIT=$(cat "$STRATA_RUN/commit")
		if strata_save_last_good "$STRATA_COMMIT" "$STRATA_RUN/manifest"; then
			strata_log "backup disk: last good commit is $STRATA_COMMIT"
			strata_prune_backup "$STRATA_RUN/layers.list"
			[ "$STRATA_HEALTH_MODE" = online ] && strata_bootdisk_update "$STRATA_COMMIT" "$STRATA_RUN/manifest"
		fi
		sync
	)
}

# health_report OK WHY: to the server, a few times with backoff (a boot from
# the backup disk while the server is away cannot report; that is no error).
health_report() {
	_hr_mac=$(health_mac) || { health_log "no network interface with a default route: not reported"; return 1; }
	_hr_body=$(printf '{"mac":%s,"commit":%s,"ok":%s,"reason":%s}' "$(health_json_str "$_hr_mac")" \
		"$(health_json_str "$AGENT_BOOTED")" "$1" "$(health_json_str "$2")")
	_hr_n=1
	while [ "$_hr_n" -le 4 ]; do
		if _hr_out=$(wget -q -O - --header 'Content-Type: application/json' --post-data "$_hr_body" "$AGENT_SERVER/v1/boot-health" 2>&1); then
			return 0
		fi
		case $_hr_out in *403*) health_log "the server refused the report: $_hr_out"; return 1 ;; esac
		sleep "$_hr_n"
		_hr_n=$((_hr_n * 2))
	done
	health_log "could not report to $AGENT_SERVER: $_hr_out"
	return 1
}

health_main() {
	_hm_cmdline=$(cat "$AGENT_CMDLINE_FILE" 2>/dev/null)
	agent_config "$_hm_cmdline"
	mkdir -p "$HEALTH_DIR"
	_hm_timeout=$(health_timeout "$_hm_cmdline")
	HEALTH_WHY=''
	if health_check_root && health_check_systemd "$_hm_cmdline" "$_hm_timeout" && health_check_profile "$_hm_timeout"; then
		health_log "boot of $AGENT_BOOTED is healthy"
		health_promote
		health_report true ''
		_hm_state=good
	else
		health_log "boot of $AGENT_BOOTED is NOT healthy: $HEALTH_WHY"
		health_report false "$HEALTH_WHY"
		_hm_state="bad: $HEALTH_WHY"
	fi
	echo "$_hm_state" > "$HEALTH_DIR/state.tmp" && mv -f "$HEALTH_DIR/state.tmp" "$HEALTH_DIR/state"
}

health_main
