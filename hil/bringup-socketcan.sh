#!/usr/bin/env bash
# Bring up a SocketCAN interface for candiag on a bench or a charger controller.
#
# usage: hil/bringup-socketcan.sh IFACE BITRATE [--listen-only] [--restart-ms N]
#                                 [--termination] [--berr-reporting] [--dry-run]
#
#   IFACE             e.g. can0 (PCAN-USB on Linux: the mainline peak_usb driver names it canN)
#   BITRATE           nominal bit/s, 10000..1000000 (charger module buses: usually 125000)
#   --listen-only     the controller neither transmits nor ACKs (a live charger: candiag must
#                     be invisible).  NOT on a two-adapter bench: somebody must ACK the
#                     simulator's frames, or it retransmits each frame until bus-off.
#   --restart-ms N    automatic restart N ms after bus-off (without it, bus-off is permanent
#                     until `ip link set IFACE type can restart`)
#   --termination     switch the adapter's 120 ohm terminator on (only adapters whose driver
#                     supports it, e.g. some gs_usb/candleLight, PCAN-USB Pro FD; others refuse)
#   --berr-reporting  ask the driver for bus-error frames (protocol errors); floods on a
#                     broken bus, useful for commissioning
#   --dry-run         print the ip commands instead of running them
#
# Needs root (CAP_NET_ADMIN) except with --dry-run.  Prints the resulting link details.
set -euo pipefail

usage() {
    sed -n '4,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 2 ] || usage
iface="$1"
bitrate="$2"
shift 2
listen_only=off
restart_ms=""
termination=""
berr=""
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --listen-only) listen_only=on ;;
        --restart-ms)
            [ $# -ge 2 ] || usage
            restart_ms="$2"
            shift
            ;;
        --termination) termination=120 ;;
        --berr-reporting) berr=on ;;
        --dry-run) dry_run=1 ;;
        -h | --help) usage ;;
        *)
            echo "bringup-socketcan: unknown option $1" >&2
            usage
            ;;
    esac
    shift
done

if ! [[ "$iface" =~ ^[A-Za-z0-9_.:-]{1,15}$ ]]; then
    echo "bringup-socketcan: '$iface' is not an interface name (e.g. can0)" >&2
    exit 2
fi
if ! [[ "$bitrate" =~ ^[0-9]+$ ]] || [ "$bitrate" -lt 10000 ] || [ "$bitrate" -gt 1000000 ]; then
    echo "bringup-socketcan: bitrate '$bitrate' must be 10000..1000000 bit/s (e.g. 125000)" >&2
    exit 2
fi
if [ -n "$restart_ms" ] && ! [[ "$restart_ms" =~ ^[0-9]+$ ]]; then
    echo "bringup-socketcan: --restart-ms needs milliseconds, e.g. --restart-ms 100" >&2
    exit 2
fi

args=(type can bitrate "$bitrate" listen-only "$listen_only")
[ -n "$restart_ms" ] && args+=(restart-ms "$restart_ms")
[ -n "$termination" ] && args+=(termination "$termination")
[ -n "$berr" ] && args+=(berr-reporting "$berr")

run() {
    if [ "$dry_run" = 1 ]; then
        echo "$*"
    else
        "$@"
    fi
}

if [ "$dry_run" = 0 ]; then
    [ "$(id -u)" -eq 0 ] || {
        echo "bringup-socketcan: needs root (CAP_NET_ADMIN): sudo $0 ..." >&2
        exit 1
    }
    modprobe can_raw 2>/dev/null || true
    if ! ip link show "$iface" >/dev/null 2>&1; then
        echo "bringup-socketcan: no interface '$iface'. Is the adapter plugged in?" \
            "(PCAN-USB: 'modprobe peak_usb', then 'ip -br link' lists canN)" >&2
        exit 1
    fi
fi
run ip link set "$iface" down
if ! run ip link set "$iface" "${args[@]}"; then
    echo "bringup-socketcan: the driver refused '${args[*]}'." \
        "Drop --termination (not all adapters can switch it) or check the bitrate." >&2
    exit 1
fi
run ip link set "$iface" up
run ip -details -statistics link show "$iface"
