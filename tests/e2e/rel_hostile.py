"""A hostile fake of the Images API for t_rel_hostile.sh, on 127.0.0.1 only.

    python3 rel_hostile.py MODEFILE

Prints its port on the first stdout line. Every request re-reads MODEFILE (one word), so a
test switches behaviour without restarting. The stats endpoint always answers correctly so
that a mount passes its account check; everything else misbehaves according to the mode:

  names    list pages full of ids that must never become paths: "..", ".", "a/../b",
           "../../tmp/<canary>", "/abs", "a//b", control characters, NUL, 300-byte and
           100 KB names, 2,000-level paths, duplicates; hostile filenames; GET of any id
           answers with another id
  types    every field with the wrong JSON type; result/images not what they should be
  deep     metadata nested 100,000 levels deep
  huge     a list page of 200 MB that never completes (and a 200 MB Content-Length)
  endless  a new continuation token and 10,000 new ids on every page, forever
  blobs    normal ids; blobs of 50 MB, endless chunked blobs, bodies shorter than their
           Content-Length, Content-Length: -1 and garbage
  keys     keys and variants named "..", "a/b", with control characters; 1 MB values
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEFILE = sys.argv[1]
CANARY = os.environ.get("REL_CANARY", "imagesfs-canary")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
MB = 1024 * 1024


def mode():
    try:
        with open(MODEFILE) as f:
            return f.read().strip()
    except OSError:
        return "names"


def image(i, **kw):
    d = {"id": i, "filename": "f.png", "uploaded": "2024-01-01T00:00:00.000Z",
         "requireSignedURLs": False, "variants": []}
    d.update(kw)
    return d


def names_page():
    ids = ["ok.png", "..", ".", "a/../b", "../../../../../../tmp/" + CANARY,
           "../" + CANARY, "/abs", "a//b", "dir/", "ctl\x01x", "nl\nx", "nul\x00x",
           "tab\tx", "del\x7fx", "x" * 300, "y" * 100000, "/".join(["d"] * 2000),
           "dup", "dup", "images", "keys", "sub/..", "sub/.", "sub/ok.png", "\ud800x",
           "sub/" + "z" * 300 + "/in.png"]
    imgs = [image(i) for i in ids]
    imgs.append(image("fname1", filename="../../" + CANARY))
    imgs.append(image("fname2", filename="a/b\x00c"))
    imgs.append(image("vars", variants=["https://imagedelivery.net/h/vars/../../x"]))
    return {"images": imgs, "continuation_token": None}


def types_page():
    return {"images": [
        {"id": 123}, {"id": None}, {"id": ["x"]}, {"id": {"a": 1}}, "string", 7, None, [],
        image("t1", uploaded={"x": 1}), image("t2", uploaded=12345),
        image("t3", uploaded="not a date"), image("t4", variants="x"),
        image("t5", variants=[1, 2]), image("t6", meta=[1, 2]), image("t7", meta="str"),
        image("t8", requireSignedURLs="yes"), image("t9", filename=5),
        image("t10", creator={"a": 1}), image("t11", variants=["u", 7, None]),
        image("ok.png"),
    ], "continuation_token": 5}


def envelope(result, success=True):
    return {"result": result, "success": success, "errors": [], "messages": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, obj, status=200):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, chunk, total, ctype="application/json", length=None):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        try:
            while total is None or sent < total:
                self.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def do_GET(self):
        m = mode()
        path = self.path.split("?")[0]
        parts = path.split("/images/", 1)
        rest = parts[1] if len(parts) == 2 else ""
        if rest == "v1/stats":
            return self.send_json(envelope({"count": {"allowed": 100000, "current": 5}}))
        if rest in ("v1/keys", "v1/variants"):
            return self.keys_or_variants(m, rest)
        if rest.startswith("v2") or rest == "v1":
            return self.listing(m)
        if rest.startswith("v1/") and rest.endswith("/blob"):
            return self.blob(m, rest)
        if rest.startswith("v1/"):
            if m == "names":  # asked for one id, answer with another
                return self.send_json(envelope(image("../../" + CANARY)))
            if m == "types":
                return self.send_json(envelope({"id": 5, "variants": {}}))
            return self.send_json(envelope(image(rest[3:])))
        self.send_json({"success": False, "errors": [{"code": 7003, "message": "no route"}]}, 404)

    def listing(self, m):
        if m == "names":
            return self.send_json(envelope(names_page()))
        if m == "types":
            return self.send_json(envelope(types_page()))
        if m == "deep":
            deep = b'{"result":{"images":[{"id":"d","meta":' + b'{"a":' * 100000 + b"1"
            deep += b"}" * 100000 + b'}],"continuation_token":null},"success":true}'
            return self.send_json(deep)
        if m == "huge":
            head = b'{"result":{"images":[' + b'{"id":"h","filename":"' + b"A" * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(200 * MB))
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(head)
                for _ in range(200):
                    self.wfile.write(b"B" * MB)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return
        if m == "endless":
            n = getattr(self.server, "pages", 0)
            self.server.pages = n + 1
            if not hasattr(self.server, "endless_tpl"):
                imgs = [image("e@@@@@@-%d" % i) for i in range(10000)]
                self.server.endless_tpl = json.dumps(envelope(
                    {"images": imgs, "continuation_token": "t@@@@@@"})).encode()
            return self.send_json(self.server.endless_tpl.replace(b"@@@@@@", b"%06d" % n))
        ids = ["x1.png", "x2.png", "x3.png", "x4.png", "x5.png"] if m == "blobs" else ["k.png"]
        return self.send_json(envelope({"images": [image(i) for i in ids],
                                        "continuation_token": None}))

    def blob(self, m, rest):
        i = rest[3:-5]
        if m != "blobs":
            return self.stream(PNG, len(PNG), "image/png", len(PNG))
        if i == "x1.png":  # 50 MB with an honest Content-Length
            return self.stream(b"\x89PNG" + b"\0" * (MB - 4), 50 * MB, "image/png", 50 * MB)
        if i == "x2.png":  # endless, no Content-Length
            return self.stream(b"\0" * 65536, None, "image/png")
        if i == "x3.png":  # shorter than announced
            return self.stream(PNG, len(PNG), "image/png", len(PNG) + 1000)
        if i == "x4.png":  # a JSON error envelope that is itself gigantic
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(b'{"errors":[{"code":1,"message":"')
                for _ in range(100):
                    self.wfile.write(b"E" * MB)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return
        self.send_response(200)  # x5: a nonsense Content-Length
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "-1")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(PNG)
        self.close_connection = True

    def keys_or_variants(self, m, rest):
        bad = ["..", ".", "a/b", "../../" + CANARY, "ctl\x01", "nul\x00x", "", "k" * 300]
        if m == "keys" and rest == "v1/keys":
            keys = [{"name": n, "value": "v" * 43} for n in bad]
            keys += [{"name": "big", "value": "V" * MB}, {"name": "ok", "value": "w" * 43}]
            return self.send_json(envelope({"keys": keys}))
        if m == "keys":
            variants = {n: {"id": n, "options": {"fit": "cover", "width": 1, "height": 1}}
                        for n in bad}
            variants["ok"] = {"id": "ok", "options": {"fit": "cover", "width": 1, "height": 1}}
            return self.send_json(envelope({"variants": variants}))
        if m == "types" and rest == "v1/keys":
            return self.send_json(envelope({"keys": [{"name": 5, "value": None}, "k", 7,
                                                     {"name": "ok", "value": ["v"]}]}))
        if m == "types":
            return self.send_json(envelope({"variants": {
                "a": {"id": 5, "options": "x"}, "b": [], "c": None,
                "deep": {"id": "deep", "options": json.loads("[" * 50 + "]" * 50)},
                "ok": {"id": "ok", "options": {"fit": "cover", "width": 1, "height": 1}}}}))
        if rest == "v1/keys":
            return self.send_json(envelope({"keys": [{"name": "default", "value": "v" * 43}]}))
        return self.send_json(envelope({"variants": {"public": {
            "id": "public", "options": {"fit": "scale-down", "metadata": "none",
                                        "width": 10, "height": 10},
            "neverRequireSignedURLs": False}}}))


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    threading.Event().wait()


main()
