# shellcheck shell=sh
# The kit agent's heartbeat: the booted commit, uptime and a small hardware
# inventory from /proc and /sys, POSTed as JSON to $strata.server/v1/heartbeat.

agent_json_str() { # a JSON string of $1 (quotes and backslashes escaped; control characters dropped)
	printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

agent_inventory() {
	_in_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
	_in_cpus=$(grep -c '^processor' /proc/cpuinfo 2>/dev/null)
	_in_mem=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo 2>/dev/null)
	printf '{"cpuModel":%s,"cpus":%s,"memoryKb":%s,"nics":[' "$(agent_json_str "$_in_model")" "${_in_cpus:-0}" "${_in_mem:-0}"
	_in_sep=''
	for _in_n in /sys/class/net/*; do
		[ -e "$_in_n/address" ] || continue
		[ "${_in_n##*/}" = lo ] && continue
		printf '%s{"name":%s,"mac":%s}' "$_in_sep" "$(agent_json_str "${_in_n##*/}")" "$(agent_json_str "$(cat "$_in_n/address")")"
		_in_sep=,
	done
	printf '],"disks":['
	_in_sep=''
	for _in_d in /sys/block/*; do
		[ -e "$_in_d/size" ] || continue
		case ${_in_d##*/} in loop*|ram*) continue ;; esac
		printf '%s{"name":%s,"bytes":%s}' "$_in_sep" "$(agent_json_str "${_in_d##*/}")" "$(($(cat "$_in_d/size") * 512))"
		_in_sep=,
	done
	printf '],"dmi":{"vendor":%s,"product":%s,"serial":%s}}' \
		"$(agent_json_str "$(cat /sys/class/dmi/id/sys_vendor 2>/dev/null)")" \
		"$(agent_json_str "$(cat /sys/class/dmi/id/product_name 2>/dev/null)")" \
		"$(agent_json_str "$(cat /sys/class/dmi/id/product_serial 2>/dev/null)")"
}

agent_heartbeat() {
	read -r _hb_up _ < /proc/uptime
	_hb_body=$(printf '{"mac":%s,"commit":%s,"uptimeSec":%s,"inventory":%s}' \
		"$(agent_json_str "$(agent_mac)")" "$(agent_json_str "$AGENT_BOOTED")" "${_hb_up%.*}" "$(agent_inventory)")
	# timeout: a stalled server must not stop the loop (busybox wget -T is unsafe, see docs/booting.md).
	timeout 30 wget -q -O - --header 'Content-Type: application/json' --post-data "$_hb_body" "$AGENT_SERVER/v1/heartbeat" 2> "$AGENT_TMP/heartbeat.err"
}

# agent_heartbeat_note: the outcome of the last heartbeat in
# $AGENT_RUN/heartbeat ("ok EPOCH" or "failed EPOCH REASON"), which
# `strata-agent status` shows.
agent_heartbeat_note() { # RC
	if [ "$1" = 0 ]; then
		echo "ok $(date +%s)" > "$AGENT_RUN/heartbeat.tmp"
	else
		echo "failed $(date +%s) $(tail -n 1 "$AGENT_TMP/heartbeat.err" 2>/dev/null | tr -d '\n')" > "$AGENT_RUN/heartbeat.tmp"
	fi
	mv -f "$AGENT_RUN/heartbeat.tmp" "$AGENT_RUN/heartbeat" 2>/dev/null
	return "$1"
}
