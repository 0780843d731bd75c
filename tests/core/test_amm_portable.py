"""u256.h's portable fallbacks (no unsigned __int128, no GCC builtins, no divq), built with
TIO_U256_PORTABLE, against Python ints; and the same program with the builtins, for a pair that
agrees by construction. The extension only ever compiles the builtin paths on GCC and Clang, so
without this test the fallbacks would ship unexercised."""
from __future__ import annotations

import math
import random
import shlex
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tallyio import amm_reference as ref

INCLUDE = Path(__file__).resolve().parents[2] / "tallyio" / "_core" / "include"

# Reads one command per line (hex operands), answers one line (hex results).
HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "tallyio/amm.h"

static void big_parse(tio_big *r, const char *hex) {
    size_t n = strlen(hex);
    memset(r->w, 0, sizeof r->w);
    for (size_t i = 0; i < n; i++) {
        char c = hex[n - 1 - i];
        uint64_t d = c <= '9' ? (uint64_t)(c - '0') : (uint64_t)(c - 'a' + 10);
        r->w[i / 16] |= d << (4 * (i % 16));
    }
    r->n = tio_limbs_len(r->w, TIO_BIG_LIMBS);
}

static void big_print(const tio_big *a) {
    if (a->n == 0) { printf("0"); return; }
    printf("%llx", (unsigned long long)a->w[a->n - 1]);
    for (int i = a->n - 2; i >= 0; i--) printf("%016llx", (unsigned long long)a->w[i]);
}

static void u256_parse(tio_u256 *r, const char *hex) {
    tio_big b;
    big_parse(&b, hex);
    tio_big_to_u256(r, &b);
}

static void u256_print(const tio_u256 *a) {
    tio_big b;
    tio_big_from_u256(&b, a);
    big_print(&b);
}

