#!/usr/bin/env bash
# Run tests/socketcan inside a microVM with Debian's kernel (real SocketCAN: vcan, can_raw).
#
# Why a VM: the host kernel of CI and of our dev machines has no AF_CAN, so the
# python-can `socketcan` path, kernel error frames, `ip link set vcan0 down/up`
# and can-utils can only be exercised under a kernel that has them.  virtme-ng
# boots the installed Debian kernel on the host's own filesystem (read-only)
# with one writable directory, where the guest writes its exit code and log.
#
# Usage: hil/vm/run.sh [pytest args...]        (normally via `make test-socketcan`)
#        CANDIAG_VM_COMMAND='cmd ...' hil/vm/run.sh
#                             run that shell command in the guest instead of pytest (the
#                             SocketCAN benchmark, bench/bench_socketcan.py): its output is
#                             printed and its exit status returned; 77 when no VM can run
# Env:   CANDIAG_VM_KVM=1     use KVM (default: TCG, KVM is unreliable on our runners)
#        CANDIAG_VM_TIMEOUT   seconds for the whole VM run (default 1500: the suite takes about 7 minutes under TCG on 2 idle cores, over 12 on busy ones)
#        CANDIAG_VM_MEMORY    guest memory (default 2G)
#        CANDIAG_VM_KEEP=1    keep the work directory for inspection
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${CANDIAG_VENV:-$repo/.venv}"
vng_venv="$venv/vng"
timeout_s="${CANDIAG_VM_TIMEOUT:-1500}"
memory="${CANDIAG_VM_MEMORY:-2G}"

command="${CANDIAG_VM_COMMAND:-}"
label="test-socketcan"
[ -z "$command" ] || label="microvm"

# Exit 0 (77 for a command, so its caller can tell) with a reason: only when this machine
# cannot run a VM at all.
cannot_run_vm() {
    echo "$label: SKIPPED, this machine cannot run the microVM: $*" >&2
    if [ -n "$command" ]; then exit 77; fi
    exit 0
}

log() { echo "$label: $*" >&2; }

# --- install what is missing --------------------------------------------------
have_kernel_with_vcan() {
    local k ver
    for k in /boot/vmlinuz-*; do
        [ -r "$k" ] || continue
        ver="${k#/boot/vmlinuz-}"
        ls "/lib/modules/$ver/kernel/drivers/net/can/vcan.ko"* >/dev/null 2>&1 && return 0
    done
    return 1
}

install_packages() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    have_kernel_with_vcan || missing+=(linux-image-amd64)
    command -v candump >/dev/null || missing+=(can-utils)
    # virtme-ng's guest init needs a statically linked busybox.
    dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        cannot_run_vm "missing ${missing[*]} and no root apt-get to install them"
    fi
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || cannot_run_vm "apt-get install ${missing[*]} failed"
}

install_vng() {
    [ -x "$vng_venv/bin/vng" ] && return 0
    log "installing virtme-ng (pip, into $vng_venv)"
    python3 -m venv "$vng_venv" || "$venv/bin/python" -m venv "$vng_venv" \
        || cannot_run_vm "cannot create a venv for virtme-ng"
    "$vng_venv/bin/pip" install --quiet virtme-ng || cannot_run_vm "pip install virtme-ng failed"
}

# Newest installed kernel that ships the vcan module (the running one may not).
pick_kernel() {
    local k ver best=""
    for k in $(printf '%s\n' /boot/vmlinuz-* | sort -V); do
        ver="${k#/boot/vmlinuz-}"
        ls "/lib/modules/$ver/kernel/drivers/net/can/vcan.ko"* >/dev/null 2>&1 && best="$k"
    done
    echo "$best"
}

install_packages
install_vng
[ -x "$venv/bin/python" ] || { log "no project venv at $venv (run make first)"; exit 2; }
kernel="$(pick_kernel)"
[ -n "$kernel" ] || cannot_run_vm "no /boot/vmlinuz-* with a vcan module after installing linux-image-amd64"
[ -r "$kernel" ] || cannot_run_vm "$kernel is not readable"
# A quick probe that qemu itself can start here (no VM is possible otherwise).
qemu-system-x86_64 -machine none -display none -S -nodefaults -monitor none \
    </dev/null >/dev/null 2>&1 &
probe=$!
sleep 1
if ! kill -0 "$probe" 2>/dev/null; then
    wait "$probe" || cannot_run_vm "qemu-system-x86_64 does not start on this machine"
else
    kill "$probe" 2>/dev/null
    wait "$probe" 2>/dev/null || true
fi

# --- boot and run ---------------------------------------------------------------
work="$(mktemp -d /tmp/candiag-vm.XXXXXX)"
# shellcheck disable=SC2317  # called through the trap
cleanup() { if [ "${CANDIAG_VM_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
[ $# -eq 0 ] || printf '%q ' "$@" >"$work/pytest-args"
[ -z "$command" ] || printf '%s\n' "$command" >"$work/command"

accel=(--disable-kvm)
[ "${CANDIAG_VM_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && accel=()

log "booting $(basename "$kernel") (${accel[*]:-kvm}, $memory, 2 cpus, timeout ${timeout_s}s)"
started=$(date +%s)
set +e
PATH="$vng_venv/bin:$PATH" timeout --kill-after=10 "$timeout_s" \
    vng -r "$kernel" --user root "${accel[@]}" --memory "$memory" --cpus 2 \
    --rwdir "$work" --cwd "$repo" \
    -- "bash $repo/hil/vm/guest.sh $work $venv" >"$work/console.log" 2>&1 </dev/null
vng_rc=$?
set -e
elapsed=$(($(date +%s) - started))

# The result file is the truth: vng's own exit code does not carry the guest's.
[ -f "$work/pytest.log" ] && cat "$work/pytest.log"
[ -f "$work/output.log" ] && cat "$work/output.log"
if [ ! -f "$work/booted" ]; then
    log "the VM did not boot (vng exit $vng_rc after ${elapsed}s); console:"
    tail -n 40 "$work/console.log" >&2
    exit 1
fi
if [ ! -f "$work/rc" ]; then
    log "the guest did not finish (vng exit $vng_rc after ${elapsed}s; timeout ${timeout_s}s); console:"
    tail -n 40 "$work/console.log" >&2
    exit 1
fi
rc="$(cat "$work/rc")"
if [ -n "$command" ]; then
    log "guest command finished with exit $rc in ${elapsed}s (boot included)"
else
    log "VM suite finished with exit $rc in ${elapsed}s (boot + tests)"
fi
exit "$rc"
