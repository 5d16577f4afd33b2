# Checks that a tool the suite needs is not only on PATH but runs, and names the
# missing piece and its fix in one line when it does not. Sourced by prereqs.sh.

# need_tool NAME "VERSION COMMAND" "FIX" — runs VERSION COMMAND (a shell snippet) and
# fails with "NAME: ... fix: FIX" when it does not succeed.
need_tool() {
  local name="$1" probe="$2" fix="$3" out
  if ! out="$(bash -c "$probe" 2>&1)"; then
    echo "prerequisite missing: $name does not run (${out%%$'\n'*}); fix: $fix" >&2
    return 1
  fi
}
