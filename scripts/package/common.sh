# Shared by test-chroot.sh and test-vm.sh (sourced, after TAG is set): logging,
# timing, and the `[--keep] DEB_DIR` arguments with the two packages found in DEB_DIR.

log() { printf '[%s] %s\n' "$TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$TAG" "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# newest_file GLOB...: the last existing match, or nothing.
newest_file() { local f last=''; for f in "$@"; do [[ -f $f ]] && last=$f; done; echo "$last"; }

# parse_deb_args "$@": sets KEEP, DEB_DIR, AGENT_DEB and CLI_DEB (either may be empty).
parse_deb_args() {
    KEEP=0
    [[ ${1:-} == --keep ]] && { KEEP=1; shift; }
    [[ $# -eq 1 ]] || die "usage: $0 [--keep] DEB_DIR"
    DEB_DIR=$(cd "$1" && pwd)
    AGENT_DEB=$(newest_file "$DEB_DIR"/qga-agent_*.deb)
    CLI_DEB=$(newest_file "$DEB_DIR"/qga_*.deb)
    [[ -n $AGENT_DEB ]] || die "no qga-agent_*.deb in $DEB_DIR"
}
