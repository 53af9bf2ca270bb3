// The Linux calls swiftpar needs that Swift's Glibc module cannot reach by itself: variadic
// ones (prctl, syscall), and headers it leaves out (signalfd, futex). One small function each.
#ifndef SWIFTPAR_LINUX_H
#define SWIFTPAR_LINUX_H

#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/types.h>

/// prctl(PR_SET_PDEATHSIG): the kernel sends `signal_number` to this process when its parent dies.
int swiftpar_set_parent_death_signal(int signal_number);

/// glibc's malloc tuning (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD).
void swiftpar_keep_large_buffers(int mmap_threshold, int trim_threshold);

/// memcpy of `count` bytes between buffers that do not overlap, except when the destination
/// lies 1 to 63 bytes past the source within a 4 KiB page (counting modulo 4096) and the copy
/// is 2 KiB or more: then in pieces of 2 KiB. glibc before 2.39 copies 2 KiB or more with
/// `rep movsb` on AMD processors, which runs at a fifteenth of its usual speed at 1 to 15 bytes
/// and slower up to 63 (3.4 and 35 against 52 GB/s for 64 KiB).
void swiftpar_copy_bytes(void *destination, const void *source, size_t count);

/// Where the first multiple of each large prime at or after `start` (< 2^62) falls in a block
/// whose byte 0 is wheel byte `base_byte`: for each of `count` primes p = 30a + residue, given
/// as `a << 3 | class`, the multiplier q = max(⌈start / p⌉, p if `clamped`) is rounded up to
/// one coprime to 30, 30c + wheel[j]; its place is the byte of that multiple (c·p +
/// a·wheel[j] + ⌊residue·wheel[j]/30⌋ − base_byte) and its entry `a << 6 | class << 3 | j`.
/// Only the primes whose place, taken as unsigned, is below `limit` are kept: their places and
/// entries go to the front of `places` and `entries`, in order, and the count kept is returned
/// (`UINT64_MAX` keeps all but a place of −1). `entries` may be `packed` itself; both arrays
/// hold `count` values. Eight primes at a time where the processor has AVX-512F and AVX-512DQ.
long swiftpar_place_large_primes(const uint64_t *packed, int64_t *places, uint64_t *entries, long count,
                                 int64_t start, int64_t base_byte, int clamped, uint64_t limit);

/// The same, one prime at a time, whatever the processor (the fallback, and a check for tests).
long swiftpar_place_large_primes_one_at_a_time(const uint64_t *packed, int64_t *places, uint64_t *entries, long count,
                                               int64_t start, int64_t base_byte, int clamped, uint64_t limit);

/// The numbers whose bits are set in `word_count` words of a sieve, as `a << 3 | class` for
/// p = 30a + residue: bit b of word w stands for a = `base_a` + 8w + b / 8, class b % 8. Writes
/// them to `found` in order and returns how many; `found` needs room for 7 more than that
/// (the vector code stores eight at a time). With AVX-512 VBMI2, one compress per word.
long swiftpar_gather_primes(const uint64_t *words, long word_count, uint64_t base_a, uint64_t *found);

/// The same, one bit at a time, whatever the processor (the fallback, and a check for tests).
long swiftpar_gather_primes_one_at_a_time(const uint64_t *words, long word_count, uint64_t base_a, uint64_t *found);

/// pidfd_open(2): a descriptor for process `pid`, or -1 with errno set.
int swiftpar_pidfd_open(pid_t pid);

/// pidfd_getfd(2): a copy, in this process, of descriptor `target` of the process behind `pidfd`.
int swiftpar_pidfd_getfd(int pidfd, int target);

/// Whether this process's `descriptor` is a channel whose other end process `pid` (behind
/// `pidfd`) holds: a pipe it also has open, or a pseudo-terminal whose master it has open.
/// 1 if so, 0 if not (also for a descriptor of any other kind), -1 if its descriptors cannot be
/// listed.
int swiftpar_process_holds_other_end(pid_t pid, int pidfd, int descriptor);

