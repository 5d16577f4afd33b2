#!/usr/bin/env bash
# Installs the Autobahn|Testsuite fuzzing client (`wstest`) that the WebSocket
# conformance test (tests/it/conformance.rs) runs, and prints its path.
#
# autobahntestsuite (PyPI, 25.10.1 like every release before it) is Python 2 code: it
# does not even parse on Python 3 (print statements, `except X, e`), and it has no
# maintained Python 3 fork. So it runs, unchanged, on the machine's Python 2.7 (pyenv's
# 2.7.18 here; any python2.7 on PATH works) in a virtualenv under the download cache,
# with its dependencies pinned to the last releases that support Python 2.7.
set -euo pipefail

CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
VENV="$CACHE/autobahn-py27"
WSTEST="$VENV/bin/wstest"

if [[ ! -x "$WSTEST" ]]; then
  py2=$(command -v python2.7 2>/dev/null || true)
  if [[ -z "$py2" ]] && command -v pyenv >/dev/null; then
    for v in $(pyenv versions --bare 2>/dev/null | grep '^2\.7' | sort -rV); do
      py2="$(pyenv root)/versions/$v/bin/python2.7"
      [[ -x "$py2" ]] && break
    done
  fi
  if [[ -z "$py2" || ! -x "$py2" ]]; then
    echo "autobahn.sh: Python 2.7 is needed for autobahntestsuite (none on PATH or in pyenv)" >&2
    exit 1
  fi
  # virtualenv < 20.22 is the last that creates Python 2.7 environments; it lives in
  # the Python 3 venv that scripts/services/services.sh also uses.
  [[ -x "$CACHE/venv/bin/python" ]] || python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q 'virtualenv<20.22'
  rm -rf "$VENV"
  "$CACHE/venv/bin/virtualenv" -q -p "$py2" "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    autobahntestsuite==25.10.1 'autobahn[twisted]==0.10.9' Twisted==19.10.0 \
    txaio==2.1.0 six==1.16.0 zope.interface==4.6.0 Jinja2==2.11.3 MarkupSafe==1.1.1 \
    klein==17.10.0 Werkzeug==1.0.1 pyOpenSSL==19.1.0 cryptography==3.3.2 \
    service-identity==18.1.0 unittest2==1.1.0 2>&1 | grep -v DEPRECATION >&2 || true
  "$WSTEST" --help >/dev/null
fi
echo "$WSTEST"
