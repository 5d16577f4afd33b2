#!/usr/bin/env bash
# Installs the Autobahn|Testsuite fuzzing client (`wstest`) that the WebSocket
# conformance test (tests/it/conformance.rs) runs, and prints its path.
#
# autobahntestsuite (PyPI, 25.10.1 like every release before it) is Python 2 code: it
# does not even parse on Python 3 (print statements, `except X, e`), and it has no
# maintained Python 3 fork. So it runs, unchanged, on the machine's Python 2.7 (pyenv's
# 2.7.18 here; any python2.7 on PATH that runs works: scripts/lib/python.sh) in a virtualenv under the download cache,
# with its dependencies pinned to the last releases that support Python 2.7.
set -euo pipefail

CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
VENV="$CACHE/autobahn-py27"
WSTEST="$VENV/bin/wstest"

if [[ ! -x "$WSTEST" ]]; then
  # shellcheck source=lib/python.sh
  source "$(dirname "$0")/lib/python.sh"
  py2="$(need_python 2.7 "autobahntestsuite (the WebSocket conformance test)")"
  # virtualenv < 20.22 is the last that creates Python 2.7 environments; it lives in
  # the Python 3 venv that scripts/services/services.sh also uses.
  make_venv "$CACHE/venv" "autobahn.sh"
  PIP_CACHE_DIR="$CACHE/pip" "$CACHE/venv/bin/pip" install -q --disable-pip-version-check 'virtualenv<20.22' \
    || { echo "autobahn.sh: pip could not install virtualenv<20.22 (is PyPI reachable?)" >&2; exit 1; }
  rm -rf "$VENV"
  # virtualenv keeps what it learnt of interpreters in its app data: under the cache,
  # not ~/.local/share, so nothing from another run of another Python answers for
  # this one.
  VIRTUALENV_OVERRIDE_APP_DATA="${VIRTUALENV_OVERRIDE_APP_DATA:-$CACHE/virtualenv-app-data}" \
    "$CACHE/venv/bin/virtualenv" -q -p "$py2" "$VENV" \
    || { echo "autobahn.sh: virtualenv could not create a Python 2.7 environment with $py2" >&2; exit 1; }
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    autobahntestsuite==25.10.1 'autobahn[twisted]==0.10.9' Twisted==19.10.0 \
    txaio==2.1.0 six==1.16.0 zope.interface==4.6.0 Jinja2==2.11.3 MarkupSafe==1.1.1 \
    klein==17.10.0 Werkzeug==1.0.1 pyOpenSSL==19.1.0 cryptography==3.3.2 \
    service-identity==18.1.0 unittest2==1.1.0 2>&1 | grep -v DEPRECATION >&2 || true
  "$WSTEST" --help >/dev/null \
    || { echo "autobahn.sh: wstest was installed in $VENV but does not run" >&2; exit 1; }
fi
echo "$WSTEST"
