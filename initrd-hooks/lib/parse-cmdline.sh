# shellcheck shell=sh
# strata: pure parsing for the initramfs. Nothing in this file touches the
# network, a disk or a mount: it only turns text (the kernel command line, a
# manifest) into shell variables and lines, so it can be tested on any host
# with `sh -c '. parse-cmdline.sh; ...'` and behaves the same under busybox
# ash, dash (initramfs-tools) and bash (dracut).

# strata_parse_cmdline "CMDLINE"
# Sets STRATA_SERVER STRATA_COMMIT STRATA_PROFILE STRATA_BACKUP
# STRATA_BACKUP_FORMAT STRATA_UPPER STRATA_DEBUG STRATA_RETRIES
# STRATA_REBOOT_DELAY STRATA_INIT STRATA_ROOT. Unknown words are ignored
# (the kernel command line is shared with everything else that boots).
strata_parse_cmdline() {
	STRATA_SERVER=''
	STRATA_COMMIT=''
	STRATA_PROFILE=''
	STRATA_BACKUP=''
	STRATA_BACKUP_FORMAT=0
	STRATA_UPPER=tmpfs
	STRATA_DEBUG=0
	STRATA_RETRIES=5
	STRATA_REBOOT_DELAY=10
	STRATA_INIT=''
	STRATA_ROOT=''
	# Word splitting on purpose: the kernel hands init one flat line.
	# shellcheck disable=SC2086
	set -f
	set -- $1
	set +f
	for _sp_word in "$@"; do
		case "$_sp_word" in
			strata.server=*) STRATA_SERVER=${_sp_word#strata.server=} ;;
			strata.commit=*) STRATA_COMMIT=${_sp_word#strata.commit=} ;;
			strata.profile=*) STRATA_PROFILE=${_sp_word#strata.profile=} ;;
			strata.backup=*) STRATA_BACKUP=${_sp_word#strata.backup=} ;;
			strata.backup.format=*) STRATA_BACKUP_FORMAT=${_sp_word#strata.backup.format=} ;;
			strata.upper=*) STRATA_UPPER=${_sp_word#strata.upper=} ;;
			strata.debug) STRATA_DEBUG=1 ;;
			strata.debug=*) STRATA_DEBUG=${_sp_word#strata.debug=} ;;
			strata.retries=*) STRATA_RETRIES=${_sp_word#strata.retries=} ;;
			strata.reboot.delay=*) STRATA_REBOOT_DELAY=${_sp_word#strata.reboot.delay=} ;;
			init=*) STRATA_INIT=${_sp_word#init=} ;;
			root=*) STRATA_ROOT=${_sp_word#root=} ;;
		esac
	done
	# A trailing slash would make "$server/v1/..." a double slash, which
	# some mirrors treat as a different path.
	while :; do
		case "$STRATA_SERVER" in
			*/) STRATA_SERVER=${STRATA_SERVER%/} ;;
			*) break ;;
		esac
	done
	case "$STRATA_DEBUG" in 1|y|yes|true|on) STRATA_DEBUG=1 ;; *) STRATA_DEBUG=0 ;; esac
	case "$STRATA_BACKUP_FORMAT" in 1|y|yes|true|on) STRATA_BACKUP_FORMAT=1 ;; *) STRATA_BACKUP_FORMAT=0 ;; esac
	case "$STRATA_RETRIES" in ''|*[!0-9]*) STRATA_RETRIES=5 ;; esac
	[ "$STRATA_RETRIES" -ge 1 ] || STRATA_RETRIES=1
	case "$STRATA_REBOOT_DELAY" in ''|*[!0-9]*) STRATA_REBOOT_DELAY=10 ;; esac
	return 0
}

# strata_check_cmdline: prints the one problem with the parsed settings
# that makes a network boot impossible, or nothing. Exit status 1 when
# there is a problem. (Whether a backup disk can stand in is decided by the
# caller; this only judges the words.)
strata_check_cmdline() {
	if [ -n "$STRATA_COMMIT" ] && ! strata_is_hex64 "$STRATA_COMMIT"; then
		echo "strata.commit=$STRATA_COMMIT is not a 64-digit lowercase hex commit id; check the iPXE script or boot entry"
		return 1
	fi
	case "$STRATA_SERVER" in
		'') echo "no strata.server= on the kernel command line; add strata.server=http://HOST:PORT"; return 1 ;;
		http://?*) ;;
		*) echo "strata.server=$STRATA_SERVER is not an http:// URL; use strata.server=http://HOST:PORT"; return 1 ;;
	esac
	if [ -z "$STRATA_COMMIT" ]; then
		echo "no strata.commit= on the kernel command line; boot through the server's iPXE script (/v1/boot/ipxe) which adds it"
		return 1
	fi
	case "$STRATA_UPPER" in
		tmpfs) ;;
		*) echo "strata.upper=$STRATA_UPPER is not supported; use strata.upper=tmpfs"; return 1 ;;
	esac
	return 0
}

