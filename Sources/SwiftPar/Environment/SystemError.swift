#if canImport(Glibc)
import Glibc
#endif

/// An operating-system call failed: what swiftpar was doing, and the error the system gave.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What was being done: "fork of rank 3", "mmap of 4096 bytes of shared memory".
    public let operation: String
    /// The `errno` value.
    public let code: Int32

    /// An error for `operation` with the error number `code`.
    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// An error for `operation` with the current `errno`.
    public static func current(_ operation: String) -> SystemError {
        SystemError(operation, code: errno)
    }

    /// "fork of rank 3 failed: Resource temporarily unavailable".
    public var description: String { "\(operation) failed: \(String(cString: strerror(code)))" }
}

/// The text of a NUL-terminated C string held in an array.
func stringFromCString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
