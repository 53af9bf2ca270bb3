#define _GNU_SOURCE
#include "swiftpar_linux.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <spawn.h>
#include <string.h>
#include <linux/futex.h>
#include <stdio.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sys/wait.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int swiftpar_set_parent_death_signal(int signal_number) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal_number, 0, 0, 0);
}

/// The state letter and parent of process `pid` as /proc/PID/stat gives them; 0 when it is gone.
static char state_of(pid_t pid, pid_t *parent) {
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0) return 0;
    ssize_t length = read(descriptor, text, sizeof text - 1);
    close(descriptor);
    if (length <= 0) return 0;
    text[length] = 0;
    // "PID (COMMAND) STATE PPID ...": the command may hold spaces and parentheses.
    char *end = strrchr(text, ')');
    int found = -1;
    char state = 0;
    if (!end || sscanf(end + 1, " %c %d", &state, &found) != 2) return 0;
    if (parent) *parent = (pid_t)found;
    return state;
}

/// Adds to `*set` (of `*count` entries, room for `*capacity`, grown as needed) every process
/// whose parent is in it, stopping each one added. Returns how many were added.
static int add_children(pid_t **set, int *count, int *capacity) {
    DIR *folder = opendir("/proc");
    if (!folder) return 0;
    int added = 0;
    struct dirent *entry;
    while ((entry = readdir(folder)) != NULL) {
        char *rest;
        long pid = strtol(entry->d_name, &rest, 10);
        if (*rest != 0 || pid <= 0) continue;
        int known = 0;
        for (int i = 0; i < *count && !known; i++) known = (*set)[i] == (pid_t)pid;
        if (known) continue;
        pid_t parent = -1;
        if (!state_of((pid_t)pid, &parent) || parent <= 0) continue;
        int child = 0;
        for (int i = 0; i < *count && !child; i++) child = (*set)[i] == parent;
        if (!child) continue;
        if (*count == *capacity) {
            pid_t *larger = realloc(*set, sizeof(pid_t) * (size_t)(*capacity * 2));
            if (!larger) break;
            *set = larger;
            *capacity *= 2;
        }
        kill((pid_t)pid, SIGSTOP);
        (*set)[(*count)++] = (pid_t)pid;
        added++;
    }
    closedir(folder);
    return added;
}

int swiftpar_kill_with_descendants(const pid_t *pids, int count) {
    int capacity = count + 64;
    pid_t *set = malloc(sizeof(pid_t) * (size_t)capacity);
    if (!set) {
        for (int i = 0; i < count; i++) kill(pids[i], SIGKILL);
        return 0;
    }
    for (int i = 0; i < count; i++) {
        kill(pids[i], SIGSTOP);
        set[i] = pids[i];
    }
    int total = count;
    // Until a pass finds no new process: a process stopped cannot start another, but one
    // found in a pass may have started one before it was stopped.
    while (add_children(&set, &total, &capacity) > 0) {}
    // Every process found is asked to end (SIGTERM, as mpirun asks the ranks of a failed job,
    // and a shell or a task's guardian asks a command), then killed if still there after 0.6 s.
    // A rank ends on SIGTERM after writing what it printed and still held in its buffer (for at
    // most half a second, to a slow reader): the output of a job that failed is not cut short
    // on any backend.
    for (int i = 0; i < total; i++) {
        kill(set[i], SIGTERM);
        kill(set[i], SIGCONT);
    }
    for (int round = 0; round < 60; round++) {
        int alive = 0;
        for (int i = 0; i < total && !alive; i++) {
            char state = state_of(set[i], NULL);
            alive = state != 0 && state != 'Z' && state != 'X';
        }
        if (!alive) break;
        usleep(10000);
    }
    for (int i = 0; i < total; i++) {
        char state = state_of(set[i], NULL);
        if (state != 0 && state != 'Z' && state != 'X') kill(set[i], SIGKILL);
    }
    free(set);
    return total - count;
}

/* The termination signals the process was started with set to be ignored (nohup's SIGHUP, the
 * SIGINT and SIGQUIT of a command run in the background by a non-interactive shell): noted
 * before main runs, so that swiftpar, which catches these signals to end a job cleanly, leaves
 * them ignored, as every other program does. */
