#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpora of tests/fuzz (corpus/<target>/).

The seeds are committed; run this again only to change them (it rewrites the three
folders). Each seed is small and names what it exercises. Python 3, no modules needed.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds:
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


# ------------------------------------------------------------------ submit JSON -------

def nest(depth, inner, o="[", c="]"):
    return o * depth + inner + c * depth


def nest_obj(depth, inner):
    return '{"a":' * depth + inner + "}" * depth


submit = [
    ("valid_minimal.json", '{"model":"echo","input":{"a":1}}'),
    ("valid_all_fields.json",
     '{"model":"echo","input":{"text":"hi","n":[1,2.5,null,true]},"priority":"high",'
     '"timeout_s":30,"ttl_s":3600,"metadata":{"user":"u1","tags":["a","b"]},'
     '"webhook":"https://example.com/hook","webhook_events":["running","progress","completed"]}'),
    ("valid_input_null.json", '{"model":"sleep","input":null}'),
    ("valid_input_scalar.json", '{"input":"just a string","model":"m_1-2"}'),
    ("valid_input_array.json", '{"model":"echo","input":[[],{},"",0,-0,0.0,1e-300]}'),
    ("valid_priority_low.json", '{"model":"echo","input":1,"priority":"low"}'),
    ("valid_unicode.json", '{"model":"echo","input":"h\\u00e9llo \\u2603 \\ud83d\\ude00 \xc3\xa9"}'),
    ("valid_whitespace.json", ' \t\r\n{ "model" : "echo" ,\n "input" : { } }\n '),
    ("priority_bad.json", '{"model":"echo","input":1,"priority":"urgent"}'),
    ("unknown_field.json", '{"model":"echo","input":1,"colour":"red"}'),
    ("missing_model.json", '{"input":{"a":1}}'),
    ("missing_input.json", '{"model":"echo"}'),
    ("model_not_string.json", '{"model":42,"input":1}'),
    ("model_bad_chars.json", '{"model":"Echo/../x","input":1}'),
    ("model_too_long.json", '{"model":"%s","input":1}' % ("m" * 65)),
    ("model_empty.json", '{"model":"","input":1}'),
    ("timeout_negative.json", '{"model":"echo","input":1,"timeout_s":-1}'),
    ("timeout_huge.json", '{"model":"echo","input":1,"timeout_s":9223372036854775807}'),
    ("timeout_float.json", '{"model":"echo","input":1,"timeout_s":1.5}'),
    ("ttl_below_min.json", '{"model":"echo","input":1,"ttl_s":59}'),
    ("metadata_not_object.json", '{"model":"echo","input":1,"metadata":[1]}'),
    ("metadata_too_big.json",
     '{"model":"echo","input":1,"metadata":{"k":"%s"}}' % ("x" * 4100)),
    ("webhook_not_string.json", '{"model":"echo","input":1,"webhook":{}}'),
    ("webhook_events_alone.json", '{"model":"echo","input":1,"webhook_events":["completed"]}'),
    ("webhook_events_bad.json",
     '{"model":"echo","input":1,"webhook":"http://a/","webhook_events":["done",7]}'),
    ("webhook_events_empty.json",
     '{"model":"echo","input":1,"webhook":"http://a/","webhook_events":[]}'),
    ("duplicate_keys.json", '{"model":"echo","model":"sleep","input":1}'),
    ("duplicate_nested_keys.json", '{"model":"echo","input":{"a":1,"a":2}}'),
    # nesting: 32 containers are the codec's limit; 33 empty ones at the bottom must be
    # refused too (msgpack-c cannot read them back)
    ("nest_32.json", '{"model":"echo","input":%s}' % nest(32, "1")),
    ("nest_33.json", '{"model":"echo","input":%s}' % nest(33, "1")),
    ("nest_33_empty.json", '{"model":"echo","input":%s}' % nest(33, "")),
    ("nest_obj_32.json", '{"model":"echo","input":%s}' % nest_obj(31, "{}")),
    ("nest_2000.json", '{"model":"echo","input":%s}' % nest(2000, "")),
    ("nest_10000_open.json", '{"model":"echo","input":' + "[" * 10000),
    ("number_overflow_real.json", '{"model":"echo","input":1e999999}'),
    ("number_overflow_int.json", '{"model":"echo","input":123456789012345678901234567890}'),
    ("number_int64_edges.json",
     '{"model":"echo","input":[9223372036854775807,-9223372036854775808,9223372036854775808]}'),
    ("number_reals.json", '{"model":"echo","input":[1e308,-1e308,4.9e-324,1e-400,-0.0,0.1]}'),
    ("number_bad_syntax.json", '{"model":"echo","input":[01,1.,.5,+1,0x10,NaN,Infinity]}'),
    ("string_nul_escape.json", '{"model":"echo","input":"a\\u0000b"}'),
    ("string_lone_surrogate.json", '{"model":"echo","input":"\\ud800"}'),
    ("string_bad_utf8.json", b'{"model":"echo","input":"\xff\xfe\xc0\xaf\xed\xa0\x80"}'),
    ("key_bad_utf8.json", b'{"model":"echo","input":{"\xc3\x28":1}}'),
    ("raw_nul_byte.json", b'{"model":"echo",\x00"input":1}'),
    # jansson skips a NUL that follows a number or a literal: these are not JSON
    ("nul_after_number.json", b'{"model":"echo","input":{"a":1\x00}}'),
    ("nul_after_literal.json", b'{"model":"echo","input":true\x00}'),
    ("truncated.json", '{"model":"echo","input":{"a":[1,2,'),
    ("truncated_string.json", '{"model":"echo","input":"abc'),
    ("trailing_garbage.json", '{"model":"echo","input":1} {"x":1}'),
    ("bom.json", b'\xef\xbb\xbf{"model":"echo","input":1}'),
    ("empty.json", ""),
    ("whitespace_only.json", " \n\t "),
    ("top_array.json", '[{"model":"echo","input":1}]'),
    ("top_string.json", '"model"'),
    ("top_number.json", "42"),
    ("control_chars.json", '{"model":"echo","input":"a\tb\nc"}'),
]

