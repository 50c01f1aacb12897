#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora tests/fuzz/corpus/<target>/ (checked in; rerun after editing this file).

Seeds are small, meaningful inputs: the examples of docs/protocol.md and config/, and the edge cases the headers
of core/units.hpp and core/dest_path.hpp name. Files are named after what they show. Existing files of the
four folders are replaced.
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def header(reads=(255,), max_line=None, scale16=False):
    """The protocol target's input header (see protocol_fuzz.cpp): read sizes and an optional line limit."""
    assert 1 <= len(reads) <= 8
    flags = len(reads) - 1
    if scale16:
        flags |= 0x40
    out = bytes([0]) + bytes(r - 1 for r in reads)
    if max_line is not None:
        flags |= 0x80
        assert (max_line - 1) % 2 == 0 and 1 <= max_line <= 511
        out += bytes([(max_line - 1) // 2])
    return bytes([flags]) + out[1:]


SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

PROTOCOL_LINES = {
    "ping": '{"op":"ping","req":1}',
    "ping-spaces": '  { "op" : "ping" , "req" : { "n" : [ 1 , 2.5 , null , true ] } }  ',
    "status": '{"op":"status","id":12}',
    "status-zero": '{"op":"status","id":0}',
    "status-negative": '{"op":"status","id":-1}',
    "status-float": '{"op":"status","id":1.0}',
    "status-string": '{"op":"status","id":"1"}',
    "status-missing": '{"op":"status"}',
    "cancel-max": '{"op":"cancel","id":18446744073709551615}',
    "cancel-overflow": '{"op":"cancel","id":18446744073709551616}',
    "list-all": '{"op":"list","state":"queued","after":10,"offset":0,"limit":100,"req":"page-2"}',
    "list-nulls": '{"op":"list","state":null,"after":null,"offset":null,"limit":null}',
    "list-limit-zero": '{"op":"list","limit":0}',
    "list-limit-big": '{"op":"list","limit":10001}',
    "list-state-bad": '{"op":"list","state":"finished\\u0000"}',
    "stats": '{"op":"stats"}',
    "watch": '{"op":"watch","req":null}',
    "reload": '{"op":"reload","req":{"a":[1,{"b":"c"}]}}',
    "op-unknown": '{"op":"frobnicate","req":7}',
    "op-missing": '{"req":7}',
    "op-number": '{"op":1}',
    "op-extra-field": '{"op":"ping","verbose":true}',
    "submit-full": '{"op":"submit","req":"r1","jobs":[{"url":"https://example.com/a.bin?x=1","dest":"sub//a.bin",'
                   f'"sha256":"{SHA.upper()}","size":4194304,"headers":{{"Authorization":"Bearer abc",'
                   '"X-Trace":"1"},"priority":-5,"key":"batch-7"}]}',
    "submit-two": '{"op":"submit","jobs":[{"url":"http://127.0.0.1:8080/bytes/1024/a.bin"},'
                  '{"url":"http://127.0.0.1:8080/b","dest":"b.bin","size":null,"priority":2147483647}]}',
    "submit-empty": '{"op":"submit","jobs":[]}',
    "submit-not-array": '{"op":"submit","jobs":{"url":"http://h/"}}',
    "submit-not-object": '{"op":"submit","jobs":["http://h/a"]}',
    "submit-file-scheme": '{"op":"submit","jobs":[{"url":"file:///etc/passwd"}]}',
    "submit-no-scheme": '{"op":"submit","jobs":[{"url":"user:secret@example.com/x"}]}',
    "submit-userinfo": '{"op":"submit","jobs":[{"url":"http://user:secret@exa mple.com/x"}]}',
    "submit-userinfo-ok": '{"op":"submit","jobs":[{"url":"https://user:secret@example.com:8443/x"}]}',
    "submit-bad-port": '{"op":"submit","jobs":[{"url":"http://u:p@example.com:99999/x"}]}',
    "submit-dest-dotdot": '{"op":"submit","jobs":[{"url":"http://h/a","dest":"../etc/passwd"}]}',
    "submit-dest-abs": '{"op":"submit","jobs":[{"url":"http://h/a","dest":"/etc/passwd"}]}',
    "submit-dest-backslash": '{"op":"submit","jobs":[{"url":"http://h/a","dest":"a\\\\b"}]}',
    "submit-dest-control": '{"op":"submit","jobs":[{"url":"http://h/a","dest":"a\\u0001b"}]}',
    "submit-dest-slash": '{"op":"submit","jobs":[{"url":"http://h/a","dest":"dir/"}]}',
    "submit-dest-long": '{"op":"submit","jobs":[{"url":"http://h/a","dest":"' + "d" * 251 + '"}]}',
    "submit-sha-short": '{"op":"submit","jobs":[{"url":"http://h/a","sha256":"abc"}]}',
    "submit-sha-nonhex": '{"op":"submit","jobs":[{"url":"http://h/a","sha256":"' + "g" * 64 + '"}]}',
    "submit-size-negative": '{"op":"submit","jobs":[{"url":"http://h/a","size":-1}]}',
    "submit-header-crlf": '{"op":"submit","jobs":[{"url":"http://h/a","headers":{"Cookie":"a=1\\r\\nX: y"}}]}',
    "submit-header-name": '{"op":"submit","jobs":[{"url":"http://h/a","headers":{"Authorization: Bearer t0k3n":"x"}}]}',
    "submit-header-empty-name": '{"op":"submit","jobs":[{"url":"http://h/a","headers":{"":"x"}}]}',
    "submit-header-number": '{"op":"submit","jobs":[{"url":"http://h/a","headers":{"X-N":12345678}}]}',
    "submit-header-tab": '{"op":"submit","jobs":[{"url":"http://h/a","headers":{"X-T":"a\\tb"}}]}',
    "submit-priority-big": '{"op":"submit","jobs":[{"url":"http://h/a","priority":2147483648}]}',
    "submit-priority-small": '{"op":"submit","jobs":[{"url":"http://h/a","priority":-2147483649}]}',
    "submit-priority-float": '{"op":"submit","jobs":[{"url":"http://h/a","priority":1.5}]}',
    "submit-key-empty": '{"op":"submit","jobs":[{"url":"http://h/a","key":""}]}',
    "submit-key-long": '{"op":"submit","jobs":[{"url":"http://h/a","key":"' + "k" * 1025 + '"}]}',
    "submit-unknown-field": '{"op":"submit","jobs":[{"url":"http://h/a","destination":"x"}]}',
    "submit-unicode": '{"op":"submit","jobs":[{"url":"http://h/%C3%A9t%C3%A9.bin","dest":"\u00e9t\u00e9/\u65e5\u672c.bin","key":"\\ud83d\\ude00"}]}',
    "json-truncated": '{"op":',
    "json-garbage": 'not json at all',
    "json-array": '[1,2,3]',
    "json-string": '"ping"',
    "json-trailing": '{"op":"ping"} {"op":"ping"}',
    "json-deep": '{"op":"ping","req":' + "[" * 70 + "]" * 70 + "}",
    "json-deep-63": '{"op":"ping","req":' + "[" * 62 + "]" * 62 + "}",
    "json-big-number": '{"op":"ping","req":123456789012345678901234567890}',
    "json-lone-surrogate": '{"op":"ping","req":"\\ud800"}',
    "json-duplicate-keys": '{"op":"ping","op":"stats"}',
    "json-brackets-in-string": '{"op":"ping","req":"[[[[{{{{"}',
}


def protocol_seeds():
    seeds = {}
    for name, line in PROTOCOL_LINES.items():
        seeds[name] = header() + line.encode() + b"\n"
    seeds["invalid-utf8"] = header() + b'{"op":"ping","req":"\xff\xfe"}\n'
    seeds["overlong-utf8"] = header() + b'{"op":"ping","req":"\xc0\xaf"}\n'
    seeds["nul-in-line"] = header() + b'{"op":"ping"}\x00\n'
    pipelined = "\n".join(PROTOCOL_LINES[k] for k in ("ping", "status", "list-all", "submit-two", "stats")) + "\n"
    seeds["pipelined"] = header() + pipelined.encode()
    seeds["pipelined-reads-1-2-3"] = header(reads=(1, 2, 3)) + pipelined.encode()
    seeds["crlf-and-empty-lines"] = header(reads=(7, 13)) + b'\r\n\n{"op":"ping"}\r\n\r\n{"op":"stats"}\n\n'
    seeds["bare-cr"] = header() + b'{"op":"ping"}\r\r\n\r'
    seeds["unterminated-tail"] = header() + b'{"op":"ping"}\n{"op":"stats"}'
    seeds["too-long"] = header(reads=(5,), max_line=33) + b'{"op":"ping"}\n{"op":"ping","req":"' + b"x" * 40 + b'"}\n{"op":"stats"}\n'
    seeds["too-long-tail"] = header(reads=(16, 16), max_line=21) + b'{"op":"ping"}\n' + b"y" * 30
    seeds["at-limit-crlf"] = header(reads=(3,), max_line=13) + b'{"op":"ping"}\r\n{"op":"ping"}x\r\n'
    seeds["big-reads"] = header(reads=(256, 64), scale16=True) + pipelined.encode()
    return seeds


def config_seeds():
    seeds = {}
    for f in ("fetchd.example.yaml", "demo.yaml"):
        with open(os.path.join(REPO, "config", f), "rb") as fh:
            seeds["config-" + f.replace(".yaml", "")] = fh.read()
    s = {
        "empty": "",
        "comment-only": "# nothing\n",
        "null-doc": "~\n",
        "minimal": "jobs:\n  - url: http://127.0.0.1:8080/a.bin\n",
        "strategy-all": "strategy:\n  kind: process-pool\n  concurrency: 8\n  workers: 2\n  inner: blocking\n",
        "strategy-bad": "strategy: {kind: thread-poll, concurrency: 0, workers: -1, inner: nope}\n",
        "strategy-flow": "strategy: { kind: curl-multi, concurrency: 2147483648 }\n",
        "output": "output:\n  dir: downloads\n  on_exists: overwrite\n  fsync: false\n",
        "output-file": "output: {dir: afile}\njobs: [{url: 'http://h/a'}]\n",
        "output-symlink": "output: {dir: in/sub, on_exists: fail, fsync: TRUE}\njobs: [{url: 'http://h/a', dest: x/y.bin}]\n",
        "output-empty": "output: {dir: ''}\n",
        "defaults": "defaults:\n  timeout: 1h30m\n  connect_timeout: 250ms\n  low_speed: {limit: 1KiB, time: 30s}\n"
                    "  retries: 0\n  max_redirects: 5\n  user_agent: \"my agent/1.0\"\n"
                    "  headers:\n    Authorization: Bearer s3cr3t\n    X-Empty: ''\n",
        "defaults-bad": "defaults:\n  timeout: -5s\n  connect_timeout: 0\n  low_speed: {limit: 1.5B, time: 1.5s}\n"
                        "  headers: {\"Bad Name\": x, X-Crlf: \"a\\r\\nb\", x-dup: 1, X-DUP: 2}\n",
        "log": "log: {level: debug, interval: 2m}\n",
        "log-bad": "log: {level: verbose, interval: 1x}\n",
        "control": "control:\n  socket: run/fetchd.sock\n  mode: \"0600\"\n  group: fetchd\n  tcp: 127.0.0.1:7070\n"
                   "  max_connections: 10\n",
        "control-bad": "control: {socket: '', mode: '0999', tcp: '0.0.0.0:80', max_connections: 0}\n",
        "control-ipv6": "control: {tcp: '[::1]:0'}\n",
        "state": "state:\n  dir: state\n  synchronous: normal\n  history: {max_age: 7d, max_jobs: 0}\n",
        "shutdown": "shutdown: {grace: 1.5s}\n",
        "jobs-full": "jobs:\n  - url: https://user:pw@example.com/a.bin?token=x\n    dest: sub//a.bin\n"
                     f"    sha256: {SHA.upper()}\n    size: 1.5MiB\n"
                     "    headers: {Cookie: 'a=1', X-Trace: '2'}\n",
        "jobs-dup-dest": "jobs:\n  - {url: 'http://h/a.bin'}\n  - {url: 'http://other/a.bin'}\n",
        "jobs-folder-conflict": "jobs:\n  - {url: 'http://h/a', dest: x}\n  - {url: 'http://h/b', dest: x/y}\n",
        "jobs-bad": "jobs:\n  - url: ftp://h/a\n  - dest: ../x\n  - url: http://h/\n    dest: /abs\n"
                    "  - url: http://h/x\n    sha256: nothex\n  - 42\n  - [a, b]\n",
        "jobs-not-list": "jobs: {url: 'http://h/a'}\n",
        "urls-file": "jobs:\n  - urls_file: urls.txt\n  - urls_file: lists/more.txt\n",
        "urls-file-bad": "jobs:\n  - urls_file: lists/bad.txt\n  - urls_file: missing.txt\n  - urls_file: lists\n"
                         "  - {urls_file: urls.txt, dest: x}\n",
        "unknown-keys": "stratgy: {}\noutput: {dri: x}\n",
        "twice": "log: {level: info}\nlog: {level: warn}\n",
        "two-docs": "log: {level: info}\n---\nlog: {level: warn}\n",
        "anchors": "defaults: &d {timeout: 30s}\nlog: *d\njobs:\n  - &j {url: 'http://h/a'}\n  - *j\n",
        "merge-key": "base: &b {kind: event-loop}\nstrategy:\n  <<: *b\n  concurrency: 3\n",
        "tags": "strategy: !!map {kind: !!str event-loop, concurrency: !!int 4}\n",
        "quoted-escapes": "output: {dir: \"down\\x6coads\", on_exists: \"s\\u006bip\"}\n",
        "block-scalars": "defaults:\n  user_agent: |\n    two\n    lines\n  headers:\n    X-Folded: >-\n      a\n      b\n",
        "deep": "a: " + "[" * 70 + "]" * 70 + "\n",
        "scalar-root": "just a string\n",
        "list-root": "- a\n- b\n",
        "keys-not-strings": "? [a, b]\n: c\n{x: 1}: 2\n",
        "bom": "\ufefflog: {level: info}\n",
        "tabs": "log:\n\tlevel: info\n",
        "unterminated": "log: {level: \"info\n",
        "retry": "defaults:\n  retries: 5\n  backoff: {initial: 500ms, max: 1m, multiplier: 2.5, jitter: none}\n"
                 "  retry_on: [connect, timeout, 429, 503]\n  retry_after_max: 10m\n"
                 "jobs:\n  - url: http://h/a\n    retries: 0\n    timeout: 10s\n    max_size: 1GiB\n    rate: 1MiB\n",
        "limits-tls-security": "limits: {per_host: 4, rate: 100MB}\ntls: {ca_file: ca.pem, ca_path: certs}\n"
                               "security: {deny_private_addresses: true, redact_query: [token, sig]}\n",
        "sha512": "jobs:\n  - url: http://h/a\n    sha512: " + "ab" * 64 + "\n",
    }
    for k, v in s.items():
        seeds[k] = v.encode()
    return seeds


def filename_seeds():
    s = {
        "plain": b"a.bin",
        "url": b"http://example.com/dir/file.tar.gz?x=1#frag",
        "url-root": b"http://example.com/",
        "url-encoded": b"https://h/a%2Fb%00c%2e%2e%ZZ%e2%82%ac.txt",
        "url-no-scheme": b"/just/a/path/",
        "dotdot": b"../../etc/passwd",
        "dots": b"..",
        "dot": b".",
        "hidden": b".bashrc",
        "spaces": b"  . name with spaces .txt  ",
        "backslash": b"C:\\Users\\x\\evil.exe",
        "mixed-separators": b"a/b\\c/",
        "nul": b"a\x00b.txt",
        "controls": b"\x01\x1f\x7f\x1b[31mred.txt",
        "c1": b"a\xc2\x85b\xc2\x9f.txt",
        "utf8": "\u00e9t\u00e9 \u65e5\u672c\u8a9e \U0001F600.bin".encode(),
        "invalid-utf8": b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80.bin",
        "truncated-utf8": b"abc\xe2\x82",
        "long-ascii": b"x" * 300 + b".tar.gz",
        "long-utf8": "\u00e9".encode() * 200 + b".bin",
        "long-emoji": "\U0001F600".encode() * 80 + b".txt",
        "long-ext": b"n" * 240 + b"." + b"e" * 40,
        "long-spaces": b"a" * 200 + b" " * 100 + b".x",
        "dest-ok": b"sub//dir///file.bin",
        "dest-abs": b"/etc/passwd",
        "dest-trailing": b"dir/",
        "dest-dot-component": b"a/./b",
        "dest-long-dir": b"d" * 256 + b"/f",
        "dest-long-file": b"d/" + b"f" * 251,
        "empty": b"",
    }
    return s


def units_seeds():
    sizes = ["4096", "0", "64KiB", "1.5MB", "1.5MiB", "1K", "1kb", "2G", "3GiB", "1TB", "1TiB", "7b", "10 B",
             " 12 mib ", "0.5B", "-1", "1.", ".5K", "1e3", "9223372036854775807", "9223372036854775808",
             "8388607TiB", "8388608TiB", "0.0000000000001TiB", "1" + "0" * 40, "12XB"]
    durations = ["30s", "2m", "250ms", "1h30m", "1.5s", "1d", "10", "1h 30m", "1m30", "0s", "5sec", "3min",
                 "-1s", "1w", "106751991167d", "106751991168d", "0.0001ms", "1h1h1h", "s", ""]
    out = {}
    for i, v in enumerate(sizes):
        out[f"size-{i:02d}"] = v.encode()
    for i, v in enumerate(durations):
        out[f"duration-{i:02d}"] = v.encode()
    # The first 8 bytes also are a number to format (little endian).
    out["raw-1023"] = (1023).to_bytes(8, "little")
    out["raw-1536"] = (1536).to_bytes(8, "little")
    out["raw-max"] = (2**63 - 1).to_bytes(8, "little")
    out["raw-ms"] = (90061001).to_bytes(8, "little")
    return out


def main():
    for target, seeds in (("protocol", protocol_seeds()), ("config", config_seeds()),
                          ("filename", filename_seeds()), ("units", units_seeds())):
        d = os.path.join(HERE, "corpus", target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