static sigset_t ignored_at_start;
/* Whether SIGTERM was blocked when the process started (inherited from whatever started it). */
static int termination_blocked_at_start;

__attribute__((constructor)) static void note_ignored_signals(void) {
    // SIGCHLD ignored makes the kernel reap children at once, so a job could never learn how
    // its ranks ended and would wait for them for good: it is never meant for a program that
    // waits on its children.
    struct sigaction child;
    if (sigaction(SIGCHLD, NULL, &child) == 0 && child.sa_handler == SIG_IGN) signal(SIGCHLD, SIG_DFL);
    sigset_t blocked;
    if (sigprocmask(SIG_BLOCK, NULL, &blocked) == 0) termination_blocked_at_start = sigismember(&blocked, SIGTERM) == 1;
    sigemptyset(&ignored_at_start);
    int watched[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (unsigned i = 0; i < sizeof watched / sizeof watched[0]; i++) {
        struct sigaction current;
        if (sigaction(watched[i], NULL, &current) == 0 && current.sa_handler == SIG_IGN) sigaddset(&ignored_at_start, watched[i]);
    }
}

int swiftpar_ignored_at_start(int signal_number) { return sigismember(&ignored_at_start, signal_number) == 1; }

void swiftpar_die_of_signal(int signal_number) {
    // The shell tells a command killed by SIGINT from one that exited 130: a loop or a script
    // stops only for the first. SIGQUIT's default action would also dump core.
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    // A core pattern that pipes to a program (systemd-coredump) ignores the limit.
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(signal_number, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal_number);
    pthread_sigmask(SIG_UNBLOCK, &only, NULL);
    raise(signal_number);
    _exit(128 + signal_number);
}

void swiftpar_default_action_unless_ignored(int signal_number) {
    struct sigaction current;
    if (sigaction(signal_number, NULL, &current) != 0 || current.sa_handler == SIG_IGN) return;
    signal(signal_number, SIG_DFL);
}

void swiftpar_keep_large_buffers(int mmap_threshold, int trim_threshold) {
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
}

void swiftpar_copy_bytes(void *destination, const void *source, size_t count) {
    uintptr_t distance = ((uintptr_t)destination - (uintptr_t)source) & 4095;
    if (count < 2048 || distance == 0 || distance >= 64) {
        memcpy(destination, source, count);
        return;
    }
    // Below the size at which glibc turns to `rep movsb` (2,112 bytes or more), its vector
    // loop copies at full speed whatever the distance.
    unsigned char *to = destination;
    const unsigned char *from = source;
    while (count > 2048) {
        memcpy(to, from, 2048);
        to += 2048;
        from += 2048;
        count -= 2048;
    }
    memcpy(to, from, count);
}

int swiftpar_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int swiftpar_pidfd_getfd(int pidfd, int target) { return (int)syscall(SYS_pidfd_getfd, pidfd, target, 0); }

int swiftpar_process_holds_other_end(pid_t pid, int pidfd, int descriptor) {
    struct stat own;
    if (fstat(descriptor, &own) != 0) return 0;
    char pipe_name[64] = "";
    int terminal = -1;
    if (S_ISFIFO(own.st_mode)) {
        snprintf(pipe_name, sizeof pipe_name, "pipe:[%lu]", (unsigned long)own.st_ino);
    } else if (S_ISCHR(own.st_mode) && major(own.st_rdev) >= 136 && major(own.st_rdev) <= 143) {
        // Unix 98 pseudo-terminals: majors 136 to 143, numbered on from 256 per major.
        terminal = (int)((major(own.st_rdev) - 136) * 256 + minor(own.st_rdev));
    } else {
        return 0;
    }
    char folder[64];
    snprintf(folder, sizeof folder, "/proc/%d/fd", (int)pid);
    DIR *listing = opendir(folder);
    if (listing == NULL) return -1;
    int found = 0;
    struct dirent *entry;
    while (!found && (entry = readdir(listing)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char target[128];
        ssize_t length = readlinkat(dirfd(listing), entry->d_name, target, sizeof target - 1);
        if (length < 0) continue;
        target[length] = 0;
        if (terminal < 0) {
            found = strcmp(target, pipe_name) == 0;
        } else if (strcmp(target, "/dev/ptmx") == 0 || strcmp(target, "/dev/pts/ptmx") == 0) {
            int copy = swiftpar_pidfd_getfd(pidfd, atoi(entry->d_name));
            if (copy < 0) continue;
            unsigned int number = 0;
            found = ioctl(copy, TIOCGPTN, &number) == 0 && (int)number == terminal;
            close(copy);
        }
    }
    closedir(listing);
    return found;
}

int swiftpar_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_ns) {
    struct timespec timeout = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    // Not FUTEX_PRIVATE_FLAG: the word is shared with other processes.
    return (int)syscall(SYS_futex, address, FUTEX_WAIT, expected, timeout_ns >= 0 ? &timeout : NULL, NULL, 0);
}

int swiftpar_futex_wake(uint32_t *address) {
    return (int)syscall(SYS_futex, address, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

int swiftpar_poll(struct pollfd *descriptors, unsigned long count, int64_t timeout_ns) {
    struct timespec timeout = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    return ppoll(descriptors, (nfds_t)count, timeout_ns >= 0 ? &timeout : NULL, NULL);
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
    for (unsigned i = 0; i < sizeof reset / sizeof reset[0]; i++) {
        // A signal this process was started ignoring stays ignored in its ranks too.
        if (!swiftpar_ignored_at_start(reset[i])) sigaddset(&defaults, reset[i]);
    }
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
        if (swiftpar_ignored_at_start(signals[i])) continue;
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return ends[0];
}

/* Set while swiftpar itself flushes the streams: the SIGTERM handler then writes nothing, since
 * the bytes it would see as pending may be on their way out already. */
static volatile sig_atomic_t swiftpar_flushing = 0;

int swiftpar_flush_standard_output(void) {
    swiftpar_flushing = 1;
    int result = fflush(stdout) == 0 ? 0 : (errno != 0 ? errno : EIO);
    swiftpar_flushing = 0;
    return result;
}

int swiftpar_standard_output_failed(void) {
    int failed = ferror(stdout);
    clearerr(stdout);
    return failed;
}

void swiftpar_flush_all_streams(void) {
    swiftpar_flushing = 1;
    fflush(NULL);
    swiftpar_flushing = 0;
}

/* SIGTERM (how mpirun ends the other ranks when one aborts): write what standard output still
 * holds in its buffer, then die of the signal as before. Only async-signal-safe calls: the
 * buffer's bounds are read from glibc's FILE, whose fields are public. Nothing is written while
 * a flush may be under way (swiftpar's own, or a full buffer being written out), a reader that
 * is gone does not turn the signal into SIGPIPE, and a reader that has stopped reading holds
 * the process for at most half a second. */
/* Set by the first handler that writes: another one (SIGTERM from rank 0 while Ctrl-C's SIGINT
 * is being handled, or a signal taken on a second thread) writes nothing again; the first ends
 * the process. */
static volatile int swiftpar_writing_pending_output = 0;

static void swiftpar_write_pending_output(int signal_number) {
    if (__atomic_exchange_n(&swiftpar_writing_pending_output, 1, __ATOMIC_SEQ_CST)) return;
#ifdef __GLIBC__
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, NULL);
    const char *start = stdout->_IO_write_base, *end = stdout->_IO_write_ptr;
    int busy = swiftpar_flushing || (end != NULL && end == stdout->_IO_buf_end);
    int waits = 0;
    while (!busy && start && end && start < end && waits < 50) {
        struct pollfd ready = {.fd = stdout->_fileno, .events = POLLOUT, .revents = 0};
        if (poll(&ready, 1, 10) <= 0) { waits++; continue; }
        size_t chunk = (size_t)(end - start) < PIPE_BUF ? (size_t)(end - start) : PIPE_BUF;
        ssize_t written = write(stdout->_fileno, start, chunk);
        if (written < 0 && (errno == EINTR || errno == EAGAIN)) { waits++; continue; }
        if (written <= 0) break;
        start += written;
    }
#endif
    raise(signal_number);
}

/* Makes `signal_number` write the pending output before it ends the process, only where it
 * still ends the process by default: a handler of the program's own, or the signal ignored,
 * stays as it is. The three signals block each other while one is handled. Returns 1 when it
 * now does. */
static int write_output_on(int signal_number) {
    struct sigaction previous;
    if (sigaction(signal_number, NULL, &previous) != 0 || previous.sa_handler != SIG_DFL) return 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = swiftpar_write_pending_output;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGINT);
    sigaddset(&action.sa_mask, SIGHUP);
    sigaddset(&action.sa_mask, SIGTERM);
    action.sa_flags = SA_RESETHAND;
    return sigaction(signal_number, &action, NULL) == 0;
}

int swiftpar_write_output_on_termination(void) {
    if (!write_output_on(SIGTERM)) return 0;
    // A rank started with SIGTERM blocked by what started it (a test runner, a supervisor)
    // would otherwise be killed without writing anything when its job is ended. A program that
    // blocked SIGTERM itself (to read it from a signalfd) keeps it blocked.
    if (termination_blocked_at_start) {
        sigset_t only;
        sigemptyset(&only);
        sigaddset(&only, SIGTERM);
        pthread_sigmask(SIG_UNBLOCK, &only, NULL);
    }
    return 1;
}

int swiftpar_write_output_on_interruption(void) {
    return write_output_on(SIGINT) + write_output_on(SIGHUP);
}

// Whether swiftpar_prefer_throughput made this process batch work.
static volatile int batch_set_here = 0;

pid_t swiftpar_spawn_task(const char *path, char *const argv[], char *const envp[], int input, int output, int error) {
    // vfork: the child borrows this process's memory until it execs, so starting a task costs
    // the same whatever this process's size. No signal handler may run in the child: every
    // signal is blocked around the vfork, and the child sets them to their defaults first.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t parent = getpid();
    volatile int child_errno = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        struct sigaction defaults;
        memset(&defaults, 0, sizeof defaults);
        defaults.sa_handler = SIG_DFL;
        for (int number = 1; number < NSIG; number++) {
            if (number != SIGKILL && number != SIGSTOP) sigaction(number, &defaults, NULL);
        }
        setpgid(0, 0);
        // A task is the user's command, not a rank: it is scheduled as usual even when this
        // rank asked for batch scheduling because ranks outnumber the cores (a policy that
        // SCHED_FLAG_RESET_ON_FORK keeps across fork, unlike a real-time one).
        if (batch_set_here) {
            struct sched_param usual = {0};
            sched_setscheduler(0, SCHED_OTHER, &usual);
        }
        // The shell dies with its rank even when nothing else is left to stop it (a batch
        // system that kills a job's processes one by one may kill the guardian first).
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (dup2(input, 0) < 0 || dup2(output, 1) < 0 || dup2(error, 2) < 0) { child_errno = errno; _exit(127); }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        child_errno = errno;
        _exit(127);
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) { errno = saved; return -1; }
    if (child_errno != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = child_errno;
        return -1;
    }
    return pid;
}

