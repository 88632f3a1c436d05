#!/usr/bin/env python3
"""Latency of one application, for scripts/bench-backlog: mailroom's own, and end to end.

  latency.py --corpus DIR --count N --smtp-port P --rcpt ADDR --maildir DIR --log FILE [--first K]
             [--pause S]

Sends N applications of the corpus (from index K, default 1), one at a time, to Postfix's inbound
SMTP port (envelope sender = the candidate, as a candidate's server would), each after the
previous one's acknowledgement has arrived (and S seconds more, default 0.15: with S above the
SMTP pool's 10 s, every acknowledgement needs a new connection, as after a quiet spell), while `mailroom run` (logging at debug level into
FILE) watches the folder. For each it measures:

- end to end: from the application handed to Postfix to its acknowledgement delivered into
  the catch-all Maildir (Postfix's queue and delivery, both ways, and Dovecot included);
- mailroom's own: from the daemon's `idle: the server announced a change` line to its
  `accepted by the SMTP server` line, read from its log (the daemon's own timestamps).

Prints one JSON object (every sample, the percentiles, and this script's own CPU time while it
sent and waited, with how it waited) on stdout. Only the standard library.
"""

import argparse
import email.parser
import json
import os
import re
import select
import smtplib
import sys
import time
from datetime import datetime, timezone

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+\w+\s+(.*)$")


def percentile(values, p):
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def stamp(text):
    # The daemon logs UTC (the trailing Z is cut off here): compare with time.time() whatever TZ says.
    return datetime.fromisoformat(text[:26]).replace(tzinfo=timezone.utc).timestamp()


def read_log(path, since):
    """(time, kind) of the wake-ups and acceptances in the daemon's log, from `since` on."""
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.strip())
            if not m:
                continue
            if stamp(m.group(1)) < since:
                continue
            if "idle: the server announced a change" in m.group(2):
                events.append((stamp(m.group(1)), "wake"))
            elif "accepted by the SMTP server" in m.group(2):
                events.append((stamp(m.group(1)), "accepted"))
    return events


def ack_for(maildir, message_id):
    """The file name of a new message in the Maildir that answers message_id, if one arrived.

    Every message looked at is moved from new/ to cur/, as a mail reader marks what it has seen,
    so new/ only ever holds what arrived since the last look. Listing a new/ that keeps every
    earlier acknowledgement (7,000 files by this step of the benchmark) took 3 ms of Python a
    time, every millisecond: most of one of the machine's two cores, taken from the daemon it
    measures.
    """
    parser = email.parser.BytesHeaderParser()
    new = os.path.join(maildir, "new")
    try:
        names = os.listdir(new)
    except FileNotFoundError:
        return None
    found = None
    for name in names:
        path = os.path.join(new, name)
        try:
            with open(path, "rb") as f:
                head = parser.parsebytes(f.read(16384))
        except FileNotFoundError:
            continue
        if found is None and message_id in (head.get("In-Reply-To") or ""):
            found = name
        mark_seen(maildir, name)
    return found


class Arrivals:
    """Sleeps until something arrives in a directory (inotify, through ctypes), so that waiting
    for an acknowledgement takes no CPU from the daemon being measured; polls every millisecond
    where inotify is not available."""

    IN_CREATE, IN_MOVED_TO = 0x100, 0x80

    def __init__(self, directory):
        self.fd = -1
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(fd, os.fsencode(directory), self.IN_CREATE | self.IN_MOVED_TO) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        except (OSError, AttributeError):
            pass

    def wait(self, timeout):
        """Returns once something arrived (or may have), or after timeout seconds."""
        if self.fd < 0:
            time.sleep(0.001)
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if ready:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass


def mark_seen(maildir, name):
    """new/NAME to cur/NAME:2, (Maildir's "seen by a reader"); gone already is fine."""
    try:
        os.rename(os.path.join(maildir, "new", name), os.path.join(maildir, "cur", name + ":2,"))
    except FileNotFoundError:
        pass


def message_id_of(data):
    head = email.parser.BytesHeaderParser().parsebytes(data[:65536])
    return (head.get("Message-ID") or "").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--smtp-port", type=int, required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--pause", type=float, default=0.15)
    a = ap.parse_args()
    # The daemon's log may hold an earlier run of this script: only what happens from now counts.
    started = time.time()

    rows = []
    with open(os.path.join(a.corpus, "manifest.tsv")) as f:
        next(f)
        for line in f:
            i, sender, _size, _client, _shape = line.rstrip("\n").split("\t")
            if int(i) >= a.first:
                rows.append((int(i), sender))
    rows = rows[: a.count]
    if len(rows) < a.count:
        sys.exit(f"latency: the corpus holds {len(rows)} messages from {a.first}, not {a.count}")

    # What is already there is not an answer to what this run sends: out of new/ before it starts.
    # (Dovecot makes new/ and cur/ together, on its first delivery.)
    new = os.path.join(a.maildir, "new")
    for name in os.listdir(new) if os.path.isdir(new) else []:
        mark_seen(a.maildir, name)
    arrivals = Arrivals(new)
    cpu_start = os.times()
    smtp = smtplib.SMTP(a.host, a.smtp_port, timeout=a.timeout)
    smtp.ehlo("candidate.example.test")
    e2e = []
    for n, (i, sender) in enumerate(rows):
        with open(os.path.join(a.corpus, "msgs", f"{i:06d}.eml"), "rb") as f:
            data = f.read()
        mid = message_id_of(data)
        if not mid:
            sys.exit(f"latency: message {i} has no Message-ID")
        t0 = time.time()
        smtp.sendmail(sender, [a.rcpt], data)
        deadline = t0 + a.timeout
        # The watch was set before the first look: an arrival between a look and the wait wakes it.
        while ack_for(a.maildir, mid) is None:
            if time.time() > deadline:
                sys.exit(f"latency: no acknowledgement of message {i} within {a.timeout:.0f} s")
            arrivals.wait(deadline - time.time())
        e2e.append(time.time() - t0)
        # Let the daemon finish its pass (the keyword, the status) and wait in IDLE again.
        time.sleep(a.pause)
    cpu_end = os.times()
    smtp.quit()
    time.sleep(0.5)

    events = read_log(a.log, started)
    own = []
    last_wake = None
    for t, kind in events:
        if kind == "wake":
            last_wake = t
        elif last_wake is not None:
            own.append(t - last_wake)
            last_wake = None
    result = {
        "count": len(rows),
        # This script's own CPU while it sent and waited: what it took from the daemon's two cores.
        "harness_cpu_s": round(cpu_end.user + cpu_end.system - cpu_start.user - cpu_start.system, 2),
        "harness_wall_s": round(cpu_end.elapsed - cpu_start.elapsed, 2),
        "harness_wait": "inotify" if arrivals.fd >= 0 else "polling every 1 ms",
        "wakes": sum(1 for _, k in events if k == "wake"),
        "accepted": sum(1 for _, k in events if k == "accepted"),
        "own_ms": {"p50": None, "p90": None, "p99": None, "max": None, "samples": [round(x * 1000, 2) for x in own]},
        "e2e_ms": {"p50": None, "p90": None, "p99": None, "max": None, "samples": [round(x * 1000, 2) for x in e2e]},
    }
    for key, values in (("own_ms", own), ("e2e_ms", e2e)):
        if values:
            for p in (50, 90, 99):
                result[key][f"p{p}"] = round(percentile(values, p) * 1000, 1)
            result[key]["max"] = round(max(values) * 1000, 1)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
