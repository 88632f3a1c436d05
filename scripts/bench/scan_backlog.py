#!/usr/bin/env python3
"""What a backlog of scans costs the rest of the mail: issue 16, "OCR cost".

    scripts/bench/scan_backlog.py [--ordinary M] [--scans S] [--rounds R] [--mailroom PATH]
                                  [--keep]

On the real stack (scripts/mailstack, state in $MAILSTACK_DIR, by default
target/mailstack-scans; a stack this script starts is stopped at the end unless --keep, one
already up, as scripts/bench-backlog's, is left as it is), two folders of contact@example.test are filled over LMTP, in order:

  plain  M ordinary applications (scripts/bench/gen_backlog.py, seed 27: CVs and letters whose
         names tell what they are, so nothing is read by a child process);
  mixed  the same M, with S applications interleaved evenly whose only attachment is a scan
         from tests/fixtures/gen/real (image-only PDFs and phone photos) under a name that
         tells nothing ("document-7.pdf", "IMG_2041.jpg"), so OCR has to read it.

Then `mailroom once` (replies off, fresh state and data dir) runs on each folder, R times,
alternating. From mailroom's own store (the `recorded_at` of every message row, written in the
commit's transaction), it prints per run:

  - when the last ordinary application was committed, counted from the start of the run, and
    the median of the ordinary ones (the time to file everything else);
  - when the last scan was committed, the pages OCR read (from the documents' reasons in the
    store, "OCR of 2 pages"), and pages per second over the run;
  - how many scans were decided by OCR (a check that OCR really ran).

A measurement, not a test: nothing here passes or fails. Needs root (the stack's daemons).
"""

import argparse
import datetime
import json
import os
import random
import smtplib
import sqlite3
import statistics
import subprocess
import sys
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = os.path.join(ROOT, "tests/fixtures/gen/real")
GEN = os.path.join(ROOT, "scripts/bench/gen_backlog.py")


def note(msg):
    print(f"    {msg}", file=sys.stderr, flush=True)


def stack_env():
    """Brings the stack up; returns its environment and whether this run started it (then the
    caller stops it at the end: a stack that was already up, bench-backlog's, is left as it was)."""
    os.environ.setdefault("MAILSTACK_DIR", os.path.join(ROOT, "target/mailstack-scans"))
    mailstack = os.path.join(ROOT, "scripts/mailstack")
    was_up = subprocess.run([mailstack, "status"], capture_output=True).returncode == 0
    out = subprocess.run([mailstack, "up"], check=True, capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    os.environ.update(env)
    return env, not was_up


def stack_down():
    subprocess.run([os.path.join(ROOT, "scripts/mailstack"), "down"], check=False, capture_output=True)


def scan_fixtures():
    """(bytes, content type, extension, pages) of every scan fixture, in a fixed order."""
    out = []
    for name in sorted(os.listdir(REAL)):
        if not name.startswith("scan-"):
            continue
        data = open(os.path.join(REAL, name), "rb").read()
        if name.endswith(".pdf"):
            info = subprocess.run(["pdfinfo", "-"], input=data, capture_output=True).stdout.decode()
            pages = next((int(l.split()[1]) for l in info.splitlines() if l.startswith("Pages:")), 1)
            out.append((data, "application/pdf", "pdf", min(pages, 3)))
        elif name.endswith((".jpg", ".png")):
            ext = name.rsplit(".", 1)[1]
            out.append((data, "image/jpeg" if ext == "jpg" else "image/png", ext, 1))
    return out


def scan_message(i, fixture):
    """An application whose one attachment is a scan under a name that tells nothing."""
    data, ctype, ext, _ = fixture
    rng = random.Random(1000 + i)
    given, family = rng.choice(["Camille", "Hugo", "Inès", "Théo", "Maëlle"]), rng.choice(["Martin", "Durand", "Nguyen"])
    m = EmailMessage()
    m["From"] = f"{given} {family} <scan-{i:04d}@example.test>"
    m["To"] = "contact@example.test"
    m["Subject"] = "Candidature pour le stage"
    m["Date"] = format_datetime(datetime.datetime(2025, 1, 6, 9, 0, tzinfo=datetime.timezone.utc)
                                + datetime.timedelta(minutes=i))
    m["Message-ID"] = make_msgid(f"scan{i}", domain="example.test")
    m.set_content(f"Bonjour,\n\nVeuillez trouver ci-joint mon dossier.\n\nCordialement,\n{given} {family}\n")
    name = f"IMG_{2000 + i}.{ext}" if ext != "pdf" else f"document-{i}.pdf"
    maintype, subtype = ctype.split("/")
    m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n")), f"scan-{i:04d}@example.test"


def deliver(folder, messages):
    """Delivers (bytes, sender) in order over one LMTP session, so UIDs follow the list."""
    env = os.environ
    subprocess.run(["doveadm", "-c", env["MAILSTACK_DOVECOT_CONF"], "mailbox", "create", "-u",
                    "contact@example.test", folder], check=True)
    lmtp = smtplib.LMTP(env["MAILSTACK_HOST"], int(env["MAILSTACK_LMTP_PORT"]), timeout=120)
    lmtp.ehlo("bench.example.test")
    for data, sender in messages:
        refused = lmtp.sendmail(sender, [f"contact+{folder}@example.test"], data)
        if refused:
            raise SystemExit(f"refused: {refused}")
    lmtp.quit()
    deadline = time.monotonic() + 120
    while True:
        out = subprocess.run(["doveadm", "-c", env["MAILSTACK_DOVECOT_CONF"], "-f", "flow", "mailbox", "status", "-u",
                              "contact@example.test", "messages", folder], capture_output=True, text=True).stdout
        if f"messages={len(messages)}" in out:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"folder {folder}: {out.strip()}, expected {len(messages)}")
        time.sleep(0.2)


