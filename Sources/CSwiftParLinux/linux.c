#define _GNU_SOURCE
#include "swiftpar_linux.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdio.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int swiftpar_set_parent_death_signal(int signal_number) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal_number, 0, 0, 0);
}

void swiftpar_keep_large_buffers(int mmap_threshold, int trim_threshold) {
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
}

int swiftpar_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int swiftpar_pidfd_getfd(int pidfd, int target) { return (int)syscall(SYS_pidfd_getfd, pidfd, target, 0); }

int swiftpar_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_ns) {
    struct timespec timeout = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    // Not FUTEX_PRIVATE_FLAG: the word is shared with other processes.
    return (int)syscall(SYS_futex, address, FUTEX_WAIT, expected, timeout_ns >= 0 ? &timeout : NULL, NULL, 0);
}

int swiftpar_futex_wake(uint32_t *address) {
    return (int)syscall(SYS_futex, address, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

int swiftpar_memfd_create(const char *label) { return memfd_create(label, MFD_CLOEXEC); }

int swiftpar_flush_standard_output(void) { return fflush(stdout) == 0 ? 0 : (errno != 0 ? errno : EIO); }

int swiftpar_standard_output_failed(void) {
    int failed = ferror(stdout);
    clearerr(stdout);
    return failed;
}

void swiftpar_flush_all_streams(void) { fflush(NULL); }
