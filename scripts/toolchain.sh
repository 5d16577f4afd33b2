#!/usr/bin/env bash
# Makes the toolchain pinned in rust-toolchain.toml available without a download when
# the machine's stable toolchain is that very version (no network to rustup's servers).
set -euo pipefail
want=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
if ! rustup toolchain list | grep -q "^$want"; then
  stable=$(rustup toolchain list | sed -n 's/^\(stable-[^ ]*\).*/\1/p' | head -n1)
  if [ -n "$stable" ] && rustup run "$stable" rustc --version | grep -q "rustc $want "; then
    rustup toolchain link "$want" "$(rustup run "$stable" rustc --print sysroot)"
  fi
fi
