"""Model-based fault test of an imagesfs mount (issue 12, part 5), run by t_rel_model*.sh.

A seeded generator runs random user operations through real tools on a real mount (cp of a
new image, cp -a of one with metadata, replace, mv across directories and onto existing
images, rm, setfattr of user.metadata and user.creator, mkdir, cmp) while the emulator
injects faults: ~10% of requests fail at random (503, 429, connection dropped before or
after the server acted, stalls) and in some operations one endpoint fails for the whole
retry budget (a "burst"), before or after the server acted. An in-memory model holds what
the account must contain: id -> (bytes, metadata, creator).

Allowed outcomes, checked after every operation with the faults cleared:
  * exit 0: the operation took effect (cp: the image with its bytes and metadata; replace:
    new bytes, old metadata and creator; mv: the destination holds the source's bytes,
    metadata and creator, the source id is gone; rm: gone; setfattr: the value is stored).
  * non-zero exit: the account is as before the operation, for every id it touched.
Operations the intent journal finishes later may pass through other states. Each op names
those "tolerated" states, each only under the burst that makes it unavoidable without a
journal (burst_on): a failed replace that lost the image (or stored the new bytes
with an outcome it could not read back), a mv that exited 0 with its source id left, a
failed mv that lost its target or left the new id, a failed cp whose upload was stored but
could not be read back. With a journal (the mount lists `writeback` in --help) the check
polls until every id is in an allowed state or CONVERGE_S seconds pass, and a tolerated
state is a failure like any other; with a journal a failed mv may end in either state of the
rename (before, or moved: the journal settles to whichever the account allows), never a mix. Without a journal, a tolerated state is printed as a
JOURNAL finding (label, op, states; the op sequence at the end) and the model follows the
account; any other state fails the run.
The mount's view is checked too (a touched name exists in the mount iff the model has it;
in write-back mode too, where pending uploads must show at once),
and the whole account (every id, bytes, metadata, creator, nothing extra) is compared with
the model every 25 operations and at the end. In write-back mode (-o writeback) operations
return before their uploads, so the account is compared only after `imagesfs sync MOUNT`
(every 25 operations and at the end), which must exit 0 once the faults are cleared; a
failed mv or replace (synchronous there too, and possibly followed by the journal putting an
old image back, which the mount may hide until it lands) is followed by a sync and then
checked as in synchronous mode.

Environment: REL_BASE, IMAGESFS_EMULATOR_TOKEN (rel_api), EMU_ADMIN, MODEL_MOUNT,
MODEL_MODE (sync|writeback), MODEL_JOURNAL (1 when the daemon has a journal), MODEL_SYNC
(the imagesfs binary), IMAGESFS_MODEL_SEED, IMAGESFS_MODEL_OPS, MODEL_WORK (temp dir).
On failure the seed and the executed op sequence are printed to replay the run.
"""
import json
import os
import random
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import rel_api

ADMIN = os.environ["EMU_ADMIN"]
MNT = os.environ["MODEL_MOUNT"]
MODE = os.environ.get("MODEL_MODE", "sync")
JOURNAL = os.environ.get("MODEL_JOURNAL") == "1"
SYNC_BIN = os.environ.get("MODEL_SYNC", "imagesfs")
SEED = int(os.environ.get("IMAGESFS_MODEL_SEED", "1"))
OPS = int(os.environ.get("IMAGESFS_MODEL_OPS", "60"))
WORK = os.environ["MODEL_WORK"]
CONVERGE_S = float(os.environ.get("IMAGESFS_MODEL_CONVERGE_S", "40"))
OP_TIMEOUT_S = 150
FULL_EVERY = 25
BURST_P = 0.3
DIRS = ["", "a/", "b/", "a/c/"]
BURST_OPS = ["images.upload", "images.delete", "images.edit", "images.get", "images.blob",
             "images.list_v2"]
BURST_MODES = [
    {"mode": "status", "status": 503, "retry_after": 0},
    {"mode": "status", "status": 429, "retry_after": 0},
    {"mode": "close"},
    {"mode": "close", "after": True},
    {"mode": "status", "status": 502, "after": True},
    {"mode": "stall", "stall_ms": 400},
]
# The user-visible metadata: what `getfattr -n user.metadata` shows, i.e. the API metadata
# without the keys imagesfs reserves (API_STAMP_KEY in api/api_stamp.h: mtime/size stamp).
RESERVED_META_KEYS = frozenset({"imagesfs"})

