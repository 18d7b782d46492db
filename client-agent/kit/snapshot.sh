# shellcheck shell=sh
# The kit agent's snapshot: what changed in the overlay's upper directory
# since the last commit of this boot, by content, and the tar that carries
# exactly that. Sourced by strata-agent; needs the kit's busybox applets
# first in PATH and the tool functions (ktar, kgetfattr) of tools.sh.
#
# A listing has one line per path: "./path<TAB>signature". The signature
# is what a commit must carry when it changes: type, permissions, owner,
# size and sha256 of a file's bytes, a symlink's target, a device's numbers,
# and the xattrs (opaque directories, redirects, user/security attributes).
# Not the mtime: a file rewritten with the same bytes is not a change.
# (File names with a newline or a tab are not supported.)

# agent_find_args: the find(1) expression that prunes the excluded paths.
# Patterns come from the kit's etc/excludes, one per line, relative to /.
agent_prune_expr() {
	_pe_first=1
	printf '('
	while IFS= read -r _pe_p; do
		[ -n "$_pe_p" ] || continue
		[ "$_pe_first" = 1 ] || printf ' -o'
		printf ' -path ./%s' "$_pe_p"
		_pe_first=0
	done < "$AGENT_EXCLUDES"
	[ "$_pe_first" = 1 ] && printf ' -false'
	printf ' )'
}

# agent_list UPPER OUTFILE: the sorted listing of UPPER; also writes
# OUTFILE.newest, the newest mtime of a regular file (seconds).
agent_list() {
	_al_t=$AGENT_TMP/list
	rm -rf "$_al_t" && mkdir -p "$_al_t" || return 2
	# The prune expression is a list of words on purpose.
	# shellcheck disable=SC2046
	set -f
	_al_prune=$(agent_prune_expr)
	(
		cd "$1" || exit 2
		# shellcheck disable=SC2086
		find . -mindepth 1 $_al_prune -prune -o -exec stat -c '%f %u %g %s %t:%T %Y %n' {} + > "$_al_t/stat" || exit 2
		# shellcheck disable=SC2086
		find . -mindepth 1 $_al_prune -prune -o -type f -exec sha256sum {} + > "$_al_t/sha" || exit 2
		# shellcheck disable=SC2086
		find . -mindepth 1 $_al_prune -prune -o -type l -exec stat -c '%n|%N' {} + > "$_al_t/links" || exit 2
		kgetfattr -R -P -d -m - -e hex . > "$_al_t/xattrs" 2>/dev/null
		exit 0
	) || { set +f; return 2; }
	set +f
	awk -v newest="$2.newest" '
		function hex(s,   i, n) { n = 0; s = tolower(s); for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return n }
		function norm(p) { sub(/^\.\//, "", p); return "./" p }
		FILENAME ~ /\/xattrs$/ {
			if ($0 ~ /^# file: /) { cur = norm(substr($0, 9)); next }
			if ($0 == "" || cur == "") next
			# Bookkeeping of this one overlay mount (inode origins, counts) is not content.
			if ($0 ~ /^trusted\.overlay\.(origin|impure|nlink|upper|uuid)=/) next
			xa[cur] = xa[cur] " " $0
			next
		}
		FILENAME ~ /\/sha$/ { p = substr($0, 67); sha[norm(p)] = substr($0, 1, 64); next }
		FILENAME ~ /\/links$/ {
			i = index($0, "|"); p = substr($0, 1, i - 1); rest = substr($0, i + 1)
			pre = "'\''" p "'\'' -> '\''"
			t = substr(rest, length(pre) + 1); sub(/'\''$/, "", t)
			ln[norm(p)] = t
			next
		}
		{
			mode = hex($1); type = int(mode / 4096); perm = mode % 4096
			p = $0; for (k = 1; k <= 6; k++) sub(/^[^ ]* /, "", p)
			p = norm(p)
			if (type == 12) next   # sockets cannot be archived
			s = type " " sprintf("%o", perm) " " $2 ":" $3
			if (type == 8) { s = s " " $4 " " sha[p]; if ($6 + 0 > max) max = $6 + 0 }
			else if (type == 10) s = s " ->" ln[p]
			else if (type == 2 || type == 6) s = s " " $5
			if (p in xa) s = s " x" xa[p]
			print p "\t" s
		}
		END { print max + 0 > newest }
	' "$_al_t/xattrs" "$_al_t/sha" "$_al_t/links" "$_al_t/stat" | LC_ALL=C sort > "$2" || return 2
}

# agent_diff BASELINE CURRENT CHANGED REMOVED: paths to send (new or
# different signature) and paths to white out (in the baseline, gone now;
# only the topmost of a removed tree, and never below a path that is now
# a non-directory). Both lists are "./path" lines in order.
agent_diff() {
	: > "$3"
	: > "$4"
	awk -F '\t' -v basefile="$1" -v changed="$3" -v removed="$4" '
		FILENAME == basefile { base[$1] = $2; next }
		{
			cur[$1] = $2
			if (!($1 in base) || base[$1] != $2) { print $1 > changed; chg[$1] = 1 }
		}
		END {
			n = 0
			for (p in base) if (!(p in cur)) gone[p] = 1
			for (p in gone) {
				# A whiteout in the baseline that vanished: nothing below to hide.
				if (base[p] ~ /^2 [0-7]+ [0-9]+:[0-9]+ 0:0/) continue
				skip = 0; q = p
				while (sub(/\/[^\/]*$/, "", q) && q != ".") {
					if (q in gone) { skip = 1; break }
					if ((q in cur) && cur[q] !~ /^4 /) { skip = 1; break }
				}
				if (!skip) list[++n] = p
			}
			for (i = 1; i <= n; i++) { print list[i] > removed; chg[list[i]] = 2 }
			# The directories above a change go along with their own metadata:
			# otherwise the layer would imply them with default owner, mode and
			# no xattrs, hiding what lower layers say about them.
			for (p in chg) {
				q = p
				while (sub(/\/[^\/]*$/, "", q) && q != ".") if ((q in cur) && !(q in chg) && !(q in anc)) anc[q] = 1
			}
			for (q in anc) print q > changed
			close(changed); close(removed)
		}
	' "$1" "$2"
	LC_ALL=C sort -o "$3" "$3"
	LC_ALL=C sort -o "$4" "$4"
}

# agent_whiteouts REMOVED DIR: a character device 0:0 (overlayfs' whiteout)
# in DIR for every removed path, so tar archives them like the upper
# directory's own whiteouts.
agent_whiteouts() {
	rm -rf "$2" && mkdir -p "$2" || return 2
	while IFS= read -r _wo_p; do
		mkdir -p "$2/${_wo_p%/*}" && mknod "$2/$_wo_p" c 0 0 || return 2
	done < "$1"
}

# agent_tar UPPER CHANGED WHDIR REMOVED OUT: the layer tar. Exit 1 from
# GNU tar means a file changed while it was read.
agent_tar() {
	_at_x='--xattrs-exclude=trusted.overlay.origin --xattrs-exclude=trusted.overlay.impure --xattrs-exclude=trusted.overlay.nlink --xattrs-exclude=trusted.overlay.upper --xattrs-exclude=trusted.overlay.uuid --xattrs-exclude=system.*'
	set -f
	# shellcheck disable=SC2086
	ktar --format=posix --numeric-owner --xattrs --xattrs-include='*' $_at_x --no-recursion --verbatim-files-from \
		-cf "$5" -C "$1" -T "$2" -C "$3" -T "$4"
	_at_rc=$?
	set +f
	return "$_at_rc"
}
