"""The host side of device mailboxes in native code, shared by CUDA and the emulated device.

A small C library (``libpdc_host``), built once with the host C++ compiler and cached like
kernel builds, does what must not be done from Python:

* ``pdc_host_publish``: store a host-written control word (the doorbell, ``host_wait``) with a
  full fence, then wake the emulated device if it sleeps on ``wake_seq`` (a futex: a plain
  store from Python cannot order itself before the read of ``sleeping``);
* ``pdc_host_spin``: spin on a device-written word until it changes or a short window passes.
  It is called through ``ctypes.CDLL``, which releases the GIL for the call; the store goes
  through ``ctypes.PyDLL`` (it takes nanoseconds, and releasing the GIL could hand it to
  another thread for a whole switch interval).

The outbox head is stored from Python (a plain store: receiving a reply that is already there
costs no native call). The device only needs it when its outbox is full; a device that went to
sleep on a full outbox just as Python stored the head is woken by the host's next native call
(every call settles: after a full fence, it wakes a device sleeping for the host), and the
host makes one before it waits for anything.

Without a C++ compiler (a CUDA machine with no toolchain) :class:`PythonEndpoint` does the same
with plain stores (x86-64 keeps two stores in order; a GPU never sleeps on ``wake_seq``) and
does not spin: waiters go straight to the kernel's polling pump. The emulated device always
has a compiler, since it builds kernels with one.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import importlib.util
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._cache import cache_dir, cache_key
from ...errors import BackendUnavailableError
from ._memory import CONTROL_BYTES, word_c_defines

__all__ = [
    "ENDPOINT_SOURCE",
    "EXTENSION_SOURCE",
    "NativeEndpoint",
    "PythonEndpoint",
    "build_native",
    "endpoint",
    "endpoint_kind",
]

SPIN_ENV = "PYDOTCOMPUTE_DEVICE_SPIN_US"
DEFAULT_SPIN_US = 50.0  # how long a waiter spins (GIL released) before it parks
_BUILD_TIMEOUT_S = 120

_CORE_SOURCE = (
    r"""// The host side of PyDotCompute device mailboxes: the code both wrappers share.
#include <climits>
#include <cstdint>
#include <ctime>
#include <sched.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

"""
    + word_c_defines()
    + r"""

static inline void relax()
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

static inline uint64_t now_ns()
{
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec);
}

// Wake an emulated device sleeping on wake_seq (its low 32 bits are the futex word).
static void wake_device(uint64_t* ctl)
{
    uint64_t* seq = &ctl[PDC_WORD_wake_seq];
    __atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) + 1, __ATOMIC_SEQ_CST);
#if defined(__linux__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    syscall(SYS_futex, reinterpret_cast<unsigned int*>(seq), FUTEX_WAKE, INT_MAX, nullptr,
            nullptr, 0);
#endif
}

// After a host store (and a full fence): wake the device if it sleeps waiting for a change
// the host made (sleeping 1: the doorbell; 2: the doorbell or the outbox head, which Python
// stores plainly and which any later call here settles).
static void settle(uint64_t* ctl, bool doorbell)
{
    const uint64_t sleeping = __atomic_load_n(&ctl[PDC_WORD_sleeping], __ATOMIC_SEQ_CST);
    if (sleeping == 2 || (sleeping == 1 && doorbell)) {
        wake_device(ctl);
    }
}

// Publish a host-written word with a full fence, then settle.
static inline void host_publish(uint64_t* ctl, unsigned int word, uint64_t value)
{
    __atomic_store_n(&ctl[word], value, __ATOMIC_SEQ_CST);
    // A new link generation wakes a sleeping device as the doorbell does: it switches rings.
    settle(ctl, word == PDC_WORD_doorbell || word == PDC_WORD_link_out_gen ||
                    word == PDC_WORD_link_in_gen);
}

// The first look of a spin: settle, then read ctl[word] (no waiting).
static inline uint64_t host_look(uint64_t* ctl, unsigned int word)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    settle(ctl, false);
    return __atomic_load_n(&ctl[word], __ATOMIC_ACQUIRE);
}

