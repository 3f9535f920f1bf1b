#!/usr/bin/env python3
"""Writes a small valid PNG (a colour gradient) without third-party modules.

usage: mkpng.py OUT WIDTH HEIGHT SEED
The seed picks the colours, so different seeds give different bytes.
"""
import struct
import sys
import zlib


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(width, height, seed):
    r0, g0, b0 = (seed * 67) % 256, (seed * 131) % 256, (seed * 199) % 256
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes(((r0 + x * 3) % 256, (g0 + y * 3) % 256, (b0 + x + y) % 256))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b""))


def main():
    out, width, height, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with open(out, "wb") as f:
        f.write(png(width, height, seed))


if __name__ == "__main__":
    main()
