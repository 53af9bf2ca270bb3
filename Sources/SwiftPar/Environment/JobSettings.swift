import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// Settings a job reads from its environment at start, checked before anything starts, the
/// same way on every backend: a bad value is a usage error, never silently ignored.
struct JobSettings: Sendable {
    /// `SWIFTPAR_STALL_TIMEOUT`: seconds a rank may wait in one operation before the job ends
    /// naming the ranks that made no progress; nil (the default) waits as long as it takes.
    var stallTimeout: Double?
    /// `SWIFTPAR_MPI_MESSAGE_LIMIT`: bytes from which MPI messages are split (default 1 GiB).
    var mpiMessageLimit: Int
    /// `SWIFTPAR_START`: how the local backend starts its ranks; nil (`auto`) forks when this
    /// process runs a single thread and spawns otherwise.
    var start: StartMethod?
    /// `SWIFTPAR_SCHEDULING`: `auto` (the default) runs ranks that share cores with other ranks
    /// of the job as batch work (no preemption by ranks that just woke; time slices of the
    /// usual length); `normal` leaves the scheduler alone.
    var batchWhenSharingCores = true
    /// `SWIFTPAR_MPI_THREAD_LEVEL`: the thread support asked of `MPI_Init_thread`, by name
    /// (`serialized` unless told).
    var mpiThreadLevel = "serialized"

    /// The names `SWIFTPAR_MPI_THREAD_LEVEL` takes, in MPI's order.
    static let mpiThreadLevels = ["single", "funneled", "serialized", "multiple"]

    static let defaultMessageLimit = 1 << 30

    static func fromEnvironment(_ environment: [String: String] = currentEnvironment(), stallTimeout: Double? = nil) throws -> JobSettings {
        var settings = JobSettings(stallTimeout: nil, mpiMessageLimit: defaultMessageLimit, start: nil)
        if let text = environment["SWIFTPAR_START"], !text.isEmpty, text != "auto" {
            guard let method = StartMethod(rawValue: text) else {
                throw SwiftParUsageError("SWIFTPAR_START=\(text) is not one of auto, fork, spawn")
            }
            settings.start = method
        }
        if let text = environment["SWIFTPAR_SCHEDULING"], !text.isEmpty {
            guard text == "auto" || text == "normal" else {
                throw SwiftParUsageError("SWIFTPAR_SCHEDULING=\(text) is not one of auto, normal")
            }
            settings.batchWhenSharingCores = text == "auto"
        }
        if let text = environment["SWIFTPAR_MPI_MESSAGE_LIMIT"], !text.isEmpty {
            guard let value = Int(text), value >= 64, value <= Int(Int32.max) else {
                throw SwiftParUsageError("SWIFTPAR_MPI_MESSAGE_LIMIT=\(text) is not a number of bytes from 64 to \(Int32.max)")
            }
            settings.mpiMessageLimit = value
        }
        if let text = environment["SWIFTPAR_MPI_THREAD_LEVEL"], !text.isEmpty {
            // Checked on every backend, so that a job's settings are wrong or right wherever it runs.
            guard mpiThreadLevels.contains(text.lowercased()) else {
                throw SwiftParUsageError("SWIFTPAR_MPI_THREAD_LEVEL=\(text) is not one of \(mpiThreadLevels.joined(separator: ", "))")
            }
            settings.mpiThreadLevel = text.lowercased()
        }
        if let text = environment["SWIFTPAR_DIRECT_OUTPUT"], !text.isEmpty, text != "0", text != "1" {
            throw SwiftParUsageError("SWIFTPAR_DIRECT_OUTPUT=\(text) is not 0 or 1")
        }
        if let stallTimeout {
            settings.stallTimeout = try checkedStallTimeout(stallTimeout, source: "the stall timeout")
        } else if let text = environment["SWIFTPAR_STALL_TIMEOUT"], !text.isEmpty {
            guard let value = Double(text) else {
                throw SwiftParUsageError("SWIFTPAR_STALL_TIMEOUT=\(text) is not a number of seconds")
            }
            settings.stallTimeout = try checkedStallTimeout(value, source: "SWIFTPAR_STALL_TIMEOUT=\(text)")
        }
        return settings
    }

    /// Ranks of the job on this host, `ranksOnHost` of them, share its cores when they
    /// outnumber them. Each then asks to be scheduled as batch work (SCHED_BATCH, see
    /// `swiftpar_prefer_throughput`), unless the settings say not to: a rank that wakes no
    /// longer preempts one that computes, whose caches another rank's data would refill — that
    /// made 4 ranks on 2 cores slower than 2. Time slices keep their usual length: longer ones
    /// delay the replies that waiting ranks, and other programs, need.
    func shareCores(ranksOnHost: Int) {
        guard batchWhenSharingCores, ranksOnHost > SwiftPar.onlineCores else { return }
        _ = swiftpar_prefer_throughput(0)
    }

    private static func checkedStallTimeout(_ value: Double, source: String) throws -> Double? {
        guard value.isFinite, value >= 0 else { throw SwiftParUsageError("\(source) must be a number of seconds, 0 for none") }
        return value == 0 ? nil : value
    }
}

/// How the local backend starts ranks 1…N−1.
enum StartMethod: String, Sendable {
    /// `fork()`: the ranks are copies of this process at the moment `run` was called. Only
    /// safe while the process runs a single thread.
    case fork
    /// The program is started again (`/proc/self/exe`, same arguments and environment) once
    /// per rank; each new process runs `main` up to `SwiftPar.run` and joins the job there.
    case spawn
}