/// Sleeps while the 32-bit word at `address` (in memory shared between processes) holds
/// `expected`, for at most `timeout_ns` nanoseconds. Returns 0 when woken or when the word
/// differs, -1 with errno (ETIMEDOUT, EINTR, EAGAIN) otherwise.
int swiftpar_futex_wait(uint32_t *address, uint32_t expected, int64_t timeout_ns);

/// Wakes every process sleeping on the word at `address`.
int swiftpar_futex_wake(uint32_t *address);

/// memfd_create(2) with MFD_CLOEXEC: anonymous memory with a descriptor and no name in any file system.
int swiftpar_memfd_create(const char *label);

/// Starts `path` with `argv` and `envp` as a new process (posix_spawn), keeping descriptor
/// `keep_descriptor` open in it under the same number, with every signal unblocked and
/// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE and SIGCHLD at their default actions.
/// Returns the child's pid, or -1 with errno set.
pid_t swiftpar_spawn(const char *path, char *const argv[], char *const envp[], int keep_descriptor);

/// Sets `signal_number` to its default action, unless it is ignored (as a shell without job
/// control starts a background job with SIGINT and SIGQUIT ignored).
void swiftpar_default_action_unless_ignored(int signal_number);

/// Kills the processes `pids` and every process descended from them. Each is stopped first
/// and the tree is read again, so that none can start a process that escapes; then the roots
/// get SIGKILL, and their descendants SIGTERM, then SIGKILL if still there after 250 ms.
/// Processes are found through /proc. Returns how many descendants there were.
int swiftpar_kill_with_descendants(const pid_t *pids, int count);

/// Catches each of `signals` (from any thread) by writing its number as one byte to a pipe,
/// and returns the pipe's reading end (non-blocking, close-on-exec), or -1 with errno set.
/// For a process that already runs threads, where a signalfd cannot catch signals reliably.
int swiftpar_forward_signals_to_pipe(const int *signals, int count);

/// fflush(stdout): 0, or the errno of the failed write.
int swiftpar_flush_standard_output(void);

/// Whether a write to stdout has failed since the last check (ferror), clearing the flag.
int swiftpar_standard_output_failed(void);

/// Whether SIGINT, SIGTERM, SIGHUP or SIGQUIT was set to be ignored when the process started.
int swiftpar_ignored_at_start(int signal_number);

/// Ends the process by `signal_number`'s default action (no core dump), as a program the signal
/// killed: the shell then stops a loop or script on Ctrl-C. Falls back to exit 128 + signal.
void swiftpar_die_of_signal(int signal_number) __attribute__((noreturn));

/// The number of CPUs this process may run on (its affinity mask, as taskset, Slurm and
/// cgroup cpusets set it); the online CPUs when the mask cannot be read; at least 1.
int swiftpar_available_cpus(void);

/// fflush(NULL): every stdio stream, before a fork or an exit that skips stdio's own flush.
void swiftpar_flush_all_streams(void);
/// On SIGTERM, writes what standard output's buffer holds before the signal ends the process.
/// 1 when it does, 0 when the process has a SIGTERM handler of its own or ignores SIGTERM (it
/// is then left as it is).
int swiftpar_write_output_on_termination(void);
/// The same for SIGINT and SIGHUP, where they are at their default action: a local rank that
/// Ctrl-C (sent to the whole process group) or a hang-up ends writes what it printed first, as
/// the ranks mpirun ends with SIGTERM do. Returns how many of the two it now handles.
int swiftpar_write_output_on_interruption(void);

/// Starts task `path` with `argv` and `envp` in a process group of its own, with its standard
/// input, output and error on `input`, `output` and `error`, every signal unblocked and at its
/// default action, and SIGKILL for it when the calling thread's process dies
/// (PR_SET_PDEATHSIG). Returns the child's pid, or -1 with errno set (also when exec failed).
pid_t swiftpar_spawn_task(const char *path, char *const argv[], char *const envp[], int input, int output, int error);