#define GUARDED_MAX 65536
static int32_t guarded[GUARDED_MAX];

/// The guardian's life, in the forked child: only async-signal-safe calls from here on.
static void guard_groups(int commands) {
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
    for (unsigned i = 0; i < sizeof ignored / sizeof ignored[0]; i++) sigaction(ignored[i], &ignore, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    // Hold nothing of the parent's open: a pipe's reader must see its end when the parent goes.
    if (commands != 3) { dup2(commands, 3); commands = 3; }
    for (int fd = 0; fd < 3; fd++) close(fd);
    if (syscall(SYS_close_range, 4, ~0U, 0) != 0) {
        for (int fd = 4; fd < 65536; fd++) close(fd);
    }
    int count = 0;
    int32_t buffer[1024];
    while (1) {
        ssize_t got = read(commands, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        for (ssize_t i = 0; i < got / (ssize_t)sizeof(int32_t); i++) {
            int32_t group = buffer[i];
            if (group > 0) {
                if (count < GUARDED_MAX) guarded[count++] = group;
            } else {
                for (int j = count - 1; j >= 0; j--) {
                    if (guarded[j] == -group) { guarded[j] = guarded[--count]; break; }
                }
            }
        }
    }
    if (count == 0) _exit(0);
    for (int j = 0; j < count; j++) kill(-guarded[j], SIGTERM);
    struct timespec step = {0, 10 * 1000 * 1000};
    for (int waited = 0; waited < 20; waited++) {
        int alive = 0;
        for (int j = 0; j < count; j++) {
            if (kill(-guarded[j], 0) == 0) alive = 1;
        }
        if (!alive) _exit(0);
        nanosleep(&step, NULL);
    }
    for (int j = 0; j < count; j++) kill(-guarded[j], SIGKILL);
    _exit(0);
}

int swiftpar_start_guardian(void) {
    int ends[2];
    // A socket pair rather than a pipe: a send to a guardian that is gone fails with EPIPE
    // (MSG_NOSIGNAL) instead of raising SIGPIPE in the rank.
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { int saved = errno; close(ends[0]); close(ends[1]); errno = saved; return -1; }
    if (pid == 0) {
        // A session of its own: a signal to the job's process group does not reach it.
        setsid();
        guard_groups(ends[0]);
    }
    close(ends[0]);
    return ends[1];
}

int swiftpar_pipe(int ends[2]) { return pipe2(ends, O_CLOEXEC); }

static void exit_for_signal(int signal_number) { _exit(128 + signal_number); }

void swiftpar_exit_on_termination_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = exit_for_signal;
    sigemptyset(&action.sa_mask);
    int caught[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (unsigned i = 0; i < sizeof caught / sizeof caught[0]; i++) {
        if (!swiftpar_ignored_at_start(caught[i])) sigaction(caught[i], &action, NULL);
    }
}

int swiftpar_guardian_tell(int descriptor, int32_t group) {
    ssize_t sent;
    do { sent = send(descriptor, &group, sizeof group, MSG_NOSIGNAL); } while (sent < 0 && errno == EINTR);
    return sent == (ssize_t)sizeof group ? 0 : -1;
}

int swiftpar_open_spill_file(const char *directory) {
    int descriptor = open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (descriptor >= 0) return descriptor;
    char name[4096];
    int length = snprintf(name, sizeof name, "%s/swiftpar-held-XXXXXX", directory);
    if (length < 0 || length >= (int)sizeof name) { errno = ENAMETOOLONG; return -1; }
    descriptor = mkostemp(name, O_CLOEXEC);
    if (descriptor < 0) return -1;
    unlink(name);
    return descriptor;
}

int swiftpar_punch_hole(int descriptor, int64_t offset, int64_t length) {
    return fallocate(descriptor, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}

#ifndef SWIFTPAR_COMMIT
#define SWIFTPAR_COMMIT ""
#endif

const char *swiftpar_build_commit(void) { return SWIFTPAR_COMMIT; }

// struct sched_attr of sched_setattr(2), as the kernel defines it (glibc declares neither).
struct swiftpar_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

int swiftpar_prefer_throughput(uint64_t slice_ns) {
#ifdef SYS_sched_setattr
    struct swiftpar_sched_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.sched_policy = 3;   // SCHED_BATCH
    attr.sched_flags = 1;    // SCHED_FLAG_RESET_ON_FORK: children start as usual
    attr.sched_runtime = slice_ns;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) == 0) { batch_set_here = 1; return 0; }
    if (slice_ns == 0) return -1;
    // Kernels without custom slices for normal tasks: batch scheduling alone.
    attr.sched_runtime = 0;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) return -1;
    batch_set_here = 1;
    return 0;
#else
    (void)slice_ns;
    return -1;
#endif
}

