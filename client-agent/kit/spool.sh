# shellcheck shell=sh
# The kit agent's spool and sender. A commit is an entry in $AGENT_SPOOL:
#   E.tar.zst   the archive (written to a temp name, synced, renamed)
#   E.meta      parent=, key= (push key), msg=, boot= (durable the same way)
#   E.push      the server's push id, once the server stored the archive
# Entries are sent oldest first, one at a time: an entry's parent may be
# "after:E0", the commit an earlier entry of the same boot becomes, known
# only once that entry is committed. A committed entry leaves
# $AGENT_STATE/done/E.commit; a rejected one moves to $AGENT_STATE/failed/
# with E.reason. The push key (random, chosen when spooled) makes every
# resend of one entry the same push on the server.

# Durability is per file: fsync the temp file, rename, fsync the directory
# (busybox `sync FILE...`). Never a bare `sync`: it waits for every dirty
# page of every filesystem on the machine, minutes on a client that is busy
# writing elsewhere, and the push's status would wait with it.
agent_durable_write() { # FILE: stdin to FILE via a synced temp file
	cat > "$1.tmp" && sync "$1.tmp" && mv -f "$1.tmp" "$1" && sync "${1%/*}"
}

agent_meta() { # ENTRY KEY
	sed -n "s/^$2=//p" "$AGENT_SPOOL/$1.meta" 2>/dev/null | head -n 1
}

agent_random_hex() { # 16 random bytes as 32 hex digits (a valid push key)
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

# agent_quote WORD: one shell word for the server's POSIX-like split.
agent_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

agent_entries() { # the spooled entries, oldest first
	for _ae_f in "$AGENT_SPOOL"/*.meta; do
		[ -f "$_ae_f" ] || continue
		_ae_e=${_ae_f##*/}
		echo "${_ae_e%.meta}"
	done | LC_ALL=C sort
}

# agent_ssh COMMAND [ssh args]: runs one server command with the agent's key.
# The host key is trusted on first use and pinned in the state dir.
agent_ssh() {
	_as_cmd=$1
	shift
	kssh -F /dev/null -i "$AGENT_KEY" -p "$AGENT_SSH_PORT" \
		-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new \
		-o UserKnownHostsFile="$AGENT_STATE/known_hosts" -o ConnectTimeout=15 \
		-o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o LogLevel=ERROR \
		-o SetEnv="STRATA_MAC=$(agent_mac) STRATA_HOSTNAME=$(hostname 2>/dev/null)" \
		"$@" "$AGENT_SSH_USER@$AGENT_SSH_HOST" "$_as_cmd"
}

# agent_mac: the MAC of the interface with the default route (first one).
agent_mac() {
	while read -r _am_if _am_dst _; do
		[ "$_am_dst" = 00000000 ] || continue
		cat "/sys/class/net/$_am_if/address" 2>/dev/null && return 0
	done < /proc/net/route
	echo unknown
}

# agent_key: makes the agent's own key on first use (ed25519, no passphrase).
agent_key() {
	[ -s "$AGENT_KEY" ] && return 0
	mkdir -p "${AGENT_KEY%/*}" || return 1
	rm -f "$AGENT_KEY" "$AGENT_KEY.pub"
	kkeygen -q -t ed25519 -N '' -C "strata-agent@$(hostname 2>/dev/null) $(agent_mac)" -f "$AGENT_KEY" >/dev/null || return 1
	sync "$AGENT_KEY" "$AGENT_KEY.pub" "${AGENT_KEY%/*}"
}

agent_backoff() { # ATTEMPT: seconds to wait, doubling from 1 to 300, full jitter
	_ab_max=1
	_ab_i=1
	while [ "$_ab_i" -lt "$1" ] && [ "$_ab_max" -lt "$AGENT_RETRY_MAX" ]; do
		_ab_max=$((_ab_max * 2))
		_ab_i=$((_ab_i + 1))
	done
	[ "$_ab_max" -gt "$AGENT_RETRY_MAX" ] && _ab_max=$AGENT_RETRY_MAX
	_ab_r=$(od -An -tu2 -N2 /dev/urandom | tr -d ' ')
	echo $((_ab_r % _ab_max + 1))
}

agent_fail_entry() { # ENTRY REASON
	mkdir -p "$AGENT_STATE/failed"
	printf '%s\n' "$2" | agent_durable_write "$AGENT_STATE/failed/$1.reason"
	for _fe_x in tar.zst meta push; do
		[ -f "$AGENT_SPOOL/$1.$_fe_x" ] && mv -f "$AGENT_SPOOL/$1.$_fe_x" "$AGENT_STATE/failed/$1.$_fe_x"
	done
	# The baseline assumed this change would land: the next commit of this
	# boot sends the whole upper directory again.
	rm -f "$AGENT_STATE/baseline.list"
	sync "$AGENT_STATE/failed" "$AGENT_SPOOL" "$AGENT_STATE"
	agent_log "push $1 rejected: $2"
}

agent_done_entry() { # ENTRY COMMIT
	mkdir -p "$AGENT_STATE/done"
	echo "$2" | agent_durable_write "$AGENT_STATE/done/$1.commit"
	if [ "$(agent_meta "$1" boot)" = "$AGENT_BOOT_ID" ]; then
		echo "$AGENT_BOOT_ID $2" | agent_durable_write "$AGENT_STATE/last-commit"
	fi
	rm -f "$AGENT_SPOOL/$1.tar.zst" "$AGENT_SPOOL/$1.push" "$AGENT_SPOOL/$1.meta"
	sync "$AGENT_SPOOL"
	agent_log "push $1 committed as $2"
}