int main(void) {
    char op[16], s1[400], s2[400], s3[400], s4[400];
    unsigned g, d;
    while (scanf("%15s", op) == 1) {
        if (!strcmp(op, "div") || !strcmp(op, "mul")) {
            tio_big a, b, q, r;
            scanf("%399s %399s", s1, s2);
            big_parse(&a, s1);
            big_parse(&b, s2);
            if (op[0] == 'd') {
                tio_big_divmod(&q, &r, &a, &b);
                big_print(&q); printf(" "); big_print(&r);
            } else {
                tio_big_mul(&q, &a, &b);
                big_print(&q);
            }
        } else if (!strcmp(op, "isqrt")) {
            tio_big a, r;
            scanf("%399s", s1);
            big_parse(&a, s1);
            tio_big_isqrt(&r, &a);
            big_print(&r);
        } else if (!strcmp(op, "u256")) { /* add sub mul divmod of two u256 */
            tio_u256 a, b, r, q, m;
            scanf("%399s %399s", s1, s2);
            u256_parse(&a, s1);
            u256_parse(&b, s2);
            int c = tio_u256_add(&r, &a, &b);
            u256_print(&r); printf(" %d ", c);
            c = tio_u256_sub(&r, &a, &b);
            u256_print(&r); printf(" %d ", c);
            c = tio_u256_mul(&r, &a, &b);
            u256_print(&r); printf(" %d ", c);
            tio_u256_divmod(&q, &m, &a, &b);
            u256_print(&q); printf(" "); u256_print(&m);
        } else if (!strcmp(op, "out")) {
            tio_u256 a, ri, ro, r;
            scanf("%399s %399s %399s %u %u", s1, s2, s3, &g, &d);
            u256_parse(&a, s1);
            u256_parse(&ri, s2);
            u256_parse(&ro, s3);
            tio_amm_get_amount_out(&r, &a, &ri, &ro, g, d);
            u256_print(&r);
        } else if (!strcmp(op, "cross")) {
            tio_u256 xa, ya, xb, yb, t;
            tio_amm_cross res;
            scanf("%399s %399s %399s %399s", s1, s2, s3, s4);
            u256_parse(&xa, s1);
            u256_parse(&ya, s2);
            u256_parse(&xb, s3);
            u256_parse(&yb, s4);
            tio_u256_from_u64(&t, 0);
            int rc = tio_amm_best_cross_pool(&res, &xa, &ya, &xb, &yb, &t, 1024, 997, 1000,
                                             997, 1000);
            printf("%d ", rc);
            if (rc == TIO_AMM_OK) { u256_print(&res.amount_in); printf(" %d", res.optimal); }
        } else if (!strcmp(op, "sandwich")) {
            tio_u256 v, m, x, y;
            tio_amm_sandwich res;
            scanf("%399s %399s %399s %399s", s1, s2, s3, s4);
            u256_parse(&v, s1);
            u256_parse(&m, s2);
            u256_parse(&x, s3);
            u256_parse(&y, s4);
            int rc = tio_amm_best_sandwich(&res, &v, &m, &x, &y, 997, 1000);
            printf("%d ", rc);
            if (rc == TIO_AMM_OK) {
                u256_print(&res.front_in);
                printf(" ");
                u256_print(&res.back_out);
            }
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
"""


def build(tmp_path: Path, portable: bool) -> Path:
    """The harness compiled with the C compiler Python was built with (the one that builds the
    extensions)."""
    src = tmp_path / "harness.c"
    src.write_text(HARNESS)
    exe = tmp_path / ("portable" if portable else "builtin")
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    flags = ["-std=gnu11", "-O2", "-Wall", "-Werror", f"-I{INCLUDE}"]
    if portable:
        flags.append("-DTIO_U256_PORTABLE")
    subprocess.run(cc + flags + [str(src), "-o", str(exe), "-lm"], check=True,
                   capture_output=True, text=True)
    return exe


def operands(rng: random.Random):
    """Operands of every width with dense and sparse top words."""
    def num(bits):
        kind = rng.randrange(4)
        if kind == 0:
            return rng.getrandbits(rng.randrange(1, bits + 1))
        if kind == 1:
            return (1 << rng.randrange(bits)) - rng.randrange(2)
        if kind == 2:
            k = rng.randrange(1, bits // 64 + 1)
            return ((1 << (64 * k)) - 1) ^ rng.getrandbits(32) << (64 * rng.randrange(k))
        return rng.getrandbits(bits)
    return num


def h(v: int) -> str:
    return format(v, "x")


@pytest.mark.parametrize("portable", [True, False], ids=["portable", "builtin"])
def test_u256_paths_against_python(tmp_path, portable):
    exe = build(tmp_path, portable)
    rng = random.Random(2024)
    num = operands(rng)
    cmds, want = [], []
    M = 1 << 256
    for _ in range(400):
        a, b = num(1280), num(640) or 1
        cmds.append(f"div {h(a)} {h(b)}")
        want.append(f"{h(a // b)} {h(a % b)}")
        a, b = num(640), num(640)
        cmds.append(f"mul {h(a)} {h(b)}")
        want.append(h(a * b))
        a = num(1280)
        cmds.append(f"isqrt {h(a)}")
        want.append(h(math.isqrt(a)))
        a, b = num(256), num(256) or 1
        cmds.append(f"u256 {h(a)} {h(b)}")
        want.append(f"{h((a + b) % M)} {int(a + b >= M)} {h((a - b) % M)} {int(b > a)} "
                    f"{h(a * b % M)} {int(a * b >= M)} {h(a // b)} {h(a % b)}")
        a, ri, ro = num(256) or 1, num(256) or 1, num(256) or 1
        d = rng.randrange(2, 1 << 32)
        g = rng.randrange(1, d)
        cmds.append(f"out {h(a)} {h(ri)} {h(ro)} {g} {d}")
        want.append(h(ref.get_amount_out(a, ri, ro, (g, d))))
    for _ in range(40):
        xa, ya = rng.randrange(1, 1 << 100), rng.randrange(1, 1 << 100)
        k = rng.randrange(1, 3000)
        xb, yb = max(1, xa * k // 1000), max(1, ya * k * rng.randrange(9700, 10300) // 10**7)
        cmds.append(f"cross {h(xa)} {h(ya)} {h(xb)} {h(yb)}")
        r = ref.best_cross_pool(xa, ya, xb, yb)
        want.append("1 " if r is None else f"0 {h(r.amount_in)} {int(r.optimal)}")
        x, y = rng.randrange(1, 1 << 100), rng.randrange(1, 1 << 100)
        v = rng.randrange(1, x)
        m = ref._out(v, x, y) * rng.randrange(0, 1001) // 1000
        cmds.append(f"sandwich {h(v)} {h(m)} {h(x)} {h(y)}")
        s = ref.best_sandwich(v, m, x, y)
        want.append("1 " if s is None else f"0 {h(s.front_in)} {h(s.back_out)}")
    out = subprocess.run([str(exe)], input="\n".join(cmds) + "\n", capture_output=True,
                         text=True, check=True, timeout=300).stdout.splitlines()
    assert len(out) == len(cmds)
    for cmd, got, exp in zip(cmds, out, want):
        assert got.strip() == exp.strip(), cmd
