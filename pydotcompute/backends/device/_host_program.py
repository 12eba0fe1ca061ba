"""``pdc-emulated-host``: the process an emulated device kernel runs in.

A tiny native program (built once with the host C++ compiler and cached) that maps the
kernel's mailbox memory (a shared-memory file passed as a file descriptor), loads the kernel's
shared library and runs ``pdc_emulated_run`` on it. Addresses are its own: Python passes
offsets into the mapping, never its own addresses.

It is the emulated device's failure domain, as a GPU is a CUDA kernel's: a handler that
faults (``SIGSEGV``, ``SIGBUS``, ``SIGFPE``, ``SIGILL``, ``SIGABRT``, ``SIGTRAP``) ends this
process only. Its signal handler records the signal, its code and address, the message in
flight and the code offsets of the faulting frames inside the kernel library in the control
block's fault line, marks the in-flight message consumed and the kernel failed, and exits
with ``128 + signal``. It is not async-signal-safe in every step (``backtrace``, ``dladdr``),
which is acceptable for a process that is about to end; a second fault while recording kills
the process with the signal, which Python reports from the exit status.

A watchdog thread blocks on a pipe whose write end only the Python process holds: when that
process goes away, the read returns and the kernel's process exits, so no emulated kernel
outlives its Python process. Core dumps are off (a fault must not write files).
"""

from __future__ import annotations

from pathlib import Path

from ._memory import FAULT_FRAMES, word_c_defines
from ._native import build_native

__all__ = ["HOST_PROGRAM_SOURCE", "host_program"]

HOST_PROGRAM_OPTIONS = ("-std=c++17", "-O2", "-pthread", "-ldl")