int swiftpar_is_main_thread(void) { return gettid() == getpid(); }

int swiftpar_semaphore_wait(sem_t *semaphore, int64_t timeout_ns) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ns / 1000000000;
    deadline.tv_nsec += timeout_ns % 1000000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000;
    }
    return sem_clockwait(semaphore, CLOCK_MONOTONIC, &deadline);
}

int swiftpar_available_cpus(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    long configured = sysconf(_SC_NPROCESSORS_CONF);
    // A mask large enough for every CPU the kernel may number, grown if the kernel says so.
    for (long cpus = configured > 1024 ? configured : 1024; cpus <= (1L << 20); cpus *= 2) {
        cpu_set_t *set = CPU_ALLOC(cpus);
        if (set == NULL) break;
        size_t bytes = CPU_ALLOC_SIZE(cpus);
        CPU_ZERO_S(bytes, set);
        if (sched_getaffinity(0, bytes, set) == 0) {
            int count = CPU_COUNT_S(bytes, set);
            CPU_FREE(set);
            if (count > 0) return count;
            break;
        }
        int failure = errno;
        CPU_FREE(set);
        if (failure != EINVAL) break;
    }
    return online > 0 ? (int)online : 1;
}

/* Process 1 of a PID namespace (a container's command, started without --init) has two duties
 * no other process has: it adopts every process whose parent ends, and must reap them, or they
 * stay as zombies until the container ends; and the kernel drops any signal it has no handler
 * for, so `docker stop`'s SIGTERM would do nothing to a program that relies on the default
 * action. swiftpar makes orphans as a matter of course (a task's `cmd &` outlives its shell),
 * so as process 1 it forks: the parent stays process 1 and does only those duties, the child is
 * the program. */