// Spin until ctl[word] != old or spin_ns have passed; return the last value read.
static uint64_t host_wait(uint64_t* ctl, unsigned int word, uint64_t old, uint64_t spin_ns)
{
    const uint64_t until = now_ns() + spin_ns;
    for (unsigned int i = 1;; ++i) {
        relax();
        const uint64_t v = __atomic_load_n(&ctl[word], __ATOMIC_ACQUIRE);
        if (v != old) {
            return v;
        }
        if ((i & 7u) == 0) {
            if (now_ns() >= until) {
                return v;
            }
            if (i >= 8) {
                // Let the device run if the OS put it on this core (it then waits behind us).
                sched_yield();
            }
        }
    }
}
"""
)

ENDPOINT_SOURCE = (
    "// libpdc_host: the host side of PyDotCompute device mailboxes (loaded with ctypes).\n"
    + _CORE_SOURCE
    + r"""
extern "C" void pdc_host_publish(uint64_t* ctl, unsigned int word, uint64_t value)
{
    host_publish(ctl, word, value);
}

extern "C" uint64_t pdc_host_spin(uint64_t* ctl, uint64_t spin_ns, unsigned int word,
                                  uint64_t old)
{
    const uint64_t v = host_look(ctl, word);
    return v != old || spin_ns == 0 ? v : host_wait(ctl, word, old, spin_ns);
}
"""
)

EXTENSION_SOURCE = (
    r"""// _pdc_host: the host side of PyDotCompute device mailboxes as a CPython extension.
// The same code as libpdc_host, called without ctypes' argument conversion (METH_FASTCALL).
#define PY_SSIZE_T_CLEAN
#include <Python.h>
"""
    + _CORE_SOURCE
    + f"\n#define PDC_WORDS {CONTROL_BYTES // 8}u\n"
    + r"""
typedef struct {
    PyObject_HEAD
    uint64_t* ctl;
    uint64_t spin_ns;
    PyObject* owner;  // keeps the memory of the control block alive
} Endpoint;

static int word_arg(PyObject* arg, unsigned int* word)
{
    const unsigned long w = PyLong_AsUnsignedLong(arg);
    if (w == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (w >= PDC_WORDS) {
        PyErr_Format(PyExc_IndexError, "control word %lu out of range (%d words)", w,
                     (int)PDC_WORDS);
        return -1;
    }
    *word = (unsigned int)w;
    return 0;
}

static int Endpoint_init(Endpoint* self, PyObject* args, PyObject* kwds)
{
    unsigned long long address = 0, spin_ns = 0;
    PyObject* owner = NULL;
    if (!PyArg_ParseTuple(args, "KKO:Endpoint", &address, &spin_ns, &owner)) {
        return -1;
    }
    if (address == 0 || address % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "the control block address must be 8-byte aligned");
        return -1;
    }
    self->ctl = reinterpret_cast<uint64_t*>(static_cast<uintptr_t>(address));
    self->spin_ns = spin_ns;
    Py_XSETREF(self->owner, Py_NewRef(owner));
    return 0;
}

static void Endpoint_dealloc(Endpoint* self)
{
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free(reinterpret_cast<PyObject*>(self));
}

// publish(word, value): store a host-written word with a full fence and wake the device.
static PyObject* Endpoint_publish(Endpoint* self, PyObject* const* args, Py_ssize_t nargs)
{
    unsigned int word;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "publish(word, value) takes 2 arguments");
        return NULL;
    }
    if (word_arg(args[0], &word) < 0) {
        return NULL;
    }
    const unsigned long long value = PyLong_AsUnsignedLongLong(args[1]);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    host_publish(self->ctl, word, value);
    Py_RETURN_NONE;
}

// spin(word, old): wait (GIL released) until ctl[word] != old or the window passes.
static PyObject* Endpoint_spin(Endpoint* self, PyObject* const* args, Py_ssize_t nargs)
{
    unsigned int word;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "spin(word, old) takes 2 arguments");
        return NULL;
    }
    if (word_arg(args[0], &word) < 0) {
        return NULL;
    }
    const unsigned long long old = PyLong_AsUnsignedLongLong(args[1]);
    if (old == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    uint64_t v = host_look(self->ctl, word);
    if (v == old && self->spin_ns != 0) {
        Py_BEGIN_ALLOW_THREADS
        v = host_wait(self->ctl, word, old, self->spin_ns);
        Py_END_ALLOW_THREADS
    }
    return PyLong_FromUnsignedLongLong(v);
}

