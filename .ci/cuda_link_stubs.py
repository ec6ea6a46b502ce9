#!/usr/bin/env python3
"""Link-time stand-ins for the NVIDIA libraries a `--features cuda` build of
cml-rl links against, for CI machines that have neither a GPU nor a driver.

candle's CUDA backend links libcuda, libnvrtc, libcurand, libcublas and
libcublasLt dynamically (through cudarc) and libcudart (its own kernels).
The PyPI wheels that give CI its nvcc ship libcudart but no driver library,
and the others are hundreds of megabytes each; a build only needs their
symbols to link. This writes, into LIBDIR, one small shared library per
name, exporting every function cudarc declares for it, each returning an
error code (for the driver: CUDA_ERROR_NO_DEVICE, 100), so that a program
built against them starts, finds no GPU and says so. It also links
libcudart.so to the wheel's libcudart.so.13 in LIBDIR.

Usage: cuda_link_stubs.py LIBDIR CUDARC_SRC_DIR
Nothing built against these runs on a GPU: that needs the real libraries
(a CUDA toolkit and an NVIDIA driver).
"""
import os
import re
import subprocess
import sys
import tempfile

# cudarc module -> (library file, SONAME of the real library, error code).
LIBRARIES = {
    "driver": ("libcuda.so", "libcuda.so.1", 100),  # CUDA_ERROR_NO_DEVICE
    "nvrtc": ("libnvrtc.so", "libnvrtc.so.13", 7),  # NVRTC_ERROR_BUILTIN_OPERATION_FAILURE
    "curand": ("libcurand.so", "libcurand.so.10", 203),  # CURAND_STATUS_NOT_INITIALIZED
    "cublas": ("libcublas.so", "libcublas.so.13", 1),  # CUBLAS_STATUS_NOT_INITIALIZED
    "cublaslt": ("libcublasLt.so", "libcublasLt.so.13", 1),
}

# Driver calls that report an error's text: answer them, so that the error a
# user sees names the stub.
DRIVER_STRINGS = """
static const char *cml_stub_text = "no NVIDIA driver (link-time stub libcuda from .ci/cuda_link_stubs.py)";
int cuGetErrorString(int error, const char **text) { (void)error; *text = cml_stub_text; return 0; }
int cuGetErrorName(int error, const char **text) { (void)error; *text = "CUDA_ERROR_NO_DEVICE"; return 0; }
"""


def function_names(module_source):
    names = set(re.findall(r'load::<_F>\("([A-Za-z_][A-Za-z0-9_]*)"\)', module_source))
    names |= set(re.findall(r"^\s*fn ([A-Za-z_][A-Za-z0-9_]*)\(", module_source, re.M))
    return sorted(n for n in names if n not in ("load", "culib", "lib"))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    libdir, cudarc = sys.argv[1], sys.argv[2]
    os.makedirs(libdir, exist_ok=True)
    for module, (filename, soname, code) in LIBRARIES.items():
        path = os.path.join(cudarc, "src", module, "sys", "mod.rs")
        with open(path, encoding="utf-8") as f:
            names = function_names(f.read())
        if not names:
            sys.exit(f"{path}: no function names found (cudarc's layout changed?)")
        special = {"cuGetErrorString", "cuGetErrorName"} if module == "driver" else set()
        body = [DRIVER_STRINGS] if special else []
        body += [f"int {n}(void) {{ return {code}; }}" for n in names if n not in special]
        with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as c:
            c.write("\n".join(body) + "\n")
        out = os.path.join(libdir, filename)
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", out, c.name], check=True)
        os.unlink(c.name)
        # The loader looks for the SONAME; point it at the stub.
        alias = os.path.join(libdir, soname)
        if not os.path.lexists(alias):
            os.symlink(filename, alias)
        print(f"{out}: {len(names)} functions")
    cudart = os.path.join(libdir, "libcudart.so")
    if not os.path.lexists(cudart) and os.path.exists(cudart + ".13"):
        os.symlink("libcudart.so.13", cudart)


if __name__ == "__main__":
    main()
