"""Builds every tallyio/_core/*.pyx as its own extension.

-O3 and no -march=native: the wheel must run on any x86-64 (or aarch64) machine; faster
instruction sets are chosen at run time by the kernels that have them. Release builds carry no
debug info (-g0, stripped at link): the wheel ships what runs, not 8 MB of DWARF.

Environment:
  TALLYIO_DEBUG=1          line tracing, bounds checks, C asserts and -O0 -g
  TALLYIO_SANITIZE=1       AddressSanitizer + UndefinedBehaviorSanitizer (run with LD_PRELOAD=libasan)
  TALLYIO_MODULES=a,b      build only these modules (e.g. ring,hist) to iterate quickly
  TALLYIO_NO_EXTENSIONS=1  declare no extensions: the Makefile's editable install, so that
                           `make build` compiles each extension once, not twice

One build per change: the generated C goes to build/cython/<release|debug>/ (never next to the
.pyx, so a debug .c can reach neither a release build nor a wheel), and each compiled extension
records the flags it was built with in build/temp.*/tallyio-flags/; an extension whose recorded
flags differ from this build's (TALLYIO_DEBUG or TALLYIO_SANITIZE switched) is rebuilt, the others
only when one of their sources (.pyx, cimported .pxd, included header) is newer than they are.
"""
import filecmp
import json
import os
import shutil
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("TALLYIO_DEBUG") == "1"
SANITIZE = os.environ.get("TALLYIO_SANITIZE") == "1"
ONLY = {m for m in os.environ.get("TALLYIO_MODULES", "").split(",") if m}
NO_EXTENSIONS = os.environ.get("TALLYIO_NO_EXTENSIONS") == "1"

cflags = ["-std=gnu11", "-Wno-unused-function"]
# sysconfig's CFLAGS come first and usually hold -g and -DNDEBUG: ours, later, win
cflags += ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3", "-g0"]
ldflags = [] if DEBUG or SANITIZE else ["-s"]
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
directives = {"language_level": 3}
if DEBUG:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))
    directives.update(linetrace=True, boundscheck=True, wraparound=True)
if SANITIZE:
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    ldflags += ["-fsanitize=address,undefined"]

# What an extension was built with; a change forces its rebuild.
SIGNATURE = json.dumps({"cflags": cflags, "ldflags": ldflags, "macros": macros,
                        "directives": directives}, sort_keys=True)
CYTHON_DIR = os.path.join("build", "cython", "debug" if DEBUG else "release")


class BuildExt(build_ext):
    """Cythonizes at build time (an sdist or egg_info needs no Cython), in parallel, and rebuilds
    an extension whose recorded flags differ from this build's."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the extensions are independent: one compiler per core
            self.parallel = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)

    def _stamp(self, ext):
        return os.path.join(self.build_temp, "tallyio-flags", ext.name)

    def run(self):
        import numpy
        from Cython.Build import cythonize

        for ext in self.extensions:
            ext.include_dirs.insert(0, numpy.get_include())
        self._stale = set()
        for ext in self.extensions:
            try:
                with open(self._stamp(ext)) as f:
                    built_with = f.read()
            except OSError:
                built_with = None
            if self.force or built_with != SIGNATURE:
                self._stale.add(ext.name)
        # cythonize returns new Extension objects: keep ours (setuptools has annotated them)
        generated = {e.name: e for e in cythonize(
            self.extensions, compiler_directives=directives, build_dir=CYTHON_DIR,
            force=self.force, quiet=True, nthreads=self.parallel if self.parallel > 1 else 0)}
        for ext in self.extensions:
            ext.sources = generated[ext.name].sources
            ext.depends = sorted(set(ext.depends) | set(generated[ext.name].depends))
        super().run()

    def build_extension(self, ext):
        # build_ext skips an extension whose output is newer than its sources and depends;
        # removing the output of a stale one forces it (per extension: this runs in threads)
        if ext.name in self._stale:
            try:
                os.remove(self.get_ext_fullpath(ext.name))
            except FileNotFoundError:
                pass
        super().build_extension(ext)
        stamp = self._stamp(ext)
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w") as f:
            f.write(SIGNATURE)

    def copy_file(self, infile, outfile, *args, **kwargs):
        """The --inplace copy of a built extension into the source tree: skipped when the tree
        already has that build, else a new file renamed over the old one. A process that has the
        old extension loaded (a test session running `make run`) keeps it intact, where a copy
        into the same file would rewrite the pages it has mapped."""
        if os.path.exists(outfile) and filecmp.cmp(infile, outfile, shallow=False):
            return outfile, False
        tmp = f"{outfile}.{os.getpid()}.tmp"
        shutil.copy2(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, True


extensions = []
for pyx in sorted(glob("tallyio/_core/*.pyx")):
    name = os.path.splitext(os.path.basename(pyx))[0]
    if NO_EXTENSIONS or (ONLY and name not in ONLY):
        continue
    extensions.append(
        Extension(
            f"tallyio._core.{name}",
            [pyx],
            include_dirs=["tallyio/_core/include"],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    )

setup(
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExt},
    # the wheel ships the compiled modules with their .pyi/.pxd/headers, not their sources
    exclude_package_data={"tallyio._core": ["*.c", "*.pyx"]},
)