int swiftpar_run_under_init_if_first_process(void) {
    if (getpid() != 1) return 0;
    sigset_t waited, previous;
    sigfillset(&waited);
    // This process's own faults keep their default action (one of these sent from outside
    // ends this process, and with it the namespace, as it would end tini).
    int synchronous[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (unsigned i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++) sigdelset(&waited, synchronous[i]);
    // Blocked before the fork, so that no signal between the fork and the wait is lost.
    if (sigprocmask(SIG_BLOCK, &waited, &previous) != 0) return -1;
    pid_t program = fork();
    if (program < 0) {
        int saved = errno;
        sigprocmask(SIG_SETMASK, &previous, NULL);
        errno = saved;
        return -1;
    }
    if (program == 0) {
        sigprocmask(SIG_SETMASK, &previous, NULL);
        return 0;
    }
    // Holding the program's standard streams, or any pipe it inherited, would keep a reader
    // of its output from seeing the end of it when the program closes them.
    int nothing = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nothing >= 0) {
        for (int stream = 0; stream < 3; stream++) dup2(nothing, stream);
        if (nothing > 2) close(nothing);
    }
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
#endif
    {
        for (int descriptor = 3; descriptor < 4096; descriptor++) close(descriptor);
    }
    for (;;) {
        siginfo_t info;
        int signal_number = sigwaitinfo(&waited, &info);
        if (signal_number < 0) continue;
        if (signal_number == SIGCHLD) {
            int status;
            pid_t ended;
            while ((ended = waitpid(-1, &status, WNOHANG)) > 0) {
                if (ended != program) continue;
                // Whatever is left of the namespace ends with this process.
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            }
            continue;
        }
        // The keys of the terminal signal its whole foreground group, the program included: not
        // passed on again. Everything else is (a hang-up reaches only the session leader, which
        // this process may be; a signal sent to a whole group arrives twice, which swiftpar's
        // handling of it allows).
        int from_keyboard = signal_number == SIGINT || signal_number == SIGQUIT || signal_number == SIGTSTP || signal_number == SIGWINCH;
        if (!(info.si_code == SI_KERNEL && from_keyboard)) kill(program, signal_number);
    }
}

int swiftpar_thread_schedule(uint64_t *on_cpu, uint64_t *waiting_for_cpu) {
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char text[96];
    ssize_t got;
    do { got = read(fd, text, sizeof text - 1); } while (got < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (got <= 0) { errno = got < 0 ? saved : EIO; return -1; }
    text[got] = 0;
    unsigned long long cpu, delay;
    if (sscanf(text, "%llu %llu", &cpu, &delay) != 2) { errno = EIO; return -1; }
    // The file's CPU time leaves out what the running thread used since the last tick; this
    // clock counts it.
    struct timespec used;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &used) != 0) return -1;
    *on_cpu = (uint64_t)used.tv_sec * 1000000000u + (uint64_t)used.tv_nsec;
    *waiting_for_cpu = delay;
    return 0;
}
