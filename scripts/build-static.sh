#!/usr/bin/env bash
# Builds a fully static qga-agent: one file with no shared library at all that runs in
# any x86_64 Linux guest, and what the test VM boots. Prints the binary's path.
#
#   scripts/build-static.sh            # musl (1.1 MB, ~1 MB idle RSS); glibc if the
#                                      # musl target is not installed
#   QGA_STATIC_LIBC=glibc scripts/build-static.sh   # glibc with crt-static (2.0 MB)
#
# Users are looked up in /etc/passwd only by either build: musl has no NSS modules,
# and a static glibc cannot load them (with "passwd: files systemd" or "sss" in
# /etc/nsswitch.conf, a user that "files" does not know crashes a static glibc
# lookup; musl just reports it missing). Error texts are glibc's in both builds.
# Both builds are about as fast as the dynamic one (the agent keeps its per-reply
# buffers, which musl's malloc would otherwise give back to the kernel each time);
# see the README's Performance section.
set -euo pipefail
cd "$(dirname "$0")/.."
libc=${QGA_STATIC_LIBC:-musl}
if [[ $libc == musl ]] && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    echo "build-static: the x86_64-unknown-linux-musl target is not installed" \
        "(rustup target add x86_64-unknown-linux-musl); building with glibc instead" >&2
    libc=glibc
fi
if [[ $libc == musl ]]; then
    cargo build --quiet --release -p qga-agent \
        --target x86_64-unknown-linux-musl --target-dir target/static "$@"
    echo "$PWD/target/static/x86_64-unknown-linux-musl/release/qga-agent"
else
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --quiet --release -p qga-agent \
        --target x86_64-unknown-linux-gnu --target-dir target/static "$@"
    echo "$PWD/target/static/x86_64-unknown-linux-gnu/release/qga-agent"
fi