HOST_PROGRAM_SOURCE = (
    r"""// pdc-emulated-host: runs one PyDotCompute emulated device ring kernel in its own process.
// usage: pdc-emulated-host LIBRARY MEM_FD SIZE NOTIFY_FD ALIVE_FD THREADS
//                          IN_OFFSET OUT_OFFSET IN_MASK OUT_MASK OUT_LIMIT ARENA_FD ARENA_SIZE
// ARENA_FD is the device's link arena (the memory of device-to-device link rings, mapped by
// every kernel of the device), or -1.
#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

"""
    + word_c_defines()
    + f"\n#define PDC_FAULT_FRAMES {FAULT_FRAMES}\n"
    + r"""
struct pdc_emu_host {
    int notify_fd;
};
typedef int (*run_fn)(unsigned int, unsigned long long, unsigned long long, unsigned long long,
                      unsigned long long, unsigned long long, unsigned long long,
                      const pdc_emu_host*);
typedef void (*in_flight_fn)(unsigned long long*, unsigned long long*);
typedef void (*consume_fn)(void*);

static volatile uint64_t* g_ctl;
static void* g_lib_base;
static in_flight_fn g_in_flight;
static consume_fn g_consume;
static char g_alt_stack[1 << 16];

static uintptr_t fault_pc(void* uctx)
{
    const ucontext_t* uc = static_cast<const ucontext_t*>(uctx);
#if defined(__linux__) && defined(__x86_64__)
    return uintptr_t(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__linux__) && defined(__aarch64__)
    return uintptr_t(uc->uc_mcontext.pc);
#else
    (void)uc;
    return 0;
#endif
}

// The offset of pc inside the kernel library, or 0 when it lies elsewhere.
static uint64_t library_offset(uintptr_t pc)
{
    Dl_info info;
    if (pc == 0 || dladdr(reinterpret_cast<void*>(pc), &info) == 0 ||
        info.dli_fbase != g_lib_base) {
        return 0;
    }
    return pc - reinterpret_cast<uintptr_t>(g_lib_base);
}

static void on_fault(int sig, siginfo_t* info, void* uctx)
{
    volatile uint64_t* ctl = g_ctl;
    unsigned long long message = ~0ull, end = ~0ull;
    if (g_in_flight != nullptr) {
        g_in_flight(&message, &end);
    }
    ctl[PDC_WORD_fault_signal] = uint64_t(sig);
    ctl[PDC_WORD_fault_code] = uint64_t(info->si_code);
    ctl[PDC_WORD_fault_addr] = reinterpret_cast<uint64_t>(info->si_addr);
    ctl[PDC_WORD_fault_message] = message;
    // Frames inside the kernel library: the faulting instruction first, then return
    // addresses (minus one: the call instruction) of the frames that led to the fault.
    int k = 0;
    const uint64_t first = library_offset(fault_pc(uctx));
    if (first != 0) {
        ctl[PDC_WORD_fault_frame0 + k++] = first;
    }
    void* frames[32];
    const int n = backtrace(frames, 32);
    for (int i = 2; i < n && k < PDC_FAULT_FRAMES; ++i) {
        const uint64_t off = library_offset(reinterpret_cast<uintptr_t>(frames[i]));
        if (off != 0 && off != first) {
            ctl[PDC_WORD_fault_frame0 + k++] = off - 1;
        }
    }
    if (g_consume != nullptr) {
        g_consume(const_cast<uint64_t*>(ctl));
    }
    __atomic_store_n(&ctl[PDC_WORD_error], PDC_ERR_SIGNAL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ctl[PDC_WORD_status], PDC_STATUS_FAILED, __ATOMIC_SEQ_CST);
    _exit(128 + sig);
}

static void* watchdog(void* arg)
{
    const int fd = int(reinterpret_cast<intptr_t>(arg));
    char byte;
    while (read(fd, &byte, 1) != 0) {
        // Nothing is ever written: read returns 0 (end of file) once Python has gone.
    }
    _exit(0);
}

int main(int argc, char** argv)
{
    if (argc != 14) {
        std::fprintf(stderr, "pdc-emulated-host: expected 13 arguments, got %d\n", argc - 1);
        return 2;
    }
    const char* library = argv[1];
    const int mem_fd = std::atoi(argv[2]);
    const size_t size = std::strtoull(argv[3], nullptr, 10);
    pdc_emu_host host = {std::atoi(argv[4])};
    const int alive_fd = std::atoi(argv[5]);
    const unsigned int threads = unsigned(std::strtoul(argv[6], nullptr, 10));
    unsigned long long a[5];
    for (int i = 0; i < 5; ++i) {
        a[i] = std::strtoull(argv[7 + i], nullptr, 10);
    }
    const rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);

    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
    if (base == MAP_FAILED) {
        std::perror("pdc-emulated-host: mmap of the mailbox memory");
        return 3;
    }
    close(mem_fd);
    g_ctl = static_cast<volatile uint64_t*>(base);
    const int arena_fd = std::atoi(argv[12]);
    if (arena_fd >= 0) {
        const size_t arena_size = std::strtoull(argv[13], nullptr, 10);
        void* arena = mmap(nullptr, arena_size, PROT_READ | PROT_WRITE, MAP_SHARED, arena_fd, 0);
        if (arena == MAP_FAILED) {
            std::perror("pdc-emulated-host: mmap of the link arena");
            return 3;
        }
        close(arena_fd);
        // Written before the loop starts, which reads it once: its only writer.
        g_ctl[PDC_WORD_link_base] = reinterpret_cast<uint64_t>(arena);
    }

    pthread_t dog;
    if (pthread_create(&dog, nullptr, watchdog, reinterpret_cast<void*>(intptr_t(alive_fd)))) {
        std::perror("pdc-emulated-host: watchdog thread");
        return 3;
    }
    pthread_detach(dog);

    void* lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "pdc-emulated-host: %s\n", dlerror());
        return 4;
    }
    run_fn run = reinterpret_cast<run_fn>(dlsym(lib, "pdc_emulated_run"));
    g_in_flight = reinterpret_cast<in_flight_fn>(dlsym(lib, "pdc_emulated_in_flight"));
    g_consume = reinterpret_cast<consume_fn>(dlsym(lib, "pdc_emulated_consume_in_flight"));
    Dl_info info;
    if (run == nullptr || dladdr(reinterpret_cast<void*>(run), &info) == 0) {
        std::fprintf(stderr, "pdc-emulated-host: %s has no pdc_emulated_run\n", library);
        return 4;
    }
    g_lib_base = info.dli_fbase;

    void* warm[2];
    backtrace(warm, 2);  // loads the unwinder now, not inside the signal handler
    stack_t alt = {};
    alt.ss_sp = g_alt_stack;
    alt.ss_size = sizeof g_alt_stack;
    sigaltstack(&alt, nullptr);  // a handler recursing without end still gets reported
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
    for (int sig : fatal) {
        sigaction(sig, &sa, nullptr);
    }

    const unsigned long long b = reinterpret_cast<unsigned long long>(base);
    const int rc = run(threads, b, b + a[0], b + a[1], a[2], a[3], a[4], &host);
    std::fflush(nullptr);
    return rc;
}
"""
)


def host_program() -> Path:
    """The path of the built ``pdc-emulated-host`` program (built on first use, cached)."""
    return build_native(
        "pdc-emulated-host", HOST_PROGRAM_SOURCE, HOST_PROGRAM_OPTIONS, executable=True
    )
