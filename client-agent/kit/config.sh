# shellcheck shell=sh
# The kit agent's settings: the kernel command line the machine booted with
# (strata.server, strata.profile, strata.ssh), what the initramfs left in
# /run/strata, and STRATA_AGENT_* environment overrides (for tests and for
# machines that need them). Parsing only; nothing here touches the network.

# agent_parse_cmdline "CMDLINE": sets CL_SERVER CL_PROFILE CL_SSH CL_COMMIT.
agent_parse_cmdline() {
	CL_SERVER=''
	CL_PROFILE=''
	CL_SSH=''
	CL_COMMIT=''
	set -f
	# shellcheck disable=SC2086
	set -- $1
	set +f
	for _pc_w in "$@"; do
		case $_pc_w in
			strata.server=*) CL_SERVER=${_pc_w#strata.server=} ;;
			strata.profile=*) CL_PROFILE=${_pc_w#strata.profile=} ;;
			strata.ssh=*) CL_SSH=${_pc_w#strata.ssh=} ;;
			strata.commit=*) CL_COMMIT=${_pc_w#strata.commit=} ;;
		esac
	done
}

# agent_host_of URL: the host of http://HOST[:PORT][/...].
agent_host_of() {
	_ho=${1#*://}
	_ho=${_ho%%/*}
	case $_ho in
		\[*\]*) _ho=${_ho#\[}; echo "${_ho%%\]*}" ;;
		*) echo "${_ho%%:*}" ;;
	esac
}

# agent_config "CMDLINE": every AGENT_* setting.
agent_config() {
	agent_parse_cmdline "$1"
	AGENT_RUN=${STRATA_AGENT_RUN:-/run/strata}
	AGENT_UPPER=${STRATA_AGENT_UPPER:-/.rw/upper}
	AGENT_BOOTED=$(cat "$AGENT_RUN/commit" 2>/dev/null)
	[ -n "$AGENT_BOOTED" ] || AGENT_BOOTED=$CL_COMMIT
	AGENT_PROFILE=${STRATA_AGENT_PROFILE:-$CL_PROFILE}
	AGENT_SSH_HOST=${STRATA_AGENT_SSH_HOST:-$(agent_host_of "$CL_SERVER")}
	AGENT_SSH_PORT=${STRATA_AGENT_SSH_PORT:-2222}
	case $CL_SSH in
		'') ;;
		*:*) [ -n "${STRATA_AGENT_SSH_HOST:-}" ] || AGENT_SSH_HOST=${CL_SSH%:*}; [ -n "${STRATA_AGENT_SSH_PORT:-}" ] || AGENT_SSH_PORT=${CL_SSH##*:} ;;
		*) [ -n "${STRATA_AGENT_SSH_PORT:-}" ] || AGENT_SSH_PORT=$CL_SSH ;;
	esac
	AGENT_SERVER=${STRATA_AGENT_SERVER:-$CL_SERVER}
	AGENT_SSH_USER=${STRATA_AGENT_SSH_USER:-strata}
	# On the backup disk when the initramfs mounted one, so a spooled push
	# and the agent's key survive a reboot; else in RAM.
	if [ -n "${STRATA_AGENT_STATE:-}" ]; then
		AGENT_STATE=$STRATA_AGENT_STATE
	elif [ -d "$AGENT_RUN/backup/strata" ]; then
		AGENT_STATE=$AGENT_RUN/backup/strata/agent
	else
		AGENT_STATE=$AGENT_RUN/agent
	fi
	AGENT_SPOOL=$AGENT_STATE/spool
	AGENT_KEY=$AGENT_STATE/agent_key
	AGENT_TMP=${STRATA_AGENT_TMP:-$AGENT_RUN/agent-tmp}
	AGENT_EXCLUDES=$AGENT_KIT/etc/excludes
	AGENT_BOOT_ID=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
	[ -z "${STRATA_AGENT_BOOT_ID:-}" ] || AGENT_BOOT_ID=$STRATA_AGENT_BOOT_ID
	AGENT_ZSTD_LEVEL=${STRATA_AGENT_ZSTD_LEVEL:-3}
	AGENT_RETRY_MAX=${STRATA_AGENT_RETRY_MAX:-300}
	AGENT_UNSTABLE_RETRIES=3
	AGENT_QUIET=30
	AGENT_CMDLINE_FILE=${STRATA_AGENT_CMDLINE:-/proc/cmdline}
}
# Read before agent_config runs (agent_setup passes the file's text to it).
AGENT_CMDLINE_FILE=${STRATA_AGENT_CMDLINE:-/proc/cmdline}
