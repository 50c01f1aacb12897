#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs one libFuzzer target the way `meson test --suite fuzz` and bench/fuzz-long do (docs/fuzzing.md).

1. Replays every file of tests/fuzz/regressions/<target>/ (inputs that once failed, or fail while a finding is
   open): any failure fails the run, after the fuzzing below.
2. Fuzzes for --seconds (FETCHD_FUZZ_SECONDS overrides) on a temporary copy of the seed corpus, so the
   checked-in corpus is never modified, with the target's dictionary.
3. Prints one summary line (execs, execs/s, corpus before -> after, findings) and writes it as JSON to
   <artifacts>/summary.json. A crash, leak, timeout or failed invariant leaves its input in <artifacts>/ and
   fails the run; copy the input to tests/fuzz/regressions/<target>/ once the bug is understood.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def die_with_parent() -> None:
    """The fuzzer gets SIGKILL when this script dies (a test timeout kills only the script)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stat(log: str, name: str) -> int:
    m = re.findall(rf"stat::{name}:\s*(\d+)", log)
    return int(m[-1]) if m else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fuzzer", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--corpus", required=True, help="seed corpus (read only)")
    ap.add_argument("--dict", required=True)
    ap.add_argument("--regressions", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--keep-corpus", help="copy the grown corpus here afterwards")
    args = ap.parse_args()
    for a in ("fuzzer", "corpus", "dict", "regressions", "artifacts"):
        setattr(args, a, os.path.abspath(getattr(args, a)))

    seconds = int(os.environ.get("FETCHD_FUZZ_SECONDS", args.seconds))
    env = dict(os.environ)
    # UBSan findings must stop the run like ASan's do; libFuzzer then saves the input.
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1:" + env.get("UBSAN_OPTIONS", "")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    os.makedirs(args.artifacts, exist_ok=True)
    prefix = os.path.join(os.path.abspath(args.artifacts), "")
    common = [f"-artifact_prefix={prefix}", "-rss_limit_mb=2048", "-timeout=25", f"-dict={args.dict}"]

    regressions = []
    if os.path.isdir(args.regressions):
        regressions = sorted(
            os.path.join(args.regressions, f) for f in os.listdir(args.regressions) if not f.startswith(".")
        )

    with tempfile.TemporaryDirectory(prefix=f"fetchd-fuzz-{args.name}.") as tmp:
        # Whatever a target creates in TMPDIR goes when this folder goes, even after a crash.
        env["TMPDIR"] = tmp
        failed_regressions = []
        for path in regressions:
            # One input runs in milliseconds: 10 s is a hang (-timeout overrides the one in `common`).
            r = subprocess.run([args.fuzzer, *common, "-timeout=10", path], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", cwd=tmp,
                               preexec_fn=die_with_parent)
            if r.returncode != 0:
                sys.stdout.write(r.stdout[-8000:])
                print(f"fuzz {args.name}: regression input {path} fails (exit {r.returncode})\n")
                failed_regressions.append(path)
        if regressions:
            print(f"fuzz {args.name}: {len(regressions) - len(failed_regressions)} of {len(regressions)} "
                  "regression inputs pass")

        corpus = os.path.join(tmp, "corpus")
        shutil.copytree(args.corpus, corpus)
        before = len(os.listdir(corpus))
        started_wall = time.time()
        started = time.monotonic()
        r = subprocess.run(
            [args.fuzzer, corpus, *common, f"-max_total_time={seconds}", "-print_final_stats=1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", cwd=tmp,
            preexec_fn=die_with_parent)
        elapsed = time.monotonic() - started
        after = len(os.listdir(corpus))
        if args.keep_corpus:
            os.makedirs(args.keep_corpus, exist_ok=True)
            for f in os.listdir(corpus):
                shutil.copy2(os.path.join(corpus, f), args.keep_corpus)

    log = r.stdout
    with open(os.path.join(args.artifacts, "fuzz.log"), "w") as f:
        f.write(log)
    findings = sorted(
        os.path.join(args.artifacts, f) for f in os.listdir(args.artifacts)
        if re.match(r"(crash|leak|timeout|oom)-", f)
        and os.path.getmtime(os.path.join(args.artifacts, f)) >= started_wall
    )
    execs = stat(log, "number_of_executed_units")
    summary = {
        "target": args.name,
        "seconds": round(elapsed, 1),
        "execs": execs,
        "execs_per_s": stat(log, "average_exec_per_sec"),
        "corpus_before": before,
        "corpus_after": after,
        "new_units": stat(log, "new_units_added"),
        "peak_rss_mb": stat(log, "peak_rss_mb"),
        "exit": r.returncode,
        "findings": findings,
        "failed_regressions": failed_regressions,
    }
    with open(os.path.join(args.artifacts, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if r.returncode != 0:
        sys.stdout.write(log[-20000:])
    print(f"fuzz {args.name}: {execs} execs in {elapsed:.0f} s ({summary['execs_per_s']}/s), corpus {before} -> "
          f"{after} files, peak RSS {summary['peak_rss_mb']} MB, "
          f"findings: {', '.join(findings) if findings else 'none'}"
          + (f", failing regressions: {', '.join(failed_regressions)}" if failed_regressions else ""))
    return 0 if r.returncode == 0 and not failed_regressions else 1


if __name__ == "__main__":
    sys.exit(main())
