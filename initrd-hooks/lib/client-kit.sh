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