/// Starts a guardian: a small child process that outlives this one only to clean up. Tell it a
/// process group id (swiftpar_guardian_tell, positive) to put the group in the guardian's care,
/// its negative to take it back. When every copy of the descriptor is closed
/// (this process ended, however it ended), the guardian sends SIGTERM to each group in its care,
/// SIGKILL to those still alive 200 ms later, and exits. Returns the descriptor (close-on-exec),
/// or -1 with errno set.
int swiftpar_start_guardian(void);

/// ppoll(2) with a timeout in nanoseconds (poll(2) counts whole milliseconds; a negative
/// timeout waits without limit): the number of descriptors with events, 0 when the time ran
/// out, -1 with errno set.
int swiftpar_poll(struct pollfd *descriptors, unsigned long count, int64_t timeout_ns);

/// Whether the calling thread is the process's first (main) thread.
int swiftpar_is_main_thread(void);

/// Waits on `semaphore` at most `timeout_ns` nanoseconds on the monotonic clock: 0 once taken,
/// -1 with errno ETIMEDOUT when the time ran out (or EINTR).
int swiftpar_semaphore_wait(sem_t *semaphore, int64_t timeout_ns);

/// pipe2(2) with O_CLOEXEC: 0, or -1 with errno set.
int swiftpar_pipe(int ends[2]);

/// As process 1 of a PID namespace (a container's command without an init): forks, and in the
/// parent stays process 1 for good, reaping every process it adopts and passing on the signals
/// other processes send it, until the child ends; then exits with the child's status (128 + the
/// signal if a signal ended it). Returns 0 in the child, and at once (0) in any other process;
/// -1 with errno set if the fork failed.
int swiftpar_run_under_init_if_first_process(void);

/// Makes SIGINT, SIGTERM, SIGHUP and SIGQUIT end this process at once with exit status 128 + the signal,
/// as a shell reports a command a signal stopped (for a launcher such as mpirun to pass on).
void swiftpar_exit_on_termination_signals(void);

/// A file for bytes kept for later: unlinked from the start (O_TMPFILE in `directory`, or a
/// name made and removed at once), read-write, close-on-exec. -1 with errno set on failure.
int swiftpar_open_spill_file(const char *directory);

/// Frees the disk blocks of a range of a file without changing its size (a hole); 0 or -1.
int swiftpar_punch_hole(int descriptor, int64_t offset, int64_t length);

/// Sends a process group id to a guardian (see swiftpar_start_guardian) without SIGPIPE when
/// the guardian is gone; 0, or -1 with errno set.
int swiftpar_guardian_tell(int descriptor, int32_t group);

/// Asks the scheduler to run the calling thread as batch work (SCHED_BATCH: no preemption in
/// favour of tasks that just woke), for ranks that share cores; with `slice_ns` > 0, also in
/// time slices of that length where the kernel lets normal tasks choose theirs (Linux 6.12 and
/// later, up to 100 ms). Threads and processes it starts inherit the policy, except the tasks
/// of swiftpar_spawn_task, which are scheduled as usual. 0 on success, -1 with errno set.
int swiftpar_prefer_throughput(uint64_t slice_ns);

/// The calling thread's time so far: nanoseconds on a CPU in *on_cpu (its CPU-time clock), and
/// nanoseconds it was ready to run but waited for a CPU in *waiting_for_cpu (from
/// /proc/thread-self/schedstat). 0 on success, -1 with errno set (a kernel without scheduler
/// statistics).
int swiftpar_thread_schedule(uint64_t *on_cpu, uint64_t *waiting_for_cpu);

/// Tells the processor that this thread is spinning in a wait loop (x86 PAUSE, Arm YIELD): on
/// a core shared with another hardware thread, that thread gets the core's resources meanwhile,
/// and a spinning rank no longer slows down the rank it waits for.
static inline void swiftpar_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Asks the processor to bring the cache line at `address` in for writing, ahead of use.
static inline void swiftpar_prefetch_for_write(const void *address) {
    __builtin_prefetch(address, 1, 3);
}

/// The git commit this build was made from (Launch/build-release.sh passes it as
/// -DSWIFTPAR_COMMIT), or "" for a build that did not say.
const char *swiftpar_build_commit(void);

#endif
