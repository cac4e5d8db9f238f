/* LD_PRELOAD shim for User-Mode Linux kernels (Debian 12's 6.1, Debian 13's 6.12) that hand the
 * host's PTRACE_SETREGSET NT_X86_XSTATE an XSAVE buffer smaller than the host kernel's own XSAVE
 * size. The host answers EFAULT unless the buffer is exactly its size (arch/x86/kernel/fpu/
 * regset.c, xstateregs_set), so on a CPU with a large XSAVE area (AMX: about 11 KiB) the guest's
 * init dies with "ptrace set fp regs failed, errno = 14". Reading with a short buffer is fine
 * (the host truncates), so only the write is widened here: read the tracee's whole state into a
 * buffer of the host's size, lay UML's bytes over its start, write the whole buffer back. The
 * bytes past UML's part are the tracee's own (AMX tile state a guest never uses).
 *
 * Built by mobileip.tools.uml_kernel.build_shim (gcc -shared -fPIC) into the kernel cache and
 * put in the kernel's LD_PRELOAD only when its plain boot failed with that signature.
 *
 * Everything else goes to the ptrace system call unchanged, with glibc's ptrace() conventions:
 * -1 and errno on failure; PTRACE_PEEK{TEXT,DATA,USER} return the word read and clear errno on
 * success (their callers tell a word of -1 from a failure by errno). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* An upper bound of the host kernel's XSAVE size: CPUID leaf 0xD subleaf 0, ECX (the size for
 * every user feature the CPU supports; the kernel's size covers those it enabled), asked once:
 * CPUID traps to the hypervisor in a virtual machine (tens of microseconds). 0: unknown. */
static size_t cpu_xstate_size(void) {
    static size_t size = (size_t)-1;
    if (size == (size_t)-1) {
        unsigned a, b, c, d;
        size = __get_cpuid_count(0xd, 0, &a, &b, &c, &d) ? (c > b ? c : b) : 0;
    }
    return size;
}

/* The host kernel's own size, once a read has told it (the length the host leaves in the iovec
 * of a PTRACE_GETREGSET with a larger buffer). 0 until then. */
static size_t host_xstate_size;

/* The full-size buffer, one per thread, kept: UML writes the registers at every switch to user
 * space. */
static __thread char *full_buffer;

static long raw_ptrace(long req, pid_t pid, void *addr, void *data) {
    return syscall(SYS_ptrace, req, pid, addr, data);
}

static long set_xstate_widened(pid_t pid, void *addr, const struct iovec *iov) {
    size_t cap = cpu_xstate_size();
    if (cap <= iov->iov_len)
        return raw_ptrace(PTRACE_SETREGSET, pid, addr, (void *)iov);
    if (full_buffer == NULL && (full_buffer = malloc(cap)) == NULL) {
        errno = ENOMEM;
        return -1;
    }
    struct iovec full = {full_buffer, cap};
    long r = raw_ptrace(PTRACE_GETREGSET, pid, addr, &full);
    if (r != 0)
        return r;
    host_xstate_size = full.iov_len;
    if (iov->iov_len >= full.iov_len)
        return raw_ptrace(PTRACE_SETREGSET, pid, addr, (void *)iov);
    memcpy(full_buffer, iov->iov_base, iov->iov_len);
    return raw_ptrace(PTRACE_SETREGSET, pid, addr, &full);
}

long ptrace(enum __ptrace_request request, ...) {
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    long req = (long)request;
    if (req == PTRACE_PEEKTEXT || req == PTRACE_PEEKDATA || req == PTRACE_PEEKUSER) {
        long word;
        long r = raw_ptrace(req, pid, addr, &word);
        if (r < 0)
            return r;
        errno = 0;
        return word;
    }
    if (req == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE && data != NULL) {
        const struct iovec *iov = data;
        if (host_xstate_size == 0 || iov->iov_len < host_xstate_size)
            return set_xstate_widened(pid, addr, iov);
    }
    return raw_ptrace(req, pid, addr, data);
}
