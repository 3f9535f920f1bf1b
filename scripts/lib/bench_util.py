#!/usr/bin/env python3
"""Helpers of scripts/bench (python3 standard library only).

usage:
  bench_util.py diff BEFORE.json AFTER.json [OP]
      Difference of two /__emulator/stats snapshots (both hosts: batch host ops are named
      batch.OP). With OP ("total" or an op name such as images.list_v2) prints that one
      number; without, prints "N (op=n, ...)" listing the operations that moved.
  bench_util.py hosts BEFORE.json AFTER.json
      Requests per host between two snapshots: "GLOBAL BATCH 429S TOKENS" (429s on both
      hosts; TOKENS = batch_token requests).
  bench_util.py list BASE ACCOUNT TOKENFILE PER_PAGE TIMEOUT_S
      Pages through GET /accounts/ACCOUNT/images/v2 over one keep-alive connection, parsing
      every page as a client would, and prints "SECONDS IMAGES PAGES". The baseline for a
      directory listing. The bearer token is read from TOKENFILE, never taken from argv.
  bench_util.py ids BASE ACCOUNT TOKENFILE PREFIX
      Prints the ids (one per line, sorted) of the images whose id starts with PREFIX.
  bench_util.py table ROWS.tsv HEADER.txt MARKDOWN_OUT
      Renders the result rows (tab-separated: section, measure, imagesfs, alternative,
      ratio, target, result), ordered by section, as an aligned text table on stdout and as
      markdown, preceded by HEADER.txt, into MARKDOWN_OUT.
"""
import http.client
import json
import sys
import time
import urllib.parse

COLUMNS = ("#", "measure", "imagesfs", "alternative", "ratio", "target", "result")


def load_stats(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    ops = dict(doc.get("ops", {}))
    ops.update(doc.get("batch_ops", {}))  # "batch.images.upload", ...: the batch host
    total = int(doc.get("total", 0)) + int(doc.get("batch_total", 0))
    return total, {k: int(v) for k, v in ops.items()}


def cmd_diff(args):
    t0, ops0 = load_stats(args[0])
    t1, ops1 = load_stats(args[1])
    if len(args) > 2:
        op = args[2]
        print(t1 - t0 if op == "total" else ops1.get(op, 0) - ops0.get(op, 0))
        return 0
    moved = []
    for name in sorted(set(ops0) | set(ops1)):
        d = ops1.get(name, 0) - ops0.get(name, 0)
        if d:
            moved.append("%s=%d" % (name.replace("images.", ""), d))
    print("%d (%s)" % (t1 - t0, ", ".join(moved) if moved else "none"))
    return 0


def cmd_hosts(args):
    docs = []
    for path in args[:2]:
        with open(path, encoding="utf-8") as f:
            docs.append(json.load(f))
    a, b = docs

    def d(key):
        return int(b.get(key, 0)) - int(a.get(key, 0))

    tok = int(b["ops"].get("images.batch_token", 0)) - int(a["ops"].get("images.batch_token", 0))
    print(d("total"), d("batch_total"), d("sent_429") + d("sent_429_batch"), tok)
    return 0


class Api:
    """One keep-alive connection to the emulator's API."""

    def __init__(self, base, account, tokenfile, timeout):
        u = urllib.parse.urlsplit(base)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("bench_util: refusing non-loopback base %s" % base)
        self.prefix = u.path.rstrip("/") + "/accounts/" + urllib.parse.quote(account, safe="")
        with open(tokenfile, encoding="utf-8") as f:
            self.token = f.read().strip()
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

    def get_json(self, path, query):
        url = self.prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        self.conn.request("GET", url, headers={"Authorization": "Bearer " + self.token})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit("bench_util: GET %s: HTTP %d" % (path, resp.status))
        return json.loads(body)

    def list_all(self, per_page):
        """Yields the pages (lists of images) of the v2 listing."""
        token = None
        for _ in range(1_000_000):
            query = {"per_page": per_page}
            if token:
                query["continuation_token"] = token
            result = self.get_json("/images/v2", query).get("result") or {}
            yield result.get("images") or []
            token = result.get("continuation_token")
            if not token:
                return


def cmd_list(args):
    api = Api(args[0], args[1], args[2], float(args[4]))
    start = time.monotonic()
    images = pages = 0
    for page in api.list_all(int(args[3])):
        pages += 1
        images += len(page)
    print("%.4f %d %d" % (time.monotonic() - start, images, pages))
    return 0


def cmd_ids(args):
    api = Api(args[0], args[1], args[2], 60.0)
    ids = []
    for page in api.list_all(10000):
        ids.extend(im["id"] for im in page if im.get("id", "").startswith(args[3]))
    for i in sorted(ids):
        print(i)
    return 0


def cmd_table(args):
    rows = []
    with open(args[0], encoding="utf-8") as f:
        for line in f:
            cells = line.rstrip("\n").split("\t")
            rows.append((cells + [""] * len(COLUMNS))[: len(COLUMNS)])
    rows.sort(key=lambda r: r[0])  # by section; stable, so each keeps its run order
    with open(args[1], encoding="utf-8") as f:
        header = f.read().rstrip("\n")
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(COLUMNS)]

    def fmt(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [header, "", fmt(COLUMNS), fmt(["-" * w for w in widths])]
    out += [fmt(r) for r in rows]
    print("\n".join(out))

    def md(cells):
        return "| " + " | ".join(c.replace("|", "\\|") or " " for c in cells) + " |"

    lines = [header, "", md(COLUMNS), md(["---"] * len(COLUMNS))] + [md(r) for r in rows]
    with open(args[2], "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


COMMANDS = {"diff": (cmd_diff, 2), "hosts": (cmd_hosts, 2), "list": (cmd_list, 5), "ids": (cmd_ids, 4),
            "table": (cmd_table, 3)}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or len(argv) - 2 < COMMANDS[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    return COMMANDS[argv[1]][0](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
