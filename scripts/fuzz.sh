#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets) for a bounded time each, one after the other, and
# print execs and crashes per target. Not part of CI or scripts/test.sh.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags to rustc;
# on a stable toolchain RUSTC_BOOTSTRAP=1 admits them. Targets are built without a sanitizer
# (`-s none`: Rust is memory-safe here; what is sought is panics, overflows and broken
# invariants) but with debug assertions and overflow checks. Crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/ghostpii/fuzz-target}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# seeds, so that the structured parsers are reached quickly
seed() { mkdir -p "corpus/$1"; printf "$3" > "corpus/$1/$2"; }
seed rid_set runs '\x01\x00\x05\x0a\x02'
seed rid_set runs_u64 '\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00'
seed rid_set roaring '\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x3a\x30\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x10\x00\x00\x00\x03\x00\x05\x00'
seed descriptors sum '{"requests":[{"op":"sum","dataset_id":1,"rids":"AQAF","terms":[{"column_id":1,"epoch":1,"weight":-3}]}]}'
seed descriptors decrypt '{"requests":[{"op":"decrypt","dataset_id":1,"column_id":2,"epoch":1,"facet":"num","rids":"AgEAAAAAAAAAAAAAADowAAABAAAAAAABABAAAAADAAUA"}]}'
seed descriptors compare '{"requests":[{"op":"compare","dataset_id":1,"column_id":2,"epoch":1,"constant":19000}]}'
seed descriptors frame 'GPAK\x01\x80\x00\x00\x00{"requests":[{"op":"sums","dataset_id":1,"terms":[{"column_id":1,"epoch":1,"weight":1}],"groups":["AQAF",{"$blob":0,"len":3}]}]}\x01\x00\x05'
seed column_meta int '{"v":1,"keyhost":"kh_1","dataset":"d","dataset_id":1,"column":"x","column_id":2,"epoch":1,"dtype":"int64","scale":0,"bounds":[-5,5],"facets":["num","ord"],"ord":{"bits":16,"offset":0}}'
seed token gpt 'gpt_0123456789abcdef'
seed ore_token v1 '\x01\x01aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'

cargo fuzz build -s none
printf '%-14s %14s %10s %8s\n' target execs exec/s crashes
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$CARGO_TARGET_DIR/fuzz-$t.log"
    before=$(find "artifacts/$t" -type f | wc -l)
    set +e
    cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 \
        -max_len=4096 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    after=$(find "artifacts/$t" -type f | wc -l)
    rate=$(( ${execs:-0} / secs ))
    printf '%-14s %14s %10s %8s\n' "$t" "${execs:-?}" "$rate" "$((after - before))"
    if [ "$rc" -ne 0 ] || [ "$after" -ne "$before" ]; then
        status=1
        echo "  $t failed (exit $rc); see $log and fuzz/artifacts/$t" >&2
    fi
done
exit "$status"
