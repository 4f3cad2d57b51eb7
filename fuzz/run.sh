#!/usr/bin/env bash
# Fuzzes every target for DURATION seconds each (default 60) with AFL++
# through cargo-afl, on stable Rust, and fails if any target crashed.
#   bash fuzz/run.sh          # a minute per target (.ci/run gives each 40 s)
#   bash fuzz/run.sh 3600     # an hour per target
# Lints the fuzz package, installs cargo-afl (crates.io) and builds AFL++ once
# (later runs reuse them), builds the instrumented targets, then fuzzes.
# Findings stay in fuzz/out/<target>/default/{crashes,hangs}; replay them
# with `cargo test --lib` in fuzz/ (src/replay.rs reads that directory).
set -euo pipefail
duration=${1:-60}
cd "$(dirname "$0")"

targets=(framing prepare config)
afl_version=0.18.2

# No tty in CI, and a shared machine: no UI, no CPU binding or governor
# checks, and no core_pattern demand (containers cannot change it).
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# Optimization of the instrumented build: 1 builds the relay's dependency
# tree (AWS SDK included) in a fraction of the time of 3 and still runs
# thousands of executions a second.
export AFL_OPT_LEVEL=${AFL_OPT_LEVEL:-1}

if ! cargo afl --version 2>/dev/null | grep -q "^cargo-afl $afl_version "; then
    cargo install --locked cargo-afl --version "$afl_version"
fi
# Builds AFL++ for this toolchain unless that was done already (cargo-afl's
# install usually does it; `config --build` refuses to do it twice).
if ! out=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$out"; then
    echo "$out" >&2
    exit 1
fi

# The fuzz package has its own lock file: a dependency added to the relay
# must be added here too, or every --locked build below fails obscurely.
if ! cargo metadata --locked --format-version 1 >/dev/null 2>&1; then
    echo "fuzz: fuzz/Cargo.lock is behind the relay's dependencies;" \
        "run 'cargo update -p ses-relay' in fuzz/ and commit fuzz/Cargo.lock" >&2
    exit 1
fi
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

cargo afl build --release --locked --bins

failed=()
for target in "${targets[@]}"; do
    rm -rf "out/$target"
    mkdir -p "out/$target"
    echo "fuzz: $target for ${duration}s"
    # -t: a generous per-input timeout, the machine may be busy.
    if ! cargo afl fuzz -V "$duration" -t 2000 -i "corpus/$target" -o "out/$target" \
        "target/release/$target" >"out/$target/afl.log" 2>&1; then
        tail -n 40 "out/$target/afl.log" >&2
        failed+=("$target (afl-fuzz failed)")
        continue
    fi
    stats="out/$target/default/fuzzer_stats"
    grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg) ' "$stats" |
        tr -s ' ' | sed "s/^/fuzz: $target: /"
    crashes=$(find "out/$target/default/crashes" -type f ! -name README.txt | wc -l)
    if [ "$crashes" -gt 0 ]; then
        failed+=("$target ($crashes crashes in fuzz/out/$target/default/crashes)")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "fuzz: no crashes"
