import CSwiftParLinux

// glibc before 2.39 copies 2 KiB or more with `rep movsb` on AMD processors, and there it runs
// at a fifteenth of its usual speed when the destination lies 1 to 15 bytes past the source
// within a 4 KiB page, and at about two thirds up to 63 (3.4 and 35 against 52 GB/s for 64 KiB
// on the 2-core EPYC host). Where messages land is up to the ring's write position and the
// allocator, so any message may meet such a distance. The copies of message bytes go through
// `swiftpar_copy_bytes`, which cuts such copies into pieces small enough for glibc's vector
// loop.

extension UnsafeMutableRawPointer {
    /// Copies `byteCount` bytes from `source` to here, as `copyMemory(from:byteCount:)` does,
    /// at full speed whatever the distance between the two, which must not overlap.
    @inline(__always)
    func copyMemoryAtFullSpeed(from source: UnsafeRawPointer, byteCount: Int) {
        guard byteCount > 0 else { return }
        swiftpar_copy_bytes(self, source, byteCount)
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Copies the bytes of `source` to the start of this buffer (which must be large enough),
    /// at full speed whatever the distance between the two, which must not overlap.
    @inline(__always)
    func copyMemoryAtFullSpeed(from source: UnsafeRawBufferPointer) {
        precondition(source.count <= count, "copying \(source.count) bytes into \(count)")
        guard source.count > 0 else { return }
        swiftpar_copy_bytes(baseAddress!, source.baseAddress!, source.count)
    }
}

extension Array where Element == UInt8 {
    /// A new array of the bytes of `bytes`, copied at full speed.
    init(copyingAtFullSpeed bytes: UnsafeRawBufferPointer) {
        self.init(unsafeUninitializedCapacity: bytes.count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).copyMemoryAtFullSpeed(from: bytes)
            initialized = bytes.count
        }
    }
}

extension Array where Element: PlainNumber {
    /// The elements of `parts` one after another, copied at full speed.
    init(joiningAtFullSpeed parts: [ArraySlice<Element>]) {
        let total = parts.reduce(0) { $0 + $1.count }
        self.init(unsafeUninitializedCapacity: total) { buffer, initialized in
            var offset = 0
            for part in parts {
                part.withUnsafeBytes { bytes in
                    UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[(offset * MemoryLayout<Element>.stride)...])
                        .copyMemoryAtFullSpeed(from: bytes)
                }
                offset += part.count
            }
            initialized = total
        }
    }
}
