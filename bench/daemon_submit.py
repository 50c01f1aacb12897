#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Measures how fast `fetchd serve` acknowledges submitted jobs, and its peak RSS with a long queue.

Starts `fetchd origin` (with a long latency, so jobs stay queued rather than finish) and `fetchd serve` in a temp
dir, submits N jobs over the control socket in requests of BATCH jobs (pipelined, PIPELINE requests in flight),
and prints jobs/s acknowledged and the daemon's VmHWM. Lines are encoded before the clock starts, so the client
is not what is measured.

  bench/daemon_submit.py --fetchd build/cmd/fetchd/fetchd --jobs 1000000 --batch 10000 [--synchronous full]
"""
import argparse, json, os, socket, subprocess, sys, tempfile, threading, time


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    return 0.0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fetchd", default="build/cmd/fetchd/fetchd")
    ap.add_argument("--jobs", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--synchronous", default="full", choices=["full", "normal"])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--dir", default=None, help="work dir (default: a temp dir under /var/tmp, on disk)")
    a = ap.parse_args()

    work = a.dir or tempfile.mkdtemp(prefix="fetchd-submit-", dir="/var/tmp")
    sock_path = os.path.join(work, "ctl.sock")
    origin = subprocess.Popen([a.fetchd, "origin", "--port", "0", "--latency", "1h"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in origin.stdout:
        if "127.0.0.1:" in line:
            port = int(line.strip().rsplit(":", 1)[1])
            break
    if port is None:
        sys.exit("could not learn the origin's port")
    cfg = os.path.join(work, "fetchd.yaml")
    with open(cfg, "w") as f:
        f.write(f"strategy: {{kind: event-loop, concurrency: {a.concurrency}}}\n"
                f"output: {{dir: {work}/out, fsync: false}}\ncontrol: {{socket: {sock_path}}}\n"
                f"state: {{dir: {work}/state, synchronous: {a.synchronous}}}\nlog: {{level: warn}}\n"
                f"shutdown: {{grace: 1s}}\n")
    daemon = subprocess.Popen([a.fetchd, "serve", "--config", cfg], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    s = socket.socket(socket.AF_UNIX)
    while True:
        try:
            s.connect(sock_path)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("daemon did not start")
            time.sleep(0.05)
    rss_idle = vm(daemon.pid, "VmRSS")
    lines = []
    for first in range(0, a.jobs, a.batch):
        jobs = [{"url": f"http://127.0.0.1:{port}/bytes/4096/f{i}", "dest": f"d{i // 1000}/f{i}"}
                for i in range(first, min(a.jobs, first + a.batch))]
        lines.append((json.dumps({"op": "submit", "jobs": jobs}, separators=(",", ":")) + "\n").encode())
    rf = s.makefile("rb")
    # Replies are read on their own thread: a submit's answer lists every job (~45 bytes each), and the daemon
    # stops reading from a client whose unread replies pass 1 MiB, so a client that only writes would deadlock.
    window = threading.Semaphore(a.pipeline)
    failure = []

    def reader():
        for _ in lines:
            reply = json.loads(rf.readline())
            if not reply.get("ok"):
                failure.append(reply)
            window.release()

    cpu0 = cpu_s(daemon.pid)
    t0 = time.monotonic()
    th = threading.Thread(target=reader)
    th.start()
    for line in lines:
        window.acquire()
        s.sendall(line)
    th.join()
    if failure:
        sys.exit(f"submit refused: {failure[0]}")
    dt = time.monotonic() - t0
    cpu = cpu_s(daemon.pid) - cpu0
    s.sendall(b'{"op":"stats"}\n')
    stats = json.loads(rf.readline())["result"]
    hwm = vm(daemon.pid, "VmHWM")
    rss = vm(daemon.pid, "VmRSS")
    daemon.terminate()
    daemon.wait(timeout=60)
    origin.terminate()
    origin.wait(timeout=10)
    print(json.dumps({"jobs": a.jobs, "batch": a.batch, "synchronous": a.synchronous, "seconds": round(dt, 3),
                      "jobs_per_s": round(a.jobs / dt),
                      "daemon_cpu_s": round(cpu, 2), "jobs_per_cpu_s": round(a.jobs / cpu) if cpu else None, "queued": stats["queued"], "rss_idle_mib": round(rss_idle, 1),
                      "rss_mib": round(rss, 1), "peak_rss_mib": round(hwm, 1)}))


if __name__ == "__main__":
    main()