# strata_is_hex64 WORD: true for exactly 64 lowercase hex digits.
strata_is_hex64() {
	case "$1" in
		*[!0-9a-f]*|'') return 1 ;;
	esac
	[ "${#1}" -eq 64 ]
}

# strata_parse_manifest FILE
# Checks the manifest format (docs/design.md "Boot manifest") and prints one
# line "HEX SIZE" per layer, base first. On a bad manifest prints what is
# wrong on stdout and returns 1 (the caller turns it into its one-line error).
strata_parse_manifest() {
	_pm_file=$1
	_pm_line_no=0
	_pm_layers=0
	_pm_out=''
	_pm_nl='
'
	while IFS= read -r _pm_line || [ -n "$_pm_line" ]; do
		_pm_line_no=$((_pm_line_no + 1))
		if [ "$_pm_line_no" -eq 1 ]; then
			if [ "$_pm_line" != 'strata-manifest 1' ]; then
				echo "manifest line 1 is not 'strata-manifest 1'"
				return 1
			fi
			continue
		fi
		[ -n "$_pm_line" ] || continue
		# shellcheck disable=SC2086
		set -f
		set -- $_pm_line
		set +f
		case "$1" in
			commit-parent)
				[ "$#" -eq 2 ] && { [ "$2" = - ] || strata_is_hex64 "$2"; } || {
					echo "manifest line $_pm_line_no: bad commit-parent"; return 1; } ;;
			kernel|initrd|layer)
				if [ "$#" -ne 3 ]; then echo "manifest line $_pm_line_no: expected '$1 sha256:<hex> <size>'"; return 1; fi
				case "$2" in sha256:*) ;; *) echo "manifest line $_pm_line_no: digest must start with sha256:"; return 1 ;; esac
				if ! strata_is_hex64 "${2#sha256:}"; then echo "manifest line $_pm_line_no: bad sha256 digest"; return 1; fi
				case "$3" in ''|*[!0-9]*) echo "manifest line $_pm_line_no: bad size"; return 1 ;; esac
				if [ "$1" = layer ]; then
					_pm_layers=$((_pm_layers + 1))
					_pm_out="$_pm_out${2#sha256:} $3$_pm_nl"
				fi ;;
			*)
				echo "manifest line $_pm_line_no: unknown word '$1'"; return 1 ;;
		esac
	done < "$_pm_file"
	if [ "$_pm_line_no" -eq 0 ]; then echo "manifest is empty"; return 1; fi
	if [ "$_pm_layers" -eq 0 ]; then echo "manifest names no layer"; return 1; fi
	printf '%s' "$_pm_out"
	return 0
}

# strata_lowerdirs MOUNTBASE COUNT: the overlay lowerdir option value for
# layers mounted at MOUNTBASE/0 (base) .. MOUNTBASE/COUNT-1 (top). overlayfs
# wants the TOP layer first. Short paths matter: the whole option string has
# to fit in one page (4096 bytes).
strata_lowerdirs() {
	_ld_i=$(($2 - 1))
	_ld_out=''
	while [ "$_ld_i" -ge 0 ]; do
		if [ -z "$_ld_out" ]; then _ld_out="$1/$_ld_i"; else _ld_out="$_ld_out:$1/$_ld_i"; fi
		_ld_i=$((_ld_i - 1))
	done
	printf '%s\n' "$_ld_out"
}

# strata_backoff ATTEMPT JITTER: seconds to wait before retry ATTEMPT (1-based):
# 1, 2, 4, 8, 16 capped at 30, plus JITTER (0..n, supplied by the caller so
# this stays pure) so a rack of machines rebooting together does not hit
# the server in lockstep.
strata_backoff() {
	_bo_d=1
	_bo_i=1
	while [ "$_bo_i" -lt "$1" ]; do
		_bo_d=$((_bo_d * 2))
		_bo_i=$((_bo_i + 1))
		[ "$_bo_d" -lt 30 ] || { _bo_d=30; break; }
	done
	echo $((_bo_d + ${2:-0}))
}
