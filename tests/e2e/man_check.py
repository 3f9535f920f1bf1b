#!/usr/bin/env python3
"""man_check.py - compare what --help lists with what a man page documents.

  man_check.py options HELP_TEXT_FILE MAN_PAGE README SOURCE...
  man_check.py verbs   HELP_TEXT_FILE MAN_PAGE

options: the options of `mount.imagesfs --help` (the lines under "Options:", or any
header ending in "options:"), the .TP
entries of the man page's OPTIONS section, the rows of README's option table, and the
option table fs_opt_table (in whichever SOURCE defines it, minus the keys that only
discard, refuse or print) must be one set.
verbs: the verbs of `imagesfs --help` (the lines under "verbs:") and the .TP entries of
the man page's COMMANDS section must be one set.

An option is compared by name with a trailing '=' when it takes a value ("dir_ttl=",
"ro", "-f"), so a flag documented as taking a value (or the other way round) differs too.
Every difference is one line that names the option, the side that has it and the side
that lacks it; exit status 1 when there is any, 0 when the sets agree.
"""
import re
import sys

# Printing help and version is documented in prose, not compared.
NOT_COMPARED = {"-h", "--help", "-V", "--version"}
# fs_opt_table keys that never reach the configuration: mount(8)-only options that are
# dropped, secrets that are refused, and the printing keys.
TABLE_KEYS_SKIPPED = {"KEY_DISCARD", "KEY_SECRET", "KEY_HELP", "KEY_VERSION"}
NAME_RE = re.compile(r"^(--?[A-Za-z][\w-]*|[A-Za-z_][\w.-]*)(=.*)?$")


def option_key(piece):
    """'uid=N' -> 'uid=', 'ro' -> 'ro', '-f' -> '-f'; None when it is prose."""
    piece = piece.strip()
    if piece.startswith("and "):
        piece = piece[4:].strip()
    m = NAME_RE.match(piece)
    if not m:
        return None
    return m.group(1) + ("=" if m.group(2) is not None else "")


def help_section(text, header):
    """Entry lines under the header lines that end in `header` ('options:' matches
    'Options:' and 'Batch options:'): the lines indented by exactly two spaces, up to the
    next line that is not indented."""
    lines, inside, seen = [], False, False
    for line in text.splitlines():
        if line and not line.startswith(" "):
            inside = line.strip().lower().endswith(header.lower())
            seen = seen or inside
            continue
        if inside and line.startswith("  ") and not line.startswith("   "):
            lines.append(line[2:])
    if not seen:
        sys.exit(f"man_check: no '{header}' section in the --help output")
    return lines


def help_options(text):
    found = set()
    for entry in help_section(text, "options:"):
        # "dir_ttl=SECONDS    how long ..." or "ro, allow_other, uid=N, and FUSE options"
        head = re.split(r"\s{2,}", entry.strip(), maxsplit=1)[0]
        for piece in head.split(","):
            key = option_key(piece)
            if key:
                found.add(key)
    return found - NOT_COMPARED


def help_verbs(text):
    found = set()
    for entry in help_section(text, "verbs:"):
        word = entry.split()[0] if entry.split() else ""
        if word and not word.startswith("-"):
            found.add(word)
    return found


def roff_text(line):
    """The text of one roff line: font macros joined, escapes and font changes removed."""
    line = line.rstrip("\n")
    if line.startswith("."):
        parts = line.split(None, 1)
        args = parts[1] if len(parts) > 1 else ""
        # .B/.BI/.BR/...: arguments are words, quotes group them; alternating fonts join.
        words = re.findall(r'"([^"]*)"|(\S+)', args)
        line = "".join(a or b for a, b in words)
    line = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", line)
    line = line.replace("\\-", "-").replace("\\(aq", "'").replace("\\~", " ")
    line = line.replace("\\&", "").replace("\\e", "\\")
    return line


