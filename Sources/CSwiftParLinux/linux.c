#define _GNU_SOURCE
#include "swiftpar_linux.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
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

pid_t swiftpar_spawn(const char *path, char *const argv[], char *const envp[], int keep_descriptor) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    sigset_t none, defaults;
    pid_t pid = -1;
    int code = posix_spawn_file_actions_init(&actions);
    if (code != 0) { errno = code; return -1; }
    code = posix_spawnattr_init(&attributes);
    if (code != 0) { posix_spawn_file_actions_destroy(&actions); errno = code; return -1; }
    // dup2 onto itself clears close-on-exec for this descriptor in the child only (glibc 2.29+).
    code = posix_spawn_file_actions_adddup2(&actions, keep_descriptor, keep_descriptor);
    sigemptyset(&none);
    sigemptyset(&defaults);
    int reset[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD};
    for (unsigned i = 0; i < sizeof reset / sizeof reset[0]; i++) sigaddset(&defaults, reset[i]);
    if (code == 0) code = posix_spawnattr_setsigmask(&attributes, &none);
    if (code == 0) code = posix_spawnattr_setsigdefault(&attributes, &defaults);
    if (code == 0) code = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (code == 0) code = posix_spawn(&pid, path, &actions, &attributes, argv, envp);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    if (code != 0) { errno = code; return -1; }
    return pid;
}

static int forwarded_signals_pipe = -1;

static void forward_signal(int signal_number) {
    int saved = errno;
    unsigned char byte = (unsigned char)signal_number;
    ssize_t written = write(forwarded_signals_pipe, &byte, 1);
    (void)written;
    errno = saved;
}

int swiftpar_forward_signals_to_pipe(const int *signals, int count) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    forwarded_signals_pipe = ends[1];
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return ends[0];
}

int swiftpar_flush_standard_output(void) { return fflush(stdout) == 0 ? 0 : (errno != 0 ? errno : EIO); }

int swiftpar_standard_output_failed(void) {
    int failed = ferror(stdout);
    clearerr(stdout);
    return failed;
}

void swiftpar_flush_all_streams(void) { fflush(NULL); }
