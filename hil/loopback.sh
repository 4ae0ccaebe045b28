#!/usr/bin/env bash
# Two-adapter loopback: adapter A plays the charger (candiag simulate), adapter B is the
# device under test (candiag record, then candiag analyze of what B heard).
#
# usage: hil/loopback.sh [--sim IFACE:CHANNEL] [--dut IFACE:CHANNEL] [--bitrate N]
#                        [--seconds S] [--scenario NAME] [--modules N] [--out DIR]
#   defaults: --sim socketcan:can1 --dut socketcan:can0 --bitrate 125000 --seconds 20
#             --scenario healthy --modules 8 --out hil-loopback-<date>
#
# Wire A and B on one bus with 120 ohm at each end (about 60 ohm between CAN_H and CAN_L with
# power off).  SocketCAN adapters: bring both up first with hil/bringup-socketcan.sh at the
# same bitrate, B without --listen-only (B must ACK A's frames; candiag still never sends).
# Exit status: analyze's (with --fail-on critical for the healthy scenario), so a bench
# script can use it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
candiag=(candiag)
[ -x "$repo/.venv/bin/python" ] && candiag=("$repo/.venv/bin/python" -m candiag)

sim="socketcan:can1"
dut="socketcan:can0"
bitrate=125000
seconds=20
scenario=healthy
modules=8
out="hil-loopback-$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
    case "$1" in
        --sim) sim="$2"; shift ;;
        --dut) dut="$2"; shift ;;
        --bitrate) bitrate="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        --scenario) scenario="$2"; shift ;;
        --modules) modules="$2"; shift ;;
        --out) out="$2"; shift ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "loopback: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
for spec in "$sim" "$dut"; do
    [[ "$spec" == *:* ]] || { echo "loopback: '$spec' must be IFACE:CHANNEL, e.g. pcan:PCAN_USBBUS1" >&2; exit 2; }
done
sim_if="${sim%%:*}" sim_ch="${sim#*:}" dut_if="${dut%%:*}" dut_ch="${dut#*:}"
mkdir -p "$out"
log="$out/loopback.log"
# SocketCAN's bitrate belongs to the link (hil/bringup-socketcan.sh); other adapters take -b.
rate_of() { [ "$1" = socketcan ] || printf '%s\n' -b "$bitrate"; }
mapfile -t dut_rate < <(rate_of "$dut_if")
mapfile -t sim_rate < <(rate_of "$sim_if")

echo "loopback: DUT $dut_if:$dut_ch records to $log"
"${candiag[@]}" record -i "$dut_if" -c "$dut_ch" "${dut_rate[@]}" -o "$log" 2>"$out/record.txt" &
rec=$!
# shellcheck disable=SC2317  # called through the trap
stop_record() { kill -INT "$rec" 2>/dev/null || true; wait "$rec" 2>/dev/null || true; }
trap stop_record EXIT
for _ in $(seq 1 100); do
    grep -q recording "$out/record.txt" 2>/dev/null && break
    kill -0 "$rec" 2>/dev/null || { cat "$out/record.txt" >&2; exit 1; }
    sleep 0.2
done

echo "loopback: SIM $sim_if:$sim_ch plays scenario $scenario for ${seconds}s"
"${candiag[@]}" simulate --transmit -i "$sim_if" -c "$sim_ch" "${sim_rate[@]}" -d "$seconds" \
    --modules "$modules" --scenario "$scenario" | tee "$out/simulate.txt"
sleep 1.5  # the recorder flushes at least every second
stop_record
trap - EXIT
cat "$out/record.txt"

sent=$(sed -n 's/^sent \([0-9]*\) frames.*/\1/p' "$out/simulate.txt")
echo "loopback: simulator sent ${sent:-?} frames; analysing what the DUT heard"
fail_on=()
[ "$scenario" = healthy ] && fail_on=(--fail-on critical)
"${candiag[@]}" analyze "$log" --bitrate "$bitrate" --json "$out/report.json" \
    --html "$out/report.html" "${fail_on[@]}"