static PyMethodDef Endpoint_methods[] = {
    {"publish", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(Endpoint_publish)),
     METH_FASTCALL, "publish(word, value): store a control word with a full fence."},
    {"spin", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(Endpoint_spin)),
     METH_FASTCALL, "spin(word, old): wait until the word changes or the window passes."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EndpointType = {
    PyVarObject_HEAD_INIT(NULL, 0)
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_pdc_host", "PyDotCompute's native host endpoint.", -1, NULL,
};

PyMODINIT_FUNC PyInit__pdc_host(void)
{
    EndpointType.tp_name = "_pdc_host.Endpoint";
    EndpointType.tp_basicsize = sizeof(Endpoint);
    EndpointType.tp_flags = Py_TPFLAGS_DEFAULT;
    EndpointType.tp_doc = "Endpoint(address, spin_ns, owner): one kernel's control block.";
    EndpointType.tp_new = PyType_GenericNew;
    EndpointType.tp_init = reinterpret_cast<initproc>(Endpoint_init);
    EndpointType.tp_dealloc = reinterpret_cast<destructor>(Endpoint_dealloc);
    EndpointType.tp_methods = Endpoint_methods;
    if (PyType_Ready(&EndpointType) < 0) {
        return NULL;
    }
    PyObject* m = PyModule_Create(&module_def);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Endpoint", reinterpret_cast<PyObject*>(&EndpointType)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
"""
)

ENDPOINT_OPTIONS = ("-std=c++17", "-O2", "-shared", "-fPIC")


def build_native(name: str, source: str, options: tuple[str, ...], *, executable: bool) -> Path:
    """Compile ``source`` with the host C++ compiler once and cache the product.

    The product is written next to its final name and renamed into place (with its mode set
    first), so concurrent processes never run a half-written file.

    Raises
    ------
    BackendUnavailableError
        No C++ compiler was found.
        The compiler failed (the log says why).
    """
    from ._compile import require_cxx

    cxx, version = require_cxx()
    key = cache_key("native", name, source, options, version, platform.machine())
    directory = cache_dir("native")
    final = directory / f"{name}-{key}{'' if executable else '.so'}"
    if final.exists():
        return final
    with tempfile.TemporaryDirectory(prefix="pdc-native-") as tmp:
        src = Path(tmp) / f"{name}.cpp"
        src.write_text(source)
        out = Path(tmp) / name
        try:
            proc = subprocess.run(
                [cxx, *options, str(src), "-o", str(out)],
                capture_output=True,
                text=True,
                timeout=_BUILD_TIMEOUT_S,
            )
            log = proc.stderr + proc.stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc, log = None, str(exc)
        if proc is None or proc.returncode != 0:
            raise BackendUnavailableError(
                f"could not build PyDotCompute's native host code ({name}) with {cxx}: "
                f"{log.strip()[-2000:]}\nset CXX to a working C++17 compiler (g++ or clang++)"
            )
        fd, part = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(out.read_bytes())
            os.chmod(part, 0o700 if executable else 0o600)
            os.replace(part, final)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
    return final


def spin_ns() -> int:
    """The spin window of a waiter, from ``$PYDOTCOMPUTE_DEVICE_SPIN_US`` (default 50 us).

    Raises
    ------
    InvalidArgumentError
        The variable is not a non-negative number of microseconds.
    """
    from ...errors import InvalidArgumentError

    raw = os.environ.get(SPIN_ENV)
    if raw is None:
        return int(DEFAULT_SPIN_US * 1000)
    try:
        us = float(raw)
    except ValueError:
        us = -1.0
    if not 0 <= us <= 1e6:
        raise InvalidArgumentError(
            f"{SPIN_ENV}={raw!r} must be a number of microseconds from 0 to 1000000 "
            f"(0: never spin; unset: {DEFAULT_SPIN_US:g})"
        )
    return int(us * 1000)


class NativeEndpoint:
    """The native host endpoint of one kernel's control block."""

    native = True

    def __init__(self, lib: tuple[str, Any], ctl_address: int, ctl: Any, spin: int) -> None:
        kind, code = lib
        self.kind = kind
        self.ctl = ctl
        self.spin_ns = spin
        #: ``publish(word, value)``: store a host-written word with a full fence and wake a
        #: device that sleeps on it. ``spin(word, old)``: spin (GIL released) until ``word``
        #: differs from ``old`` or the window passes, and return the last value read; it
        #: settles first (a device asleep on a full outbox is woken, see the module doc).
        #: Both are the foreign functions themselves: no Python frame between.
        self.publish: Callable[[int, int], None]
        self.spin: Callable[[int, int], int]
        if kind == "extension":
            ep = code.Endpoint(ctl_address, spin, ctl)
            self.publish = ep.publish
            self.spin = ep.spin
        else:
            gil_held, gil_released = code
            self.publish = functools.partial(gil_held.pdc_host_publish, ctl_address)
            self.spin = functools.partial(gil_released.pdc_host_spin, ctl_address, spin)


class PythonEndpoint:
    """The host endpoint without a compiler: plain stores, no spinning (see the module doc)."""

    native = False
    kind = "python"

    def __init__(self, ctl: Any) -> None:
        self.ctl = ctl
        self.spin_ns = 0

    def publish(self, word: int, value: int) -> None:
        """Store a host-written word (x86-64 keeps it after the slot written before it)."""
        self.ctl[word] = value

    def spin(self, word: int, old: int) -> int:
        """Read the word once (no spinning without native code)."""
        return int(self.ctl[word])


def _python_headers() -> str | None:
    """The folder of this interpreter's ``Python.h``, if its headers are installed."""
    include = sysconfig.get_paths().get("include")
    if include and (Path(include) / "Python.h").is_file():
        return include
    return None


@functools.cache
def _extension() -> Any:
    """The host endpoint as a CPython extension, built for this interpreter and cached."""
    include = _python_headers()
    assert include is not None
    soabi = sysconfig.get_config_var("SOABI") or f"py{sys.version_info[0]}{sys.version_info[1]}"
    path = build_native(
        f"pdc-host-{soabi}",
        EXTENSION_SOURCE,
        (*ENDPOINT_OPTIONS, "-I", include),
        executable=False,
    )
    loader = importlib.machinery.ExtensionFileLoader("_pdc_host", str(path))
    spec = importlib.util.spec_from_file_location("_pdc_host", str(path), loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@functools.cache
def _library() -> tuple[str, Any]:
    """The native host code: the extension when this Python's headers exist, else ctypes."""
    if _python_headers() is not None:
        return "extension", _extension()
    return _ctypes_library()


@functools.cache
def _ctypes_library() -> tuple[str, Any]:
    """The native host code through ctypes (when this Python's headers are not installed)."""
    path = build_native("pdc-host", ENDPOINT_SOURCE, ENDPOINT_OPTIONS, executable=False)
    gil_held = ctypes.PyDLL(str(path))
    gil_released = ctypes.CDLL(str(path))
    for lib in (gil_held, gil_released):
        lib.pdc_host_publish.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint64]
        lib.pdc_host_publish.restype = None
        lib.pdc_host_spin.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint64,
            ctypes.c_uint,
            ctypes.c_uint64,
        ]
        lib.pdc_host_spin.restype = ctypes.c_uint64
    return "ctypes", (gil_held, gil_released)


def endpoint_kind() -> str:
    """How the host side of device mailboxes runs here (for ``info``).

    ``"extension"`` (a CPython extension built with the host C++ compiler: this Python's
    headers are installed), ``"ctypes"`` (the same C code through ctypes: no headers) or
    ``"python"`` (plain stores and no spinning: no C++ compiler).
    """
    from ._compile import find_cxx

    if find_cxx() is None:
        return "python"
    return "extension" if _python_headers() is not None else "ctypes"


def endpoint(
    ctl_address: int, ctl: Any, *, spin: int, require: bool
) -> NativeEndpoint | PythonEndpoint:
    """The host endpoint for a control block at ``ctl_address`` (viewed as ``ctl``).

    Native when a C++ compiler is available; else (only when ``require`` is false) the Python
    fallback. ``spin`` is the spin window in ns (see :func:`spin_ns`).
    """
    from ._compile import find_cxx

    if find_cxx() is None and not require:
        return PythonEndpoint(ctl)
    return NativeEndpoint(_library(), ctl_address, ctl, spin)
