#!/usr/bin/python3
"""make_png_corpus.py: writes the seeds of fuzz_png (corpus/fuzz_png/).

The seeds are committed; run this again only to change them (it rewrites the folder):

    /usr/bin/python3 tests/fuzz/make_png_corpus.py

Every colour type and bit depth the PNG specification allows, each plain and interlaced
(Adam7), at 28x28 (the classify model's size) and at a few sizes that leave Adam7 passes
empty; rows cycle through the five filter types. Then what the decoder handles
specially: a palette with tRNS, gray and RGB tRNS keys, ancillary chunks, the zlib stream
split over several IDATs, a larger image that is scaled down, a small bomb (a zlib stream
that goes on after the last row) and 784 raw bytes. Only Python's zlib and struct.
"""
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "fuzz_png")

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
TYPES = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4),
         (3, 8), (4, 8), (4, 16), (6, 8), (6, 16)]


def chunk(kind, data=b""):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def pack(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", v) for v in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, nbits = bytearray(), 0, 0
    for v in samples:
        acc = (acc << depth) | v
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def filtered(rows, bpp):
    """rows: packed rows of one pass; row r gets filter r % 5."""
    out, prev = bytearray(), bytes(len(rows[0])) if rows else b""
    for r, cur in enumerate(rows):
        ft = r % 5
        out.append(ft)
        for i, x in enumerate(cur):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            out.append((x - pred) & 0xff)
        prev = cur
    return bytes(out)


def pixel(ct, depth, x, y, ncolours):
    """Samples of pixel (x, y): a pattern that compresses a little, varied per channel."""
    top = (1 << depth) - 1
    if ct == 3:
        return [(x * 3 + y * 5) % ncolours]
    return [((x * (7 + 13 * c) + y * (11 + 3 * c)) * (top // 31 + 1)) % (top + 1)
            for c in range(CHANNELS[ct])]


def raw_image(w, h, ct, depth, interlace, ncolours):
    bits = CHANNELS[ct] * depth
    bpp = max(1, bits // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    out = bytearray()
    for x0, y0, dx, dy in passes:
        xs = range(x0, w, dx)
        rows = []
        for y in range(y0, h, dy):
            if not xs:
                break
            rows.append(pack([s for x in xs for s in pixel(ct, depth, x, y, ncolours)], depth))
        if rows:
            out += filtered(rows, bpp)
    return bytes(out)


def png(w, h, ct, depth, interlace=0, extra_before=b"", extra_after=b"", split=1, raw=None,
        trns=None):
    ncolours = min(1 << depth, 200) if ct == 3 else 0
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, interlace))
    if ct == 3:
        out += chunk(b"PLTE", bytes((i * 37 + k * 91) % 256 for i in range(ncolours)
                                    for k in range(3)))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += extra_before
    z = zlib.compress(raw if raw is not None else
                      raw_image(w, h, ct, depth, interlace, ncolours), 9)
    step = (len(z) + split - 1) // split
    for i in range(0, len(z), step):
        out += chunk(b"IDAT", z[i:i + step])
    out += extra_after
    out += chunk(b"IEND")
    return out


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    seeds = {}
    for ct, depth in TYPES:
        for il in (0, 1):
            seeds[f"ct{ct}_d{depth}_{'adam7' if il else 'plain'}_28x28.png"] = \
                png(28, 28, ct, depth, il)
    for w, h in [(1, 1), (3, 5), (9, 2)]:
        seeds[f"ct2_d8_adam7_{w}x{h}.png"] = png(w, h, 2, 8, 1)
        seeds[f"ct0_d1_adam7_{w}x{h}.png"] = png(w, h, 0, 1, 1)
    seeds["ct3_d4_trns_palette.png"] = png(28, 28, 3, 4, trns=bytes([0, 128, 255, 7, 90]))
    seeds["ct0_d8_trns_key.png"] = png(28, 28, 0, 8, trns=struct.pack(">H", 9))
    seeds["ct2_d16_trns_key.png"] = png(28, 28, 2, 16, trns=struct.pack(">HHH", 0, 0, 0))
    seeds["ancillary_chunks.png"] = png(
        28, 28, 6, 8, extra_before=chunk(b"gAMA", struct.pack(">I", 45455)) +
        chunk(b"tEXt", b"Comment\0seed"), extra_after=chunk(b"tIME", bytes(7)))
    seeds["idat_split_7.png"] = png(28, 28, 4, 8, 1, split=7)
    seeds["scaled_56x40.png"] = png(56, 40, 0, 8)
    raw = raw_image(28, 28, 0, 8, 0, 0)
    seeds["bomb_after_last_row.png"] = png(28, 28, 0, 8, raw=raw + bytes(200000))
    seeds["raw_784.bin"] = bytes((i * 7) % 256 for i in range(784))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"make_png_corpus: {len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
