"""The shim header and entry point that build generated CUDA source as a host library.

``pdc_emulated.h`` gives the host C++ compiler the CUDA names a device ring kernel uses:
``__device__`` / ``__global__`` / ``__shared__``, ``threadIdx`` / ``blockIdx`` /
``blockDim``, ``__syncthreads`` (a barrier over the block's threads, which are real OS
threads), ``__threadfence_system`` (a sequentially consistent fence), ``__nanosleep``,
``__trap`` (reports an error to the host instead of aborting the process), the common
atomics and fast-math intrinsics, plus what the emulated loop needs from the OS: a futex to
sleep on while idle and the host's wake-up pipe. ``pdc_emulated_run`` runs one block of the
kernel on the calling thread plus ``threads - 1`` helpers; the emulated device's host process
(``_host_program.py``) calls it, in a process of its own.
"""

from __future__ import annotations

__all__ = ["ENTRY", "SHIM_HEADER"]

SHIM_HEADER = r"""// pdc_emulated.h: CUDA names for the host C++ compiler (the emulated device).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static  // one block per kernel instance: static is block-shared
#define __restrict__ __restrict
#define __launch_bounds__(...)

struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;

namespace pdc_emu {

struct trap {};  // thrown by __trap(); pdc_emulated_run reports it to the host

// A barrier for the block's threads that a trap in one thread can break.
class barrier {
  public:
    void reset(unsigned int n)
    {
        std::lock_guard<std::mutex> lock(m_);
        count_ = n;
        waiting_ = 0;
        broken_ = false;
    }
    void wait()
    {
        std::unique_lock<std::mutex> lock(m_);
        if (broken_) {
            throw trap();
        }
        const unsigned long long gen = gen_;
        if (++waiting_ == count_) {
            waiting_ = 0;
            ++gen_;
            cv_.notify_all();
            return;
        }
        cv_.wait(lock, [&] { return gen_ != gen || broken_; });
        if (gen_ == gen) {
            throw trap();
        }
    }
    void break_all()
    {
        std::lock_guard<std::mutex> lock(m_);
        broken_ = true;
        cv_.notify_all();
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    unsigned int count_ = 1, waiting_ = 0;
    unsigned long long gen_ = 0;
    bool broken_ = false;
};

inline barrier& block_barrier()
{
    static barrier b;
    return b;
}

// The host process's end of the wake-up pipe (set by pdc_emulated_run).
static int notify_fd = -1;

// Which messages are in flight, to name them (and consume them) when a handler faults: the
// range a batch took, and the message a thread handles (parallel mode).
static unsigned long long batch_first = ~0ull, batch_end = ~0ull;
static thread_local unsigned long long current = ~0ull;

inline void taking(unsigned long long first, unsigned long long end)
{
    batch_first = first;
    batch_end = end;
}

// Signal the host, which parks on the read end of the pipe while it waits for progress.
inline void notify_host()
{
    const char one = 1;
    if (notify_fd >= 0) {
        const ssize_t written = write(notify_fd, &one, 1);
        (void)written;  // a full pipe already holds a wake-up for the host
    }
}

// Sleep while *word == seq (the host bumps the word to wake the kernel). A futex on shared
// memory works across processes (no FUTEX_PRIVATE_FLAG); without one, nap briefly.
inline void wait_while(unsigned long long* word, unsigned long long seq)
{
#if defined(__linux__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    syscall(SYS_futex, reinterpret_cast<unsigned int*>(word), FUTEX_WAIT,
            static_cast<unsigned int>(seq), nullptr, nullptr, 0);
#else
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seq) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
#endif
}

// Sleep while *a == va and *b == vb (a kernel with a linked input: the host bumps a, the
// upstream kernel advances b). futex_waitv (Linux 5.16) waits on both words; without it,
// nap briefly and look again.
inline void wait_while_both(unsigned long long* a, unsigned long long va, unsigned long long* b,
                            unsigned long long vb)
{
#if defined(__linux__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#if !defined(SYS_futex_waitv)
#define SYS_futex_waitv 449  // the same number on every architecture
#endif
    struct waitv {
        uint64_t val, uaddr;
        uint32_t flags, reserved;
    } w[2] = {{uint32_t(va), reinterpret_cast<uint64_t>(a), 2u, 0u},
              {uint32_t(vb), reinterpret_cast<uint64_t>(b), 2u, 0u}};  // 2: a 32-bit word
    if (syscall(SYS_futex_waitv, w, 2, 0, nullptr, 0) >= 0 || errno != ENOSYS) {
        return;
    }
#endif
    if (__atomic_load_n(a, __ATOMIC_SEQ_CST) == va && __atomic_load_n(b, __ATOMIC_SEQ_CST) == vb) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
}

// Wake whatever sleeps on *word (a downstream kernel waiting for its link ring's tail).
inline void wake_all(unsigned long long* word)
{
#if defined(__linux__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    syscall(SYS_futex, reinterpret_cast<unsigned int*>(word), FUTEX_WAKE, 0x7fffffff, nullptr,
            nullptr, 0);
#else
    (void)word;
#endif
}

// One step of a busy-wait: tell the core we spin, and now and then let the OS run another
// task on this core (the host process may wait behind this one for it).
inline void relax()
{
    static thread_local unsigned int spins = 0;
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
    if ((++spins & 63u) == 0) {
        std::this_thread::yield();
    }
}

}  // namespace pdc_emu

#define PDC_TAKING(first, end) pdc_emu::taking((first), (end))
#define PDC_HANDLING(index) (pdc_emu::current = (index))

static thread_local uint3 threadIdx = {0, 0, 0};
static uint3 blockIdx = {0, 0, 0};
static uint3 blockDim = {1, 1, 1};
static uint3 gridDim = {1, 1, 1};
static const int warpSize = 32;

inline void __syncthreads() { pdc_emu::block_barrier().wait(); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { throw pdc_emu::trap(); }

inline unsigned long long pdc_now_ns()
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
inline long long clock64() { return (long long)pdc_now_ns(); }

// Short naps yield the core (a host sleep cannot be shorter than ~50 us); longer ones sleep.
inline void __nanosleep(unsigned int ns)
{
    if (ns < 20000u) {
        const unsigned long long until = pdc_now_ns() + ns;
        do {
            std::this_thread::yield();
        } while (pdc_now_ns() < until);
    } else {
        std::this_thread::sleep_for(std::chrono::nanoseconds(ns));
    }
}

#define PDC_SC __ATOMIC_SEQ_CST
template <typename T> inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, PDC_SC); }
template <typename F> inline F pdc_atomic_add_float(F* p, F v)
{
    F old;
    __atomic_load(p, &old, PDC_SC);
    F desired = old + v;
    while (!__atomic_compare_exchange(p, &old, &desired, false, PDC_SC, PDC_SC)) {
        desired = old + v;
    }
    return old;
}
inline float atomicAdd(float* p, float v) { return pdc_atomic_add_float(p, v); }
inline double atomicAdd(double* p, double v) { return pdc_atomic_add_float(p, v); }
template <typename T> inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, PDC_SC); }
template <typename T> inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, PDC_SC); }
template <typename T> inline T atomicCAS(T* p, T cmp, T v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, PDC_SC, PDC_SC);
    return cmp;
}
template <typename T> inline T atomicMax(T* p, T v)
{
    T o = __atomic_load_n(p, PDC_SC);
    while (o < v && !__atomic_compare_exchange_n(p, &o, v, false, PDC_SC, PDC_SC)) {
    }
    return o;
}
template <typename T> inline T atomicMin(T* p, T v)
{
    T o = __atomic_load_n(p, PDC_SC);
    while (o > v && !__atomic_compare_exchange_n(p, &o, v, false, PDC_SC, PDC_SC)) {
    }
    return o;
}
#define atomicAdd_system atomicAdd
#define atomicExch_system atomicExch
#define atomicCAS_system atomicCAS
#define atomicMax_system atomicMax
#define atomicMin_system atomicMin

using std::max;
using std::min;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
"""

