import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Output that waits for its turn to print: in memory up to a limit for all of it together,
/// beyond that in one unlinked file in `TMPDIR` (node-local scratch on clusters), whose blocks
/// are freed as soon as what they held is printed. Tasks never wait for printing, so a slow or
/// chatty task holds up neither the other slots nor its own timeout.
final class HeldOutput {
    /// A piece of held output: its bytes, or where they are in the file.
    enum Piece {
        case memory(stream: Int32, bytes: [UInt8])
        case file(stream: Int32, offset: Int64, count: Int)
    }

    private let memoryLimit: Int
    private(set) var bytesInMemory = 0
    private var descriptor: Int32 = -1
    private var fileEnd: Int64 = 0
    private var bytesInFile: Int64 = 0

    init(memoryLimit: Int = 64 << 20) {
        self.memoryLimit = memoryLimit
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Keeps `bytes` and says where.
    func keep(_ bytes: [UInt8], stream: Int32) throws -> Piece {
        if bytesInMemory + bytes.count <= memoryLimit || bytes.isEmpty {
            bytesInMemory += bytes.count
            return .memory(stream: stream, bytes: bytes)
        }
        if descriptor < 0 {
            let directory = currentEnvironment()["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
            descriptor = swiftpar_open_spill_file(directory)
            guard descriptor >= 0 else { throw SystemError.current("creating a file in \(directory) for output waiting to be printed") }
        }
        // Pieces start on a block boundary, so the blocks of a printed piece can be freed whole.
        let offset = (fileEnd + 4095) & ~4095
        try bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count {
                let written = pwrite(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw SystemError.current("writing output waiting to be printed to TMPDIR")
                }
                done += written
            }
        }
        fileEnd = offset + Int64(bytes.count)
        bytesInFile += Int64(bytes.count)
        return .file(stream: stream, offset: offset, count: bytes.count)
    }

    /// Hands `piece`'s bytes to `body`, a megabyte at a time, and lets go of them.
    func release(_ piece: Piece, _ body: ([UInt8]) throws -> Void) throws {
        switch piece {
        case .memory(_, let bytes):
            bytesInMemory -= bytes.count
            try body(bytes)
        case .file(_, let offset, let count):
            var done = 0
            while done < count {
                let size = min(1 << 20, count - done)
                var chunk = [UInt8](repeating: 0, count: size)
                let got = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, size, off_t(offset) + off_t(done)) }
                if got < 0 && errno == EINTR { continue }
                guard got > 0 else { throw SystemError.current("reading back output waiting to be printed from TMPDIR") }
                chunk.removeLast(size - got)
                try body(chunk)
                done += got
            }
            forget(piece)
        }
    }

    /// Lets go of a piece without reading it.
    func forget(_ piece: Piece) {
        switch piece {
        case .memory(_, let bytes):
            bytesInMemory -= bytes.count
        case .file(_, let offset, let count):
            bytesInFile -= Int64(count)
            if bytesInFile == 0 {
                // Nothing held in the file: start it again from nothing.
                _ = ftruncate(descriptor, 0)
                fileEnd = 0
            } else {
                _ = swiftpar_punch_hole(descriptor, offset, (Int64(count) + 4095) & ~4095)
            }
        }
    }
}

extension HeldOutput.Piece {
    var stream: Int32 {
        switch self {
        case .memory(let stream, _), .file(let stream, _, _): return stream
        }
    }
}
