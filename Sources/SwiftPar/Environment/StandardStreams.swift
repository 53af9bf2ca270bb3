import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// Standard output written with every error checked, as command-line tools must: a full disk
/// or a closed descriptor is an error, never a silently shortened file.
///
/// `SwiftPar.run` also checks what `print` wrote before each rank exits, so a program that
/// prints its results and then fails to flush them ends with an error and a non-zero status.
public enum StandardOutput {
    /// Writes all of `bytes` to standard output (descriptor 1), retrying short writes.
    ///
    /// Throws `SystemError` (operation "write to standard output") when the system refuses the
    /// bytes. A reader that has gone away (a closed pipe, `| head -1`) ends the process quietly
    /// with SIGPIPE, as coreutils do.
    public static func write(_ bytes: UnsafeRawBufferPointer) throws {
        // Text printed with `print` before comes first.
        let flushed = swiftpar_flush_standard_output()
        if flushed != 0 { throw failure(flushed) }
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw failure(errno)
            }
            offset += written
        }
    }

    /// Writes `text` as UTF-8 to standard output; see `write(_:)` for bytes.
    public static func write(_ text: String) throws {
        var copy = text
        try copy.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    /// How messages name where standard output goes: "standard output", or the file a
    /// command's `--output` pointed it at.
    nonisolated(unsafe) package static var destinationName = "standard output"

    /// Whether standard output was pointed at a file of the command's own (`--output`).
    package static var isRedirected: Bool { destinationName != "standard output" }

    static func failure(_ code: Int32) -> SystemError {
        if code == EPIPE { endWithBrokenPipe() }
        return SystemError("write to \(destinationName)", code: code)
    }

    /// Ends the process as a write to a closed pipe does by default, quietly.
    static func endWithBrokenPipe() -> Never {
        signal(SIGPIPE, SIG_DFL)
        raise(SIGPIPE)
        _exit(128 + SIGPIPE)
    }

    /// Flushes what `print` wrote and reports whether it all reached standard output.
    package static func flushChecked() -> SystemError? {
        let flushed = swiftpar_flush_standard_output()
        if flushed != 0 { return failure(flushed) }
        if swiftpar_standard_output_failed() != 0 { return failure(EIO) }
        return nil
    }
}

