"""Builds every tallyio/_core/*.pyx as its own extension.

-O3 and no -march=native: the wheel must run on any x86-64 (or aarch64) machine; faster
instruction sets are chosen at run time by the kernels that have them.

Environment:
  TALLYIO_DEBUG=1     line tracing, C asserts and -O0 -g
  TALLYIO_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer (run with LD_PRELOAD=libasan)
  TALLYIO_MODULES=a,b build only these modules (e.g. ring,hist) to iterate quickly
"""
import os
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("TALLYIO_DEBUG") == "1"
SANITIZE = os.environ.get("TALLYIO_SANITIZE") == "1"
ONLY = {m for m in os.environ.get("TALLYIO_MODULES", "").split(",") if m}

cflags = ["-std=gnu11", "-Wno-unused-function"]
cflags += ["-O0", "-g"] if DEBUG else ["-O3"]
ldflags = []
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
directives = {"language_level": 3}
if DEBUG:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))
    directives.update(linetrace=True, boundscheck=True, wraparound=True)
if SANITIZE:
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    ldflags += ["-fsanitize=address,undefined"]

extensions = []
for pyx in sorted(glob("tallyio/_core/*.pyx")):
    name = os.path.splitext(os.path.basename(pyx))[0]
    if ONLY and name not in ONLY:
        continue
    extensions.append(
        Extension(
            f"tallyio._core.{name}",
            [pyx],
            include_dirs=[numpy.get_include(), "tallyio/_core/include"],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    )

setup(ext_modules=cythonize(extensions, compiler_directives=directives, nthreads=0))