rng = random.Random(SEED)
log = []          # executed operations, for the replay
findings = []     # JOURNAL-domain states seen without a journal
mount_unsure = set()  # ids of findings: the mount's view of them is part of the finding
burst_now = None      # the burst armed for the running operation


def burst_on(*ops, acted=None):
    """Whether the running operation's burst fails one of these endpoints for the whole
    budget (acted: only bursts where the server did / did not act). A tolerated state needs
    the burst that makes it unavoidable without a journal: a replaced image may be lost only
    when uploads (the restore) fail, never when only DELETE replies are lost (finding 1)."""
    if not burst_now or burst_now["op"] not in ops:
        return False
    did = bool(burst_now.get("after")) or burst_now["mode"] == "stall"
    return acted is None or did == acted


UNREADABLE = ("images.blob", "images.get")  # an outcome that cannot be read back


def user_meta(meta):
    """Metadata as the user sees it (None when there is none)."""
    if not meta:
        return None
    m = {k: v for k, v in meta.items() if k not in RESERVED_META_KEYS}
    return m or None


class Fail(Exception):
    pass


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(ADMIN + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def faults_clear():
    admin("DELETE", "/faults")


def faults_arm(opno, burst):
    rules = [dict(burst)] if burst else []
    base = SEED * 100003 + opno * 7
    rules += [
        {"op": "*", "status": 503, "retry_after": 0, "ratio": 0.03, "seed": base + 1},
        {"op": "*", "status": 429, "retry_after": 0, "ratio": 0.02, "seed": base + 2},
        {"op": "*", "mode": "close", "ratio": 0.02, "seed": base + 3},
        {"op": "*", "mode": "close", "after": True, "ratio": 0.02, "seed": base + 4},
        {"op": "*", "mode": "stall", "stall_ms": 300, "ratio": 0.01, "seed": base + 5},
    ]
    admin("POST", "/faults", rules)


def png(seed):
    r = random.Random(seed)
    w, h = r.randint(2, 12), r.randint(2, 12)
    raw = b"".join(b"\x00" + bytes(r.randrange(256) for _ in range(w * 3)) for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def run(*argv):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=OP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # A tool blocked in a FUSE request cannot die until the daemon answers: report now
        # (subprocess.run would wait for it, past the test's own timeout) and leave it.
        p.kill()
        raise Fail(f"{' '.join(argv)} hung for {OP_TIMEOUT_S} s")
    return p.returncode, err.decode(errors="replace").strip()


def local_file(tag, data, meta=None):
    path = os.path.join(WORK, tag)
    with open(path, "wb") as f:
        f.write(data)
    if meta is not None:
        os.setxattr(path, "user.metadata", json.dumps(meta, separators=(",", ":")).encode())
    return path


def account_state(i):
    """(bytes, user metadata, creator) of id i in the account, or None."""
    img = rel_api.image(i)
    if img is None:
        return None
    data = rel_api.blob(i)
    if data is None:
        return None
    return (data, user_meta(img.get("meta")), img.get("creator") or None)


def describe(st):
    if st is None:
        return "absent"
    return f"{len(st[0])} bytes sha={zlib.crc32(st[0]):08x} meta={st[1]} creator={st[2]!r}"


class Model:
    def __init__(self):
        self.imgs = {}
        self.dirs = set(d.rstrip("/") for d in DIRS if d)
        self.counter = 0

    def new_name(self):
        self.counter += 1
        return f"{rng.choice(DIRS)}m{SEED}-{self.counter}.png"

    def pick(self):
        return rng.choice(sorted(self.imgs)) if self.imgs else None


def check_ids(model, ids, allowed, opdesc, tolerated):
    """Checks the ids against their allowed states: a dict id -> list of states (each id on
    its own), or a list of dicts id -> state (joint alternatives, e.g. a rename before or
    after; the first is the "expected" one in messages).

    tolerated: (label, {id: [states]}) or None: states the intent journal exists to prevent
    or settle. With a journal the check polls until every id is in an allowed state; without
    one, ids in a tolerated state are reported as findings and the model follows the account.
    Returns the ids excused that way."""
    label, tol = tolerated or ("", {})
    joint = isinstance(allowed, list)
    first = allowed[0] if joint else {i: allowed[i][0] for i in ids}
    deadline = time.time() + (CONVERGE_S if JOURNAL and (tol or joint) else 0)
    while True:
        got = {i: account_state(i) for i in ids}
        if joint:
            ok = any(all(got[i] == alt[i] for i in ids) for alt in allowed)
            bad = [] if ok else [i for i in ids if got[i] != first[i]]
        else:
            bad = [i for i in ids if got[i] not in allowed[i]]
        if not bad or time.time() >= deadline:
            break
        time.sleep(0.5)
    if bad and (JOURNAL or any(got[i] not in tol.get(i, []) for i in bad)):
        alts = allowed if joint else [first]
        want = " or ".join("{" + ", ".join(f"{i}: {describe(a[i])}" for i in ids) + "}"
                           for a in alts)
        raise Fail(f"after {opdesc}: account has "
                   + "{" + ", ".join(f"{i}: {describe(got[i])}" for i in ids) + "}"
                   + f", allowed {want}")
    if bad:
        states = {i: describe(got[i]) for i in bad}
        findings.append((len(log) - 1, label, opdesc, states))
        print(f"--- JOURNAL finding at op {len(log) - 1} ({label}): {opdesc}: {states}")
    for i in ids:
        model_set(model, i, got[i])
    return set(bad)  # the mount's view of these is part of the same finding


def model_set(model, i, st):
    if st is None:
        model.imgs.pop(i, None)
    else:
        model.imgs[i] = st


def check_mount(model, ids):
    for i in ids:
        there = os.path.exists(os.path.join(MNT, "images", i))
        if there != (i in model.imgs):
            # one refresh of the directory entry, then it must agree
            os.listdir(os.path.dirname(os.path.join(MNT, "images", i)) or MNT)
            there = os.path.exists(os.path.join(MNT, "images", i))
            if there != (i in model.imgs):
                raise Fail(f"mount shows images/{i} {'present' if there else 'absent'}, "
                           f"the account has it {'present' if i in model.imgs else 'absent'}")


def check_full(model, where):
    ids = set(rel_api.ids())
    extra, missing = ids - set(model.imgs), set(model.imgs) - ids
    if extra or missing:
        raise Fail(f"{where}: account ids differ from the model: extra {sorted(extra)}, "
                   f"missing {sorted(missing)}")
    for i in sorted(ids):
        st = account_state(i)
        if st != model.imgs[i]:
            raise Fail(f"{where}: {i}: account {describe(st)}, model {describe(model.imgs[i])}")


# ---- operations: each returns (description, rc, stderr, ids, allowed states, tolerated) -----

def op_cp_new(model, opno):
    name = model.new_name()
    data = png(SEED * 1000003 + opno)
    meta = {"k": rng.randrange(1000), "op": opno} if rng.random() < 0.4 else None
    src = local_file(f"new{opno}.png", data, meta)
    ensure_dir(model, name)
    tool = ["cp", "-a"] if meta is not None else ["cp"]
    rc, err = run(*tool, src, os.path.join(MNT, "images", name))
    after = (data, meta, None)
    # A failed upload whose outcome could not be read back (the blob read failed too) may
    # have been stored: the known gap in docs/RELIABILITY.md, which only a journal can settle.
    tol = ("failed upload stored", {name: [after]}) if rc and burst_on(*UNREADABLE) else None
    return (f"{' '.join(tool)} new {name} meta={meta}", rc, err, [name],
            {name: [after] if rc == 0 else [None]}, tol)


def op_replace(model, opno):
    name = model.pick()
    if name is None:
        return op_cp_new(model, opno)
    old = model.imgs[name]
    data = png(SEED * 1000003 + opno)
    src = local_file(f"rep{opno}.png", data)
    rc, err = run("cp", src, os.path.join(MNT, "images", name))
    new = (data, old[1], old[2])
    tol = None
    if rc and burst_on("images.upload"):
        tol = ("failed replace lost the image", {name: [None]})
    elif rc and burst_on(*UNREADABLE):
        tol = ("failed replace stored the new bytes", {name: [new]})
    return (f"cp replace {name}", rc, err, [name], {name: [new] if rc == 0 else [old]}, tol)


def op_mv(model, opno):
    src = model.pick()
    if src is None:
        return op_cp_new(model, opno)
    others = [i for i in sorted(model.imgs) if i != src]
    if others and rng.random() < 0.4:
        dst = rng.choice(others)
    else:
        dst = model.new_name()
        ensure_dir(model, dst)
    s_old, d_old = model.imgs[src], model.imgs.get(dst)
    rc, err = run("mv", os.path.join(MNT, "images", src), os.path.join(MNT, "images", dst))
    if rc == 0:
        allowed = {src: [None], dst: [s_old]}
        tol = None
        if burst_on("images.delete", acted=False):
            tol = ("mv exited 0 but the source id remains", {src: [s_old]})
    elif JOURNAL:
        # The journal settles an unfinished rename to before or after, whichever the account
        # allows (journal.h); a failed mv may therefore have moved the image, never lost it.
        allowed = [{src: s_old, dst: d_old}, {src: None, dst: s_old}]
        tol = None
    else:
        allowed = {src: [s_old], dst: [d_old]}
        tol = None
        if burst_on("images.upload") and d_old is not None:
            tol = ("failed mv lost the target", {dst: [None]})
        elif burst_on(*UNREADABLE):
            tol = ("failed mv left the new id", {dst: [s_old]})
    return (f"mv {src} -> {dst}{' (onto existing)' if d_old else ''}", rc, err, [src, dst],
            allowed, tol)


def op_rm(model, opno):
    name = model.pick()
    if name is None:
        return op_cp_new(model, opno)
    old = model.imgs[name]
    rc, err = run("rm", os.path.join(MNT, "images", name))
    return (f"rm {name}", rc, err, [name], {name: [None] if rc == 0 else [old]}, None)


def op_setfattr(model, opno):
    name = model.pick()
    if name is None:
        return op_cp_new(model, opno)
    old = model.imgs[name]
    if rng.random() < 0.6:
        meta = {"set": opno, "r": rng.randrange(10**6)}
        val = json.dumps(meta, separators=(",", ":"))
        new = (old[0], meta, old[2])
        attr = "user.metadata"
    else:
        val = f"creator-{opno}-{rng.randrange(1000)}"
        new = (old[0], old[1], val)
        attr = "user.creator"
    rc, err = run("setfattr", "-n", attr, "-v", val, os.path.join(MNT, "images", name))
    if rc != 0 and ("not supported" in err.lower()):
        raise Fail(f"setfattr {attr} on {name} failed with '{err}': metadata would be dropped")
    return (f"setfattr {attr}={val} {name}", rc, err, [name],
            {name: [new] if rc == 0 else [old]}, None)


def op_mkdir(model, opno):
    d = f"{rng.choice(DIRS)}d{opno}"
    rc, err = run("mkdir", "-p", os.path.join(MNT, "images", d))
    if rc == 0:
        if not os.path.isdir(os.path.join(MNT, "images", d)):
            raise Fail(f"mkdir {d} exited 0 but the directory is missing")
        model.dirs.add(d)
    return (f"mkdir {d}", rc, err, [], {}, None)


def op_cmp(model, opno):
    name = model.pick()
    if name is None:
        return op_cp_new(model, opno)
    want = model.imgs[name][0]
    try:
        with open(os.path.join(MNT, "images", name), "rb") as f:
            got = f.read()
        if got != want:
            raise Fail(f"cmp {name}: the mount reads {len(got)} bytes, the model has {len(want)}")
        rc, err = 0, ""
    except OSError as e:
        rc, err = 1, str(e)  # a read may fail under faults; it must never return wrong bytes
    return (f"cmp {name}", rc, err, [name], {name: [model.imgs[name]]}, None)


def ensure_dir(model, name):
    d = os.path.dirname(name)
    if d and d not in model.dirs:
        model.dirs.add(d)
    if d:
        os.makedirs(os.path.join(MNT, "images", d), exist_ok=True)


OPS_TABLE = [(op_cp_new, 3), (op_replace, 2), (op_mv, 2), (op_rm, 1), (op_setfattr, 2),
             (op_mkdir, 1), (op_cmp, 1)]
# The endpoints each operation uses: a burst picks one of them (or, rarely, any endpoint).
OP_ENDPOINTS = {
    op_cp_new: ["images.upload"],
    op_replace: ["images.delete", "images.upload", "images.blob"],
    op_mv: ["images.delete", "images.upload", "images.blob"],
    op_rm: ["images.delete"],
    op_setfattr: ["images.edit"],
    op_mkdir: ["images.list_v2"],
    op_cmp: ["images.blob"],
}


def choose_op():
    total = sum(w for _, w in OPS_TABLE)
    x = rng.randrange(total)
    for f, w in OPS_TABLE:
        if x < w:
            return f
        x -= w
    return OPS_TABLE[0][0]


def sync_mount(where):
    rc, err = run(SYNC_BIN, "sync", MNT)
    if rc != 0:
        raise Fail(f"{where}: imagesfs sync exited {rc} with the faults cleared: {err}")


def one_op(model, opno):
    global burst_now
    burst = None
    f = choose_op()
    if rng.random() < BURST_P:
        ops = OP_ENDPOINTS[f] if rng.random() < 0.85 else BURST_OPS
        burst = dict(rng.choice(BURST_MODES), op=rng.choice(ops))
    faults_arm(opno, burst)
    burst_now = burst
    try:
        desc, rc, err, ids, allowed, tol = f(model, opno)
    except Fail as e:
        raise Fail(f"op {opno} ({f.__name__}) [burst {json.dumps(burst, sort_keys=True)}]: {e}")
    finally:
        faults_clear()
    desc += f" [burst {json.dumps(burst, sort_keys=True)}]" if burst else ""
    log.append(f"{opno}: {desc} -> exit {rc}{': ' + err.splitlines()[0] if err else ''}")
    if MODE == "sync" and ids:
        mount_unsure.update(check_ids(model, ids, allowed, desc, tol))
        check_mount(model, [i for i in ids if i not in mount_unsure])
    elif ids and rc and f in (op_mv, op_replace):
        # write-back, a failed rename or replace: these run synchronously, and the journal
        # may still be putting an old image back, which a listing refresh may hide from the
        # mount until it lands (docs/RELIABILITY.md). Once `imagesfs sync` says the journal
        # is done, the account and the mount are checked as in synchronous mode.
        sync_mount(f"op {opno}")
        mount_unsure.update(check_ids(model, ids, allowed, desc, tol))
        check_mount(model, [i for i in ids if i not in mount_unsure])
    elif ids:
        # write-back: exit 0 took effect in the mount at once (pending uploads are visible);
        # the account is compared after sync
        for i in ids:
            model_set(model, i, allowed[0][i] if isinstance(allowed, list) else allowed[i][0])
        check_mount(model, [i for i in ids if i not in mount_unsure])
    if (opno + 1) % FULL_EVERY == 0:
        if MODE == "writeback":
            sync_mount(f"op {opno}")
        check_full(model, f"full check after op {opno}")


def main():
    model = Model()
    t0 = time.time()
    print(f"--- model test: seed {SEED}, {OPS} ops, mode {MODE}, journal {int(JOURNAL)}")
    try:
        faults_clear()
        for opno in range(OPS):
            one_op(model, opno)
        if MODE == "writeback":
            sync_mount("the end")
        check_full(model, "final check")
    except Exception as e:  # noqa: BLE001 - every failure prints the replay
        faults_clear()
        print(f"FAIL: model test, seed {SEED}, mode {MODE}: {e}")
        mode = " MODEL_MODE=writeback" if MODE == "writeback" else ""
        print(f"replay: IMAGESFS_MODEL_SEED={SEED} IMAGESFS_MODEL_OPS={len(log) + 1}{mode}; "
              "ops so far:")
        for line in log:
            print("  " + line)
        sys.exit(1)
    if os.environ.get("IMAGESFS_MODEL_VERBOSE"):
        print("\n".join("  " + line for line in log))
    fails = sum(1 for line in log if not line.split(" -> exit ")[1].startswith("0"))
    print(f"--- model test passed: seed {SEED}, {OPS} ops ({fails} failed as allowed), "
          f"{len(model.imgs)} images, {time.time() - t0:.1f} s")
    for opno, label, desc, states in findings:
        print(f"--- JOURNAL finding (needs the intent journal) op {opno} ({label}): {desc}: {states}")
    if findings:
        print(f"--- {len(findings)} JOURNAL findings; op sequence of seed {SEED}:")
        for line in log:
            print("  " + line)


if __name__ == "__main__":
    main()