def write_config(run_dir, folder, password_file):
    env = os.environ
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "mailroom.toml")
    with open(path, "w") as f:
        f.write(f"""# Written by scripts/bench/scan_backlog.py for the stack in {env['MAILSTACK_DIR']}.
[imap]
host = "localhost"
port = {env['MAILSTACK_IMAPS_PORT']}
tls = "implicit"
username = "contact@example.test"
password_file = "{password_file}"
ca_file = "{env['MAILSTACK_CA_FILE']}"
folder = "{folder}"

[smtp]
host = "localhost"
port = {env['MAILSTACK_SUBMISSION_PORT']}
tls = "starttls"
username = "contact@example.test"
password_file = "{password_file}"
ca_file = "{env['MAILSTACK_CA_FILE']}"

[identity]
from = "contact@example.test"
organisation = "La 27e Région"
team = ["team@example.test"]

[storage]
data_dir = "data"
state_path = "state/mailroom.sqlite3"

[replies]
enabled = false

[log]
format = "text"

[[postings]]
slug = "stage-gestion-projet"
title = "Stage – Assistant·e gestion de projet"
language = "fr"
subject_keywords = ["stage", "candidature"]
default = true

[[postings]]
slug = "design-internship"
title = "Service design internship"
language = "en"
subject_keywords = ["internship", "application"]
""")
    return path


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def run_once(mailroom, run_dir, config, expected):
    for sub in ("data", "state"):
        subprocess.run(["rm", "-rf", os.path.join(run_dir, sub)], check=True)
    start = time.time()
    with open(os.path.join(run_dir, "mailroom.log"), "w") as log:
        p = subprocess.run([mailroom, "once", "--config", config], stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.time() - start
    if p.returncode != 0:
        raise SystemExit(f"mailroom once failed ({p.returncode}); see {run_dir}/mailroom.log")
    db = sqlite3.connect(os.path.join(run_dir, "state/mailroom.sqlite3"))
    rows = db.execute("SELECT uid, outcome, recorded_at, candidate, filed FROM messages").fetchall()
    if len(rows) != expected:
        raise SystemExit(f"{len(rows)} messages recorded, expected {expected}; see {run_dir}")
    ordinary, scans, pages, by_ocr, not_filed = [], [], 0, 0, 0
    for uid, outcome, recorded_at, candidate, filed in rows:
        at = parse_ts(recorded_at) - start
        if outcome != "filed":
            not_filed += 1
        if candidate and candidate.startswith("scan-"):
            scans.append(at)
            reasons = " ".join(d.get("reason", "") for d in json.loads(filed or "{}").get("documents", []))
            if "OCR" in reasons:
                by_ocr += 1
            for word in reasons.split("OCR of ")[1:]:
                pages += int(word.split()[0])
            pages += reasons.count("; OCR (")
        else:
            ordinary.append(at)
    return {
        "wall": wall,
        "ordinary_last": max(ordinary),
        "ordinary_median": statistics.median(ordinary),
        "scans": len(scans),
        "scan_last": max(scans) if scans else None,
        "pages": pages,
        "by_ocr": by_ocr,
        "not_filed": not_filed,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ordinary", type=int, default=400)
    ap.add_argument("--scans", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--mailroom", default=os.path.join(ROOT, "target/release/mailroom"))
    ap.add_argument("--keep", action="store_true", help="keep the two folders and target/bench-scans/")
    ap.add_argument("--json", metavar="PATH", help="also write the medians there (scripts/bench-backlog reads them)")
    a = ap.parse_args()
    mailroom = os.path.abspath(a.mailroom)
    if not os.path.exists(mailroom):
        raise SystemExit(f"no {mailroom}: cargo build --release first, or pass --mailroom")
    env, started = stack_env()
    try:
        measure(a, mailroom, env)
    finally:
        if started and not a.keep:
            note(f"stopping the stack this run started ({os.environ['MAILSTACK_DIR']})")
            stack_down()


def measure(a, mailroom, env):
    work = os.path.join(ROOT, "target/bench-scans")
    subprocess.run(["rm", "-rf", work], check=True)
    os.makedirs(work)
    password = os.path.join(work, "password")
    with open(password, "w") as f:
        f.write(env["MAILSTACK_PASSWORD"] + "\n")
    os.chmod(password, 0o600)

    corpus = os.path.join(ROOT, f"target/bench-corpus-{a.ordinary}")
    subprocess.run([sys.executable, GEN, "generate", "--count", str(a.ordinary), "--out", corpus], check=True)
    ordinary = []
    with open(os.path.join(corpus, "manifest.tsv")) as f:
        next(f)
        for line in f:
            i, sender = line.split("\t")[:2]
            ordinary.append((open(os.path.join(corpus, "msgs", f"{int(i):06d}.eml"), "rb").read(), sender))
    fixtures = scan_fixtures()
    scans = [scan_message(i, fixtures[i % len(fixtures)]) for i in range(a.scans)]
    scan_pages = sum(fixtures[i % len(fixtures)][3] for i in range(a.scans))
    # The scans evenly among the ordinary ones, the first one early.
    mixed, every = [], max(1, len(ordinary) // max(1, len(scans)))
    for k, msg in enumerate(ordinary):
        if k % every == 1 and k // every < len(scans):
            mixed.append(scans[k // every])
        mixed.append(msg)
    mixed += scans[len(mixed) - len(ordinary):]
    stamp = time.strftime("%Y%m%d%H%M%S")
    folders = {"plain": (f"scansplain{stamp}", ordinary), "mixed": (f"scansmixed{stamp}", mixed)}
    for label, (folder, msgs) in folders.items():
        deliver(folder, msgs)
        note(f"{label}: folder {folder}, {len(msgs)} messages")

    load = os.getloadavg()[0]
    results = {"plain": [], "mixed": []}
    for r in range(a.rounds):
        for label, (folder, msgs) in folders.items():
            run_dir = os.path.join(work, label)
            config = write_config(run_dir, folder, password)
            res = run_once(mailroom, run_dir, config, len(msgs))
            results[label].append(res)
            note(f"round {r + 1} {label}: {res}")

    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    print(f"mailroom {mailroom} (tree {rev}); {a.ordinary} ordinary applications, {a.scans} scans "
          f"({scan_pages} pages to read); {os.cpu_count()} cores; load at start {load:.1f}; "
          f"median of {a.rounds} round(s)")
    print()
    print("| folder | whole run s | ordinary: last committed s | ordinary: median s | scans: last committed s "
          "| pages OCR read | pages/s over the run | scans decided by OCR |")
    print("|---|---|---|---|---|---|---|---|")
    med = lambda label, key: statistics.median(x[key] for x in results[label])  # noqa: E731
    for label in ("plain", "mixed"):
        res = results[label]
        scan_last = "-" if not res[0]["scans"] else f"{med(label, 'scan_last'):.1f}"
        rate = "-" if not res[0]["pages"] else f"{med(label, 'pages') / med(label, 'scan_last'):.2f}"
        by_ocr = "-" if not res[0]["scans"] else f"{res[0]['by_ocr']}/{res[0]['scans']}"
        print(f"| {label} ({len(folders[label][1])}) | {med(label, 'wall'):.1f} | {med(label, 'ordinary_last'):.1f} "
              f"| {med(label, 'ordinary_median'):.1f} | {scan_last} | {med(label, 'pages'):.0f} | {rate} | {by_ocr} |")
    plain, mixed_last = med("plain", "ordinary_last"), med("mixed", "ordinary_last")
    print()
    print(f"the scans delay the last ordinary application by {mixed_last - plain:+.1f} s "
          f"({mixed_last / max(plain, 1e-9):.2f}x the time without them)")
    if a.json:
        summary = {
            "rev": rev,
            "ordinary": a.ordinary,
            "scans": a.scans,
            "rounds": a.rounds,
            "plain_ordinary_last": plain,
            "mixed_ordinary_last": mixed_last,
            "mixed_scan_last": med("mixed", "scan_last") if results["mixed"][0]["scans"] else None,
            "pages": med("mixed", "pages"),
            "by_ocr": results["mixed"][0]["by_ocr"],
            "not_filed": max(x["not_filed"] for x in results["plain"] + results["mixed"]),
        }
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    if not a.keep:
        for folder, _ in folders.values():
            subprocess.run(["doveadm", "-c", env["MAILSTACK_DOVECOT_CONF"], "mailbox", "delete", "-u",
                            "contact@example.test", folder], check=False)


if __name__ == "__main__":
    main()
