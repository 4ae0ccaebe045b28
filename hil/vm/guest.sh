#!/usr/bin/env bash
# Inside the microVM: bring up vcan0/vcan1 and vxcan0<->vxcan1, run tests/socketcan (or the
# command in $1/command: the SocketCAN benchmark), write rc and log to $1.
# The host filesystem is read-only here except $1, so every cache and temp goes there.
set -uo pipefail
out="$1"
venv="$2"
touch "$out/booted"
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

setup() {
    ip link set lo up || return 1  # the daemon's /metrics on 127.0.0.1
    modprobe vcan && modprobe can_raw || return 1
    local ifc
    for ifc in vcan0 vcan1; do
        ip link add "$ifc" type vcan && ip link set up "$ifc" || return 1
    done
    # A vxcan pair is two "adapters" on one bus: the HIL suite's SIM and DUT.
    modprobe vxcan && ip link add vxcan0 type vxcan peer name vxcan1 || return 1
    ip link set up vxcan0 && ip link set up vxcan1 || return 1
}

if ! setup >"$out/setup.log" 2>&1; then
    cat "$out/setup.log" >"$out/pytest.log"
    echo 3 >"$out/rc"
    exit 0
fi

mkdir -p "$out/tmp" "$out/home"
export HOME="$out/home" TMPDIR="$out/tmp" PYTHONDONTWRITEBYTECODE=1
export CANDIAG_SOCKETCAN=1 CANDIAG_VM_OUT="$out" PATH="$venv/bin:$PATH"
# Keep hypothesis' example database out of the read-only tree.
export HYPOTHESIS_STORAGE_DIRECTORY="$out/hypothesis"
if [ -f "$out/command" ]; then
    bash -c "$(cat "$out/command")" >"$out/output.log" 2>&1
    echo $? >"$out/rc"
    sync
    exit 0
fi
eval "set -- $(cat "$out/pytest-args" 2>/dev/null)"

"$venv/bin/python" -m pytest tests/socketcan -p no:cacheprovider \
    --basetemp="$out/pytest-tmp" -o junit_family=xunit2 --junitxml="$out/junit.xml" \
    -rs -v "$@" >"$out/pytest.log" 2>&1
echo $? >"$out/rc"
sync