package enum StandardStreams {
    /// Points any of descriptors 0, 1 and 2 that is closed at /dev/null opened the wrong way
    /// round, so writes to a closed standard output fail (EBADF) instead of landing in whatever
    /// file the process opens next.
    static func ensureOpen() {
        for descriptor: Int32 in [0, 1, 2] where fcntl(descriptor, F_GETFD) < 0 && errno == EBADF {
            let mode = descriptor == 0 ? O_WRONLY : O_RDONLY
            let opened = open("/dev/null", mode | O_CLOEXEC)
            if opened >= 0 && opened != descriptor {
                dup2(opened, descriptor)
                close(opened)
            }
        }
    }

    /// Under mpirun, why rank 0's standard input, which Open MPI forwards from mpirun's, must
    /// not be taken as whole now that it has ended: the forwarding ends it alike when mpirun's
    /// own input ends, when mpirun cannot read it (a directory) and when mpirun is interrupted.
    /// Looks at mpirun's input without reading it: a directory; a pipe whose writer is still
    /// there with nothing left to read (POLLHUP not set); a file not read to its end. Nil when
    /// the input did end, when that cannot be told (a terminal, a device), when mpirun did not
    /// start this process on this host, or when this process's input is not the one mpirun
    /// passes on (a wrapper in between gave it another).
    package static func launcherInputCutShort() -> String? {
        guard let ancestry = launcherAncestry() else { return nil }
        // Open MPI passes rank 0 its input through a pipe, which every wrapper in between kept.
        var own = stat()
        guard fstat(0, &own) == 0, own.st_mode & S_IFMT == S_IFIFO,
              ancestry.between.allSatisfy({ holdsSameFile(process: $0, descriptor: 0, as: own) }) else { return nil }
        let launcher = swiftpar_pidfd_open(ancestry.pid)
        guard launcher >= 0 else { return nil }
        defer { close(launcher) }
        let copy = swiftpar_pidfd_getfd(launcher, 0)
        guard copy >= 0 else { return nil }
        defer { close(copy) }
        var info = stat()
        guard fstat(copy, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            return String(cString: strerror(EISDIR))
        case S_IFREG:
            let offset = lseek(copy, 0, SEEK_CUR)
            return offset >= 0 && offset < info.st_size ? "mpirun stopped passing it on before its end (interrupted?)" : nil
        case S_IFIFO:
            // Writers gone and nothing left: POLLHUP without POLLIN.
            var check = pollfd(fd: copy, events: Int16(POLLIN), revents: 0)
            guard poll(&check, 1, 0) >= 0 else { return nil }
            let ended = check.revents & Int16(POLLHUP) != 0 && check.revents & Int16(POLLIN) == 0
            return ended ? nil : "mpirun stopped passing it on before its end (interrupted?)"
        case S_IFSOCK:
            // A socket whose peer has closed reads as its end (0) when peeked at; one with more
            // to read, or none yet, has not ended.
            var byte: UInt8 = 0
            let peeked = recv(copy, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK { return nil }
            return peeked == 0 ? nil : "mpirun stopped passing it on before its end (interrupted?)"
        default:
            return nil
        }
    }

    /// The launchers whose output forwarding drops write errors, by program name.
    private static let launcherNames: Set<String> = ["mpirun", "mpiexec", "orterun", "prterun"]

    /// mpirun's process id and arguments when it started this process on this host, as its
    /// parent or through wrappers that stayed in between (a shell script, `timeout`), which are
    /// `between`, nearest first; nil otherwise.
    private static func launcherAncestry() -> (pid: pid_t, arguments: [String], between: [pid_t])? {
        var between: [pid_t] = []
        var process = getppid()
        // mpirun may be process 1 itself (a container's command).
        while process >= 1 && between.count < 16 {
            let command = (try? readWholeFile("/proc/\(process)/cmdline")) ?? []
            let arguments = command.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if let program = arguments.first?.split(separator: "/").last, launcherNames.contains(String(program)) {
                return (process, arguments, between)
            }
            if process == 1 { return nil }
            between.append(process)
            guard let parent = parentProcess(of: process) else { return nil }
            process = parent
        }
        return nil
    }

    /// The parent of `process`: the field after its state in /proc/PID/stat.
    private static func parentProcess(of process: pid_t) -> pid_t? {
        guard let fields = processStatusFields(Int(process)), fields.count > 1 else { return nil }
        return pid_t(String(decoding: fields[1], as: UTF8.self))
    }

    /// Whether descriptor `descriptor` of `process` is the file `file` describes.
    private static func holdsSameFile(process: pid_t, descriptor: Int32, as file: stat) -> Bool {
        var theirs = stat()
        guard stat("/proc/\(process)/fd/\(descriptor)", &theirs) == 0 else { return false }
        return theirs.st_dev == file.st_dev && theirs.st_ino == file.st_ino
    }

    /// Under mpirun, rank 0 writes its standard output and error straight to mpirun's instead of
    /// through Open MPI's forwarding, which drops write errors (mpirun exits 0 with its output
    /// cut short on a full disk) and delivers the two streams each in its own time (so a file
    /// given both, `> log 2>&1`, got them in another order than written). It takes copies of
    /// mpirun's descriptors 1 and 2 (pidfd_getfd) when mpirun started it on this host, itself or
    /// through wrappers, and forwards nothing itself (no --tag-output, --timestamp-output, --xml
    /// or --output-filename); each stream only if it is still the forwarding's (a pipe or a
    /// pseudo-terminal whose other end mpirun holds), not a file or a pipe a wrapper gave it.
    /// `SWIFTPAR_DIRECT_OUTPUT=0` turns this off.
    package static func adoptLauncherOutput() {
        guard getenvString("SWIFTPAR_DIRECT_OUTPUT") != "0" else { return }
        // The same settings made in the environment (or a parameter file, which mpirun passes
        // on to the ranks' environment).
        let settings = ["OMPI_MCA_orte_tag_output", "OMPI_MCA_orte_timestamp_output", "OMPI_MCA_orte_xml_output",
                        "OMPI_MCA_orte_output_filename", "OMPI_MCA_iof_base_redirect_app_stderr_to_stdout"]
        guard !settings.contains(where: { name in getenvString(name).map { !["", "0", "false", "no"].contains($0.lowercased()) } ?? false }) else { return }
        let decorating = ["tag-output", "tag_output", "timestamp", "xml", "output-filename", "output_filename",
                          "merge-stderr-to-stdout", "redirect_app_stderr_to_stdout"]
        guard let ancestry = launcherAncestry(),
              !ancestry.arguments.contains(where: { argument in decorating.contains { argument.contains($0) } }) else { return }
        let process = swiftpar_pidfd_open(ancestry.pid)
        guard process >= 0 else { return }
        defer { close(process) }
        // Output and errors made one stream on the way (a wrapper's `2>&1`) stay as they were:
        // which of mpirun's two that stream is cannot be told.
        var output = stat(), errors = stat()
        if fstat(1, &output) == 0 && fstat(2, &errors) == 0 && output.st_dev == errors.st_dev && output.st_ino == errors.st_ino { return }
        swiftpar_flush_all_streams()
        // A file the command was given for its output (`--output`) stays where it is.
        for descriptor: Int32 in StandardOutput.isRedirected ? [2] : [1, 2]
        where swiftpar_process_holds_other_end(ancestry.pid, process, descriptor) == 1 {
            let copy = swiftpar_pidfd_getfd(process, descriptor)
            guard copy >= 0 else { continue }
            var info = stat()
            if fstat(copy, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK {
                // mpirun's own stream may be closed and its number reused for one of its
                // sockets: the forwarding is kept.
                close(copy)
                continue
            }
            // The forwarding's own pipe stays open, unused, until the process ends: once both
            // of a rank's output pipes close, Open MPI takes the rank's input and output as
            // done and stops passing it standard input.
            _ = fcntl(descriptor, F_DUPFD_CLOEXEC, 3)
            let mode = fcntl(copy, F_GETFL)
            if mode >= 0 && mode & O_ACCMODE == O_RDONLY {
                // mpirun's own stream is closed (it reuses the number for a pipe it reads).
                close(copy)
                let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
                if null >= 0 {
                    dup2(null, descriptor)
                    close(null)
                }
                continue
            }
            dup2(copy, descriptor)
            close(copy)
        }
    }
}

/// The whole content of a small file, such as one under /proc.
func readWholeFile(_ path: String) throws -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw SystemError.current("open \(path)") }
    defer { close(descriptor) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(descriptor, &buffer, buffer.count)
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemError.current("read \(path)")
        }
        if n == 0 { return result }
        result.append(contentsOf: buffer[..<n])
    }
}
