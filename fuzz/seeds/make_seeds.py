#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/seeds/<target>/seed-*), a few dozen small files per
target, taken from the test suites' own examples:

- http1_head: crates/gatehouse/tests/security_smuggling.rs (framing and syntax attacks) and
  crates/core/tests/hostile_input.rs;
- chunked: the chunk-line cases of security_smuggling.rs;
- normalize_path: the probes of crates/gatehouse/tests/security_paths.rs;
- h2_headers: the malformed-message cases of crates/gatehouse/tests/security_h2.rs;
- jwt: crates/gatehouse/tests/fixtures/jwt (tokens.json, the JWK sets);
- config_yaml: examples/*.yaml and a few broken documents.

Re-run after changing it (it rewrites every seed-* file): python3 fuzz/seeds/make_seeds.py
"""

import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "crates", "gatehouse", "tests", "fixtures", "jwt")


def write(target, seeds):
    d = os.path.join(HERE, target)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    for name, data in seeds:
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


# ---- http1_head -------------------------------------------------------------------------------
post = b"POST /upload HTTP/1.1\r\nHost: gw.test\r\n"
te = {
    "te-xchunked": b"Transfer-Encoding: xchunked\r\n",
    "te-quoted": b'Transfer-Encoding: "chunked"\r\n',
    "te-chunked-identity": b"Transfer-Encoding: chunked, identity\r\n",
    "te-gzip-chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "te-two-lines": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    "te-space-before-colon": b"Transfer-Encoding : chunked\r\n",
    "te-obs-fold": b"Transfer-Encoding:\r\n chunked\r\n",
    "te-vertical-tab": b"Transfer-Encoding: chunked\x0b\r\n",
    "te-nbsp-after-name": b"Transfer-Encoding\xa0: chunked\r\n",
    "te-and-cl": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "cl-twice": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "cl-plus": b"Content-Length: +5\r\n",
    "cl-list": b"Content-Length: 5, 5\r\n",
}
http1 = [(k, post + v + b"\r\n5\r\nhello\r\n0\r\n\r\n") for k, v in te.items()]
http1 += [
    ("get", b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n"),
    ("post-length", b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
    ("post-chunked", b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"),
    ("absolute-form", b"GET http://other.example/x/../y HTTP/1.1\r\nHost: h\r\nConnection: close, x-a\r\n\r\n"),
    ("http10", b"GET /%2e%2e/%61dmin//x/./y HTTP/1.0\r\n\r\n"),
    ("http10-te", b"POST /upload HTTP/1.0\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("expect", b"POST / HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx"),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\rContent-Length: 40\r\n\r\n"),
    ("nul-in-value", b"GET / HTTP/1.1\r\nHost: gw.test\r\nX-A: a\0b\r\n\r\n"),
    ("empty-name", b"GET / HTTP/1.1\r\n: empty\r\nHost: gw.test\r\n\r\n"),
    ("bare-lf", b"POST /a HTTP/1.1\nHost: gw.test\nX-A: 1\nContent-Length: 5\nConnection: close\n\nhello"),
    ("cl-whitespace", b"POST /a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: \t005 \r\nConnection: close\r\n\r\nhello"),
    ("host-comma", b"GET / HTTP/1.1\r\nHost: gw,evil\r\n\r\n"),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
    ("resp-length", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
    ("resp-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("resp-204", b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n"),
    ("resp-until-close", b"HTTP/1.1 200 OK\r\nX-Empty:\r\n\r\nbody"),
]
write("http1_head", http1)

# ---- chunked: [kind=chunked][3 reads][shares 40 80 160] body ----------------------------------
def chunked(body, kind=0, shares=(40, 80, 160)):
    return bytes([kind, len(shares) - 1]) + bytes(shares) + body


chunk_cases = {
    "ok": b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT",
    "ok-quoted-ext": b'5;ext="x"\r\nhello\r\n0;last\r\nX-Trailer: t\r\nContent-Length: 99\r\n\r\n',
    "size-0x5": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size-plus": b"+5\r\nhello\r\n0\r\n\r\n",
    "size-minus-0": b"-0\r\n\r\n",
    "leading-space": b" 5\r\nhello\r\n0\r\n\r\n",
    "trailing-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "underscore": b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    "17-digits": b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "huge": b"ffffffffffffffff\r\nzzzz",
    "spill": b"3\r\nhelloGET /smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n0\r\n\r\n",
    "cr-in-ext": b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "bare-lf-size": b"5\nhello\r\n0\r\n\r\n",
    "bare-lf-trailers": b"5\r\nhello\r\n0\r\n\n",
    "trailer-no-colon": b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    "trailer-obs-fold": b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n",
    "two-chunks": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
}
chunk_seeds = [(k, chunked(v)) for k, v in chunk_cases.items()]
chunk_seeds.append(("length-5", bytes([210, 1, 0, 5, 100, 100]) + b"helloGET"))
chunk_seeds.append(("until-close", bytes([250, 2, 1, 1, 1]) + b"everything until close"))
write("chunked", chunk_seeds)

# ---- normalize_path ---------------------------------------------------------------------------
paths = [
    "/admin", "//admin", "///admin//users", "/./admin", "/x/../admin", "/x/y/../../admin", "/../../admin",
    "/%61%64%6D%69%6e", "/%2e%2e/admin", "/.%2e/admin", "/admin/.", "/admin;jsessionid=1/x",
    "/admin?next=/../x&y=%2F", "/admin/..", "/admin%2f", "/x/..%2fadmin", "/%5cadmin", "/x%c0%af..%c0%afadmin",
    "/admin%20", "/%41DMIN", "/admin%00", "/%zz", "/admin%", "/\\admin", "/admin#frag", "/public/..;/admin",
    "/.;/admin", "/%2e%2e;/admin", "/users/42/posts/7", "/files/a/../b/c", "/reports/v2/2024-05.csv",
    "/api/v1/x?q=%41", "/~user/", "/p;v=1/x", "/x%2Fy/z",
]
write("normalize_path", [(f"{i:02}", p) for i, p in enumerate(paths)])

# ---- h2_headers: [flags] then (len name len value)* -------------------------------------------
END_STREAM, PSEUDO, DATA, CONT, RAW, INDEX, SECOND = 1, 2, 4, 8, 16, 32, 64


def h2(flags, fields):
    out = bytes([flags])
    for n, v in fields:
        n, v = n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str) else v
        out += bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


def req(method="GET", path="/zz-malformed", authority="gatehouse.test"):
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]


h2_seeds = [
    ("get", h2(END_STREAM, req())),
    ("post-body", h2(DATA, req("POST", "/admin") + [("content-length", "5"), ("content-type", "text/plain")])),
    ("continuation", h2(END_STREAM | CONT, req() + [("x-a", "b" * 40)])),
    ("two-streams-indexed", h2(END_STREAM | INDEX | SECOND, req() + [("x-a", "1")])),
    ("connection", h2(END_STREAM, req() + [("connection", "close")])),
    ("te-gzip", h2(END_STREAM, req() + [("te", "gzip")])),
    ("upper-case-name", h2(END_STREAM, req() + [("X-Upper", "1")])),
    ("crlf-in-value", h2(END_STREAM, req() + [("x-a", "a\r\nx-smuggled: 1")])),
    ("nul-in-path", h2(END_STREAM, req(path="/zz\0"))),
    ("leading-space", h2(END_STREAM, req() + [("x-a", " value")])),
    ("cl-trailing-space", h2(DATA, req("POST") + [("content-length", "5 ")])),
    ("missing-path", h2(END_STREAM, req()[:3])),
    ("pseudo-after-regular", h2(END_STREAM, [("x-mark", "1")] + req())),
    ("host-differs", h2(END_STREAM, req() + [("host", "evil.test")])),
    ("authority-userinfo", h2(END_STREAM, req(authority="user@evil.test"))),
    ("no-authority-host", h2(END_STREAM, req()[:2] + [(":path", "/admin"), ("host", "gatehouse.test")])),
    ("plain-connect", h2(END_STREAM, [(":method", "CONNECT"), (":authority", "gatehouse.test:443")])),
    ("extended-connect", h2(0, req("CONNECT", "/ws") + [(":protocol", "websocket"), ("sec-websocket-version", "13")])),
    ("cookies", h2(END_STREAM, req() + [("cookie", "a=1"), ("cookie", "b=2")])),
    ("cors-preflight", h2(END_STREAM, req("OPTIONS", "/cors/x") + [("origin", "https://app.example"), ("access-control-request-method", "PUT")])),
    ("many-fields", h2(END_STREAM, req() + [(f"x-{i}", "v") for i in range(20)])),
    ("long-path", h2(END_STREAM, req(path="/" + "a" * 250))),
    ("raw-indexed", bytes([END_STREAM | RAW]) + bytes([0x82, 0x86, 0x84, 0x41, 0x0e]) + b"gatehouse.test"),
]
write("h2_headers", h2_seeds)

# ---- jwt --------------------------------------------------------------------------------------
with open(os.path.join(FIXTURES, "tokens.json")) as f:
    tokens = json.load(f)
jwt_seeds = [("token-" + k, "0" + v) for k, v in sorted(tokens.items())]
claims = '{"iss":"https://idp.test","aud":"gatehouse","sub":"fuzz","exp":4102444800}'
jwt_seeds += [
    ("signed-kid", 'S{"alg":"HS256","kid":"hs-1"}\n' + claims),
    ("signed-no-kid", 'S{"alg":"HS256"}\n' + claims),
    ("signed-alg-none", 'S{"alg":"none","kid":"hs-1"}\n' + claims),
    ("signed-crit", 'S{"alg":"HS256","crit":["exp"]}\n' + claims),
    ("confusion-rs256", 'C\x00{"alg":"HS256","kid":"rsa-1"}\n' + claims),
]
for name in ["jwks-a.json", "jwks-b.json"]:
    with open(os.path.join(FIXTURES, name)) as f:
        jwt_seeds.append(("jwks-" + name[5], "J" + f.read()))
write("jwt", jwt_seeds)

# ---- config_yaml ------------------------------------------------------------------------------
examples = os.path.join(ROOT, "examples")
yaml_seeds = []
for name in sorted(os.listdir(examples)):
    if name.endswith(".yaml"):
        with open(os.path.join(examples, name)) as f:
            yaml_seeds.append(("example-" + name[:-5], f.read()))
yaml_seeds += [
    ("empty", ""),
    ("not-a-map", "- a\n- b\n"),
    ("unknown-section", "listenrs: []\n"),
    ("bad-indent", "listeners:\n  - name: a\n   address: 1\n"),
    ("anchors", "x: &a [1, 2]\ny: *a\nlisteners:\n  - address: 127.0.0.1:0\n"),
    ("env", "listeners:\n  - address: ${ADDR}\n"),
]
write("config_yaml", yaml_seeds)