ENTRY = r"""
// ---- emulated-device entry point (appended by PyDotCompute) ----------------------------
// What the host process (pydotcompute's pdc-emulated-host) passes to the kernel library.
struct pdc_emu_host {
    int notify_fd;  // write end of the host's wake-up pipe
};

// The message in flight on the calling thread and the end of the batch it belongs to (read
// by the host process's signal handler when a handler faults).
extern "C" void pdc_emulated_in_flight(unsigned long long* message, unsigned long long* end)
{
    *message = pdc_emu::current != ~0ull ? pdc_emu::current : pdc_emu::batch_first;
    *end = pdc_emu::batch_end;
}

// The message (or parallel batch) in flight when a handler fails is consumed: the host takes
// back only the messages after it, so a restart does not run it again.
extern "C" void pdc_emulated_consume_in_flight(pdc_control* ctl)
{
    if (pdc_emu::batch_end != ~0ull) {
        __atomic_store_n(&ctl->in_head, pdc_emu::batch_end, __ATOMIC_SEQ_CST);
    }
}

extern "C" int pdc_emulated_run(unsigned int threads, unsigned long long a0,
                                unsigned long long a1, unsigned long long a2,
                                unsigned long long a3, unsigned long long a4,
                                unsigned long long a5, const pdc_emu_host* host)
{
    pdc_control* ctl = reinterpret_cast<pdc_control*>(a0);
    pdc_emu::notify_fd = host->notify_fd;
    pdc_emu::block_barrier().reset(threads);
    blockDim.x = threads;
    std::atomic<int> failed(0);
    auto body = [&](unsigned int t) {
        threadIdx.x = t;
        unsigned long long code = 0;
        try {
            pdc_ring_kernel(a0, a1, a2, a3, a4, a5);
            return;
        } catch (const pdc_emu::trap&) {
            code = PDC_ERR_TRAP;
        } catch (...) {
            code = PDC_ERR_EXCEPTION;
        }
        if (failed.exchange(1) == 0) {
            unsigned long long message = 0, end = 0;
            pdc_emulated_in_flight(&message, &end);
            __atomic_store_n(&ctl->fault_message, message, __ATOMIC_SEQ_CST);
            __atomic_store_n(&ctl->error, code, __ATOMIC_SEQ_CST);
        }
        pdc_emu::block_barrier().break_all();
    };
    std::vector<std::thread> helpers;
    for (unsigned int t = 1; t < threads; ++t) {
        helpers.emplace_back(body, t);
    }
    body(0);
    for (std::thread& h : helpers) {
        h.join();
    }
    if (failed.load()) {
        pdc_emulated_consume_in_flight(ctl);
        __atomic_store_n(&ctl->status, PDC_STATUS_FAILED, __ATOMIC_SEQ_CST);
    }
    return failed.load();
}
"""