# ------------------------------------------------------------------ msgpack -----------

def mp(v):
    """A small msgpack encoder: None, bool, int, float, str, bytes, list, dict."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v <= 0xFF:
            return b"\xcc" + struct.pack(">B", v)
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if 0 <= v:
            return b"\xcf" + struct.pack(">Q", v)
        if v >= -0x80:
            return b"\xd0" + struct.pack(">b", v)
        if v >= -0x8000:
            return b"\xd1" + struct.pack(">h", v)
        if v >= -0x80000000:
            return b"\xd2" + struct.pack(">i", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        return mp_str(v.encode())
    if isinstance(v, bytes):
        return mp_bin(v)
    if isinstance(v, list):
        return mp_array_hdr(len(v)) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return mp_map_hdr(len(v)) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def mp_str(b):
    n = len(b)
    if n <= 31:
        return bytes([0xA0 | n]) + b
    if n <= 0xFF:
        return b"\xd9" + struct.pack(">B", n) + b
    if n <= 0xFFFF:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def mp_bin(b):
    n = len(b)
    if n <= 0xFF:
        return b"\xc4" + struct.pack(">B", n) + b
    if n <= 0xFFFF:
        return b"\xc5" + struct.pack(">H", n) + b
    return b"\xc6" + struct.pack(">I", n) + b


def mp_array_hdr(n):
    if n <= 15:
        return bytes([0x90 | n])
    if n <= 0xFFFF:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def mp_map_hdr(n):
    if n <= 15:
        return bytes([0x80 | n])
    if n <= 0xFFFF:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


job_input = {"text": "hello", "n": [1, 2, 3], "opts": {"temperature": 0.5, "stream": False}}
msgpack = [
    ("job_input.mp", mp(job_input)),
    ("result_with_bin.mp", mp({"output": b"\x00\x01\xff" * 10, "ok": True})),
    ("scalars.mp", mp([None, True, False, 0, 127, -1, -32, 255, 65535, 2**32 - 1, 2**63 - 1,
                       -33, -129, -32769, -2**31 - 1, -2**63, 1.5, -0.0])),
    ("uint64_over_int64.mp", mp(2**64 - 1)),
    ("float32.mp", b"\xca" + struct.pack(">f", 3.25)),
    ("float32_nan.mp", b"\xca\x7f\xc0\x00\x00"),
    ("float64_inf.mp", b"\xcb" + struct.pack(">d", float("inf"))),
    ("float64_nan.mp", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"),
    ("str_forms.mp", mp_array_hdr(4) + mp_str(b"fix") + b"\xd9\x03abc" + b"\xda\x00\x03abc"
     + b"\xdb\x00\x00\x00\x03abc"),
    ("str_bad_utf8.mp", mp_str(b"\xff\xfe\xc0\xaf")),
    ("str_with_nul.mp", mp_str(b"a\x00b")),
    ("bin_forms.mp", mp_array_hdr(3) + b"\xc4\x02ab" + b"\xc5\x00\x02ab" + b"\xc6\x00\x00\x00\x02ab"),
    ("array16_map16.mp", b"\xdc\x00\x02\x01\x02" + b"\xde\x00\x01" + mp("k") + mp(1)),
    ("array32_map32.mp", b"\xdd\x00\x00\x00\x01\x01" + b"\xdf\x00\x00\x00\x01" + mp("k") + mp(1)),
    ("empty_containers.mp", mp([[], {}, "", b""])),
    ("map_int_key.mp", mp_map_hdr(1) + mp(1) + mp(2)),
    ("map_bin_key.mp", mp_map_hdr(1) + mp_bin(b"k") + mp(2)),
    ("map_key_nul.mp", mp_map_hdr(1) + mp_str(b"a\x00b") + mp(2)),
    ("map_key_bad_utf8.mp", mp_map_hdr(1) + mp_str(b"\xc3\x28") + mp(2)),
    ("map_dup_keys.mp", mp_map_hdr(2) + mp("a") + mp(1) + mp("a") + mp(2)),
    ("ext_fixext.mp", mp_array_hdr(5) + b"\xd4\x01\x00" + b"\xd5\x01" + b"\x00" * 2
     + b"\xd6\x01" + b"\x00" * 4 + b"\xd7\xff" + b"\x00" * 8 + b"\xd8\x01" + b"\x00" * 16),
    ("ext8.mp", b"\xc7\x03\x05abc"),
    ("ext16_ext32.mp", mp_array_hdr(2) + b"\xc8\x00\x01\x05a" + b"\xc9\x00\x00\x00\x01\x05a"),
    # FLEET_EXT_F32 (ext type 1): little-endian float32 arrays, as the embed model stores them
    ("ext_f32_result.mp", mp_map_hdr(4) + mp("model") + mp("embed") + mp("dim") + mp(3)
     + mp("embeddings") + mp_array_hdr(2)
     + b"\xc7\x0c\x01" + struct.pack("<3f", 0.25, -1.5, 0.1)
     + b"\xc7\x0c\x01" + struct.pack("<3f", 1.0, 0.0, -0.0)
     + mp("tokens") + mp(9)),
    ("ext_f32_forms.mp", mp_array_hdr(6) + b"\xd6\x01" + struct.pack("<f", 2.5)
     + b"\xd7\x01" + struct.pack("<2f", 1, 2) + b"\xd8\x01" + struct.pack("<4f", 1, 2, 3, 4)
     + b"\xc8\x00\x04\x01" + struct.pack("<f", 3) + b"\xc9\x00\x00\x00\x00\x01"
     + b"\xc7\x00\x01"),
    ("ext_f32_bad_length.mp", b"\xc7\x06\x01" + b"\x00" * 6),
    ("ext_f32_nan.mp", b"\xd6\x01\x00\x00\xc0\x7f"),
    ("ext_f32_nest_32.mp", mp_array_hdr(1) * 31 + b"\xd6\x01" + struct.pack("<f", 1)),
    ("ext_f32_nest_33.mp", mp_array_hdr(1) * 32 + b"\xd6\x01" + struct.pack("<f", 1)),
    ("reserved_c1.mp", b"\xc1"),
    ("nest_32.mp", mp_array_hdr(1) * 32 + mp(1)),
    ("nest_33.mp", mp_array_hdr(1) * 33 + mp(1)),
    ("nest_33_empty.mp", mp_array_hdr(1) * 32 + mp_array_hdr(0)),
    ("nest_map_32.mp", (mp_map_hdr(1) + mp("a")) * 32 + mp(None)),
    ("nest_1000_truncated.mp", mp_array_hdr(1) * 1000),
    ("claims_array32_max.mp", b"\xdd\xff\xff\xff\xff"),
    ("claims_map32_max.mp", b"\xdf\xff\xff\xff\xff"),
    ("claims_str32_4gb.mp", b"\xdb\xff\xff\xff\xff" + b"abc"),
    ("claims_bin32_4gb.mp", b"\xc6\xff\xff\xff\xff"),
    ("claims_ext32_4gb.mp", b"\xc9\xff\xff\xff\xff\x01"),
    ("truncated_float64.mp", b"\xcb\x3f\xf0"),
    ("truncated_map.mp", mp_map_hdr(2) + mp("a") + mp(1) + mp("b")),
    ("truncated_str_header.mp", b"\xda\x00"),
    ("trailing_bytes.mp", mp(job_input) + b"\x01\x02"),
    ("two_values.mp", mp(1) + mp(2)),
    ("empty.mp", b""),
]

# ------------------------------------------------------------------ multipart ---------

CT = "multipart/form-data; boundary=XyZ"


def form(parts, boundary="XyZ", closing=True, pre="", epi=""):
    out = pre
    for headers, data in parts:
        out += "--%s\r\n%s\r\n%s\r\n" % (boundary, "".join(h + "\r\n" for h in headers), data)
    if closing:
        out += "--%s--\r\n" % boundary
    return out + epi


def fd(name, extra=""):
    return 'Content-Disposition: form-data; name="%s"%s' % (name, extra)


multipart = [
    ("input_only", CT + "\n" + form([([fd("input")], '{"a":1}')])),
    ("input_and_file", CT + "\n" + form([
        ([fd("input"), "Content-Type: application/json"], '{"prompt":"describe"}'),
        ([fd("files", '; filename="a.pdf"'), "Content-Type: application/pdf"], "%PDF-1.4\r\n\x00\x01\xff"),
    ])),
    ("two_files", CT + "\n" + form([
        ([fd("files", '; filename="a.txt"')], "one"),
        ([fd("files", '; filename="b.bin"'), "Content-Type: application/octet-stream"], "\r\n--Xy\r\n"),
    ])),
    ("fields", CT + "\n" + form([([fd("model")], "echo"), ([fd("priority")], "high"),
                                ([fd("ttl_s")], "3600")])),
    ("quoted_boundary", 'multipart/form-data; boundary="a b:c"\n'
     + form([([fd("input")], "{}")], boundary="a b:c")),
    ("boundary_70", "multipart/form-data; boundary=" + "b" * 70 + "\n"
     + form([([fd("input")], "{}")], boundary="b" * 70)),
    ("boundary_71", "multipart/form-data; boundary=" + "b" * 71 + "\n"
     + form([([fd("input")], "{}")], boundary="b" * 71)),
    ("boundary_missing", "multipart/form-data\n" + form([([fd("input")], "{}")])),
    ("boundary_empty", "multipart/form-data; boundary=\n--\r\n"),
    ("boundary_bad_char", "multipart/form-data; boundary=a@b\n" + form([([fd("x")], "1")], boundary="a@b")),
    ("params_many", 'multipart/form-data; charset=utf-8; boundary=XyZ; x="y;z"\n'
     + form([([fd("input")], "{}")])),
    ("param_unclosed_quote", 'multipart/form-data; boundary="XyZ\n' + form([([fd("input")], "{}")])),
    ("preamble_epilogue", CT + "\n" + form([([fd("input")], "{}")], pre="ignored\r\n",
                                          epi="trailing words\r\n")),
    ("no_closing", CT + "\n" + form([([fd("input")], "{}")], closing=False)),
    ("cut_mid_part", CT + "\n--XyZ\r\n" + fd("files", '; filename="a"') + "\r\n\r\nabc"),
    ("lf_only", CT + "\n" + form([([fd("input")], "{}")]).replace("\r\n", "\n")),
    ("empty_data", CT + "\n" + form([([fd("input")], "")])),
    ("no_disposition", CT + "\n" + form([(["Content-Type: text/plain"], "x")])),
    ("not_form_data", CT + "\n" + form([(['Content-Disposition: attachment; name="x"'], "x")])),
    ("name_empty", CT + "\n" + form([([fd("")], "x")])),
    ("name_unquoted", CT + "\n" + form([(["Content-Disposition: form-data; name=input"], "{}")])),
    ("filename_star", CT + "\n" + form([([fd("files", "; filename*=UTF-8''%E2%82%AC%20rates.txt")], "x")])),
    ("filename_star_bad", CT + "\n" + form([([fd("files", "; filename*=latin1''%FF")], "x")])),
    ("filename_bad_utf8", (CT + "\n").encode() + form([([fd("files", '; filename="')], "x")]).encode()
     .replace(b'filename="', b'filename="\xff\xfe"', 1)),
    ("filename_empty", CT + "\n" + form([([fd("files", '; filename=""')], "x")])),
    ("folded_header", CT + "\n--XyZ\r\nContent-Disposition: form-data;\r\n name=\"input\"\r\n\r\n{}\r\n--XyZ--\r\n"),
    ("header_block_big", CT + "\n" + form([([fd("input"), "X-Pad: " + "p" * 8300], "{}")])),
    ("parts_101", CT + "\n" + form([([fd("f%d" % i)], "v") for i in range(101)])),
    ("boundary_in_data", CT + "\n" + form([([fd("files", '; filename="a"')], "--XyZ no CRLF before, --XyZ")])),
    ("boundary_then_garbage", CT + "\n--XyZgarbage\r\n" + fd("input") + "\r\n\r\n{}\r\n--XyZ--\r\n"),
    ("dashes_boundary", "multipart/form-data; boundary=--\n" + form([([fd("input")], "{}")], boundary="--")),
    ("nul_in_headers", (CT + "\n").encode() + b"--XyZ\r\nContent-Disposition: form-data; name=\"a\x00b\"\r\n\r\nx\r\n--XyZ--\r\n"),
    ("content_type_long", CT + "\n" + form([([fd("files", '; filename="a"'), "Content-Type: " + "t" * 300], "x")])),
    ("not_multipart", "application/json\n{}"),
    ("empty_body", CT + "\n"),
]

if __name__ == "__main__":
    write("fuzz_submit_json", submit)
    write("fuzz_msgpack", msgpack)
    write("fuzz_multipart", multipart)
    for t, s in (("fuzz_submit_json", submit), ("fuzz_msgpack", msgpack), ("fuzz_multipart", multipart)):
        print("%s: %d seeds" % (t, len(s)))
