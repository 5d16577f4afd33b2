# Finding a Python interpreter that really runs. Sourced by the scripts that build
# virtualenvs (services.sh, autobahn.sh, ci/validate-deploy.sh).
#
# `command -v python2.7` is not enough: with pyenv, every version has a shim on PATH,
# and a shim for a version that is not the selected one fails when run ("pyenv:
# python2.7: command not found ... exists in these Python versions"). So each
# candidate is run, and only one that answers with the wanted version counts; pyenv's
# installed versions are tried by their real paths, which need no shim.

# find_python MAJOR.MINOR|3 — prints the path of a working interpreter of that version
# (for "3": any 3.x, 3.9 or newer), or returns 1.
find_python() {
  local want="$1" c v candidates=()
  if [[ "$want" == 3 ]]; then
    candidates+=(python3 /usr/bin/python3)
  else
    candidates+=("python$want")
  fi
  if command -v pyenv >/dev/null 2>&1; then
    local root
    root="$(pyenv root 2>/dev/null || true)"
    if [[ -n "$root" ]]; then
      for v in $(pyenv versions --bare 2>/dev/null | grep -E "^${want//./\\.}(\.|$)" | sort -rV); do
        if [[ "$want" == 3 ]]; then
          candidates+=("$root/versions/$v/bin/python3")
        else
          candidates+=("$root/versions/$v/bin/python$want")
        fi
      done
    fi
  fi
  for c in "${candidates[@]}"; do
    python_works "$c" "$want" && { command -v "$c"; return 0; }
  done
  return 1
}

# python_works PATH WANT — true if PATH runs and is of version WANT ("3": 3.9 or newer).
python_works() {
  local py="$1" want="$2" got
  command -v "$py" >/dev/null 2>&1 || return 1
  got="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 1
  if [[ "$want" == 3 ]]; then
    [[ "$got" == 3.* && "${got#3.}" -ge 9 ]]
  else
    [[ "$got" == "$want" ]]
  fi
}

# need_python MAJOR.MINOR|3 WHAT — find_python, or exit with one line that names what is
# missing and how to get it.
need_python() {
  local want="$1" what="$2" py
  if py="$(find_python "$want")"; then
    echo "$py"
    return 0
  fi
  local hint="apt-get install python3 python3-venv"
  [[ "$want" == 3 ]] || hint="pyenv install $want (or a python$want on PATH)"
  echo "$what needs Python $want: no working interpreter found on PATH or in pyenv's versions; fix: $hint" >&2
  exit 1
}

# make_venv DIR WHAT — a Python 3 virtualenv at DIR (kept when it already runs), or exit
# with one line naming the fix.
make_venv() {
  local dir="$1" what="$2" py
  if [[ -x "$dir/bin/python" ]] && python_works "$dir/bin/python" 3; then
    return 0
  fi
  py="$(need_python 3 "$what")" || exit 1
  rm -rf "$dir"
  if ! "$py" -m venv "$dir" >/dev/null 2>&1; then
    rm -rf "$dir"
    echo "$what: '$py -m venv' failed; fix: apt-get install python3-venv (or use pyenv's Python 3)" >&2
    exit 1
  fi
}
