"""Direct Images API access for the t_rel_*.sh checks (imported by rel_lib.sh's rel_py).

The base URL comes from REL_BASE and the token from IMAGESFS_EMULATOR_TOKEN in the
environment, never from argv. ids() lists every id, blob(id) returns the stored bytes or
None, image(id) the result object or None.
"""
import json
import os
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ["REL_BASE"]
HDR = {"Authorization": "Bearer " + os.environ["IMAGESFS_EMULATOR_TOKEN"]}


def _get(path):
    req = urllib.request.Request(BASE + path, headers=HDR)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def esc(i):
    return urllib.parse.quote(i, safe="")


def ids():
    out, tok = [], ""
    while True:
        q = "/v2?per_page=10000" + ("&continuation_token=" + tok if tok else "")
        d = json.loads(_get(q))
        out += [im["id"] for im in d["result"]["images"]]
        tok = d["result"].get("continuation_token")
        if not tok:
            return out


def blob(i):
    return _get("/v1/" + esc(i) + "/blob")


def image(i):
    b = _get("/v1/" + esc(i))
    return None if b is None else json.loads(b)["result"]