# agent_send_one ENTRY: 0 done (committed or rejected), 1 retry later.
agent_send_one() {
	_so_e=$1
	_so_parent=$(agent_meta "$_so_e" parent)
	case $_so_parent in
		after:*)
			_so_prev=${_so_parent#after:}
			if [ -s "$AGENT_STATE/done/$_so_prev.commit" ]; then
				_so_parent=$(cat "$AGENT_STATE/done/$_so_prev.commit")
			elif [ -f "$AGENT_STATE/failed/$_so_prev.reason" ]; then
				agent_fail_entry "$_so_e" "its parent push $_so_prev was rejected"
				return 0
			else
				return 1
			fi ;;
	esac
	if [ ! -s "$AGENT_SPOOL/$_so_e.push" ]; then
		_so_cmd="push $AGENT_PROFILE --parent $_so_parent --push-key $(agent_meta "$_so_e" key) -m $(agent_quote "$(agent_meta "$_so_e" msg)")"
		agent_ssh "$_so_cmd" < "$AGENT_SPOOL/$_so_e.tar.zst" > "$AGENT_TMP/push.out" 2> "$AGENT_TMP/push.err"
		_so_rc=$?
		if [ "$_so_rc" = 255 ]; then
			AGENT_LAST_ERROR="server unreachable or key not accepted: $(tail -n 1 "$AGENT_TMP/push.err")"
			return 1
		fi
		if [ "$_so_rc" != 0 ]; then
			agent_fail_entry "$_so_e" "$(tr '\n' ' ' < "$AGENT_TMP/push.err")"
			return 0
		fi
		tail -n 1 "$AGENT_TMP/push.out" | agent_durable_write "$AGENT_SPOOL/$_so_e.push"
		agent_log "push $_so_e stored as $(cat "$AGENT_SPOOL/$_so_e.push")"
	fi
	# Wait for the server's verdict on this push (baking takes seconds).
	_so_id=$(cat "$AGENT_SPOOL/$_so_e.push")
	while :; do
		_so_st=$(agent_ssh "status $_so_id" 2> "$AGENT_TMP/status.err")
		_so_rc=$?
		if [ "$_so_rc" = 255 ]; then
			AGENT_LAST_ERROR="server unreachable: $(tail -n 1 "$AGENT_TMP/status.err")"
			return 1
		fi
		case $_so_st in
			'committed '*)
				set -- $_so_st
				agent_done_entry "$_so_e" "$2"
				return 0 ;;
			'rejected '*)
				agent_fail_entry "$_so_e" "${_so_st#rejected }"
				return 0 ;;
			'pending '*)
				# Held by the server until an admin approves this machine's key.
				[ "${_so_said:-}" = "$_so_id" ] || agent_log "push $_so_e: $_so_st"
				_so_said=$_so_id
				if [ "${AGENT_ONCE:-0}" = 1 ]; then
					AGENT_LAST_ERROR=$_so_st
					return 1
				fi
				sleep 5
				continue ;;
			'')
				AGENT_LAST_ERROR="status $_so_id: $(tr '\n' ' ' < "$AGENT_TMP/status.err")"
				return 1 ;;
		esac
		sleep 1
	done
}

# agent_send [once]: sends the spool until it is empty. One sender at a
# time (a lock directory holding its pid; a dead holder's lock is taken over).
agent_send() {
	if ! mkdir "$AGENT_SPOOL/send.lock" 2>/dev/null; then
		_sd_pid=$(cat "$AGENT_SPOOL/send.lock/pid" 2>/dev/null)
		if [ -n "$_sd_pid" ] && kill -0 "$_sd_pid" 2>/dev/null; then return 0; fi
		rm -rf "$AGENT_SPOOL/send.lock"
		mkdir "$AGENT_SPOOL/send.lock" 2>/dev/null || return 0
	fi
	echo $$ > "$AGENT_SPOOL/send.lock/pid"
	[ "${1:-}" = once ] && AGENT_ONCE=1
	trap 'rm -rf "$AGENT_SPOOL/send.lock"' EXIT INT TERM
	_sd_attempt=0
	_sd_rc=0
	while :; do
		_sd_next=$(agent_entries | head -n 1)
		[ -n "$_sd_next" ] || break
		if agent_send_one "$_sd_next"; then
			_sd_attempt=0
			continue
		fi
		_sd_attempt=$((_sd_attempt + 1))
		if [ "${1:-}" = once ]; then
			agent_log "sending stopped: $AGENT_LAST_ERROR"
			_sd_rc=1
			break
		fi
		_sd_wait=$(agent_backoff "$_sd_attempt")
		agent_log "$AGENT_LAST_ERROR; retrying in ${_sd_wait}s (attempt $_sd_attempt)"
		sleep "$_sd_wait"
	done
	rm -rf "$AGENT_SPOOL/send.lock"
	trap - EXIT INT TERM
	return "$_sd_rc"
}

# agent_send_background: a detached sender (logging to the state dir).
agent_send_background() {
	setsid "$AGENT_SELF_SH" sh "$AGENT_SELF" send >> "$AGENT_STATE/send.log" 2>&1 < /dev/null &
}