def man_tags(path, section):
    """The tag lines of the .TP entries in one .SH section (its .SS subsections too)."""
    tags, current, want_tag = [], None, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith('.\\"') or line.startswith("'\\\""):
                continue
            if line.startswith(".SH"):
                current = line[3:].strip().strip('"').upper()
                want_tag = False
                continue
            if current != section:
                continue
            if re.match(r"^\.TP\b", line):
                want_tag = True
                continue
            if want_tag:
                tags.append(roff_text(line))
                want_tag = False
    return tags


def man_options(path):
    found = set()
    for tag in man_tags(path, "OPTIONS"):
        for piece in tag.split(","):
            key = option_key(piece.split()[0] if piece.split() else "")
            if key:
                found.add(key)
    return found - NOT_COMPARED


def man_verbs(path):
    return {t.split()[0] for t in man_tags(path, "COMMANDS") if t.split()}


def table_options(paths):
    """Options of the fuse_opt table fs_opt_table, wherever among paths it is defined."""
    for path in paths:
        src = open(path, encoding="utf-8").read()
        m = re.search(r"fs_opt_table\[\]\s*=\s*\{(.*?)FUSE_OPT_END", src, re.S)
        if m:
            break
    else:
        sys.exit(f"man_check: no fs_opt_table in {' '.join(paths)}")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    found = set()
    # OPT("name=%s", field), FUSE_OPT_KEY("name", KEY_X), any MACRO("name", ...) or {"name", ...}
    entry_re = r'(?:\b[A-Z_]+\s*\(|\{)\s*"([^"]+)"\s*(?:,\s*(\w+))?'
    for entry in re.finditer(entry_re, body):
        templ, key = entry.group(1), entry.group(2)
        if key in TABLE_KEYS_SKIPPED:
            continue
        found.add(templ.split("=", 1)[0] + ("=" if "=" in templ else ""))
    return found - NOT_COMPARED


def readme_options(path):
    """Options of README's option tables (header row '| option | ...'): the backticked
    names of each row's first column, leaving out parenthesised remarks."""
    found, inside = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("|"):
                inside = False
            elif cells[0] == "option":
                inside = True
            elif inside and not re.fullmatch(r"-+", cells[0].replace(":", "")):
                first = re.sub(r"\([^)]*\)", "", cells[0])
                for tok in re.findall(r"`([^`]+)`", first):
                    key = option_key(tok)
                    if key:
                        found.add(key)
    return found - NOT_COMPARED


def compare(what, sides):
    """sides: list of (label, set). Prints one line per item some side lacks."""
    problems = 0
    every = set().union(*(s for _, s in sides))
    for item in sorted(every):
        have = [label for label, s in sides if item in s]
        lack = [label for label, s in sides if item not in s]
        if lack:
            problems += 1
            print(f"MISMATCH: {what} '{item}' is in {' and '.join(have)} "
                  f"but missing from {' and '.join(lack)}")
    return problems


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("options", "verbs"):
        sys.exit(__doc__)
    mode, help_file, man = sys.argv[1], sys.argv[2], sys.argv[3]
    text = open(help_file, encoding="utf-8").read()
    if mode == "options":
        if len(sys.argv) < 6:
            sys.exit(__doc__)
        sides = [("mount.imagesfs --help", help_options(text)),
                 (f"{man} (OPTIONS)", man_options(man)),
                 (f"the option table of {sys.argv[4]}", readme_options(sys.argv[4])),
                 ("the option table fs_opt_table", table_options(sys.argv[5:]))]
        what = "option"
    else:
        sides = [("imagesfs --help", help_verbs(text)), (f"{man} (COMMANDS)", man_verbs(man))]
        what = "verb"
    for label, s in sides:
        print(f"{label}: {' '.join(sorted(s)) or '(none)'}")
    sys.exit(1 if compare(what, sides) else 0)


if __name__ == "__main__":
    main()
