/// The element kinds that travel as raw memory: fixed-size integers and IEEE floats.
///
/// Each kind maps to one MPI datatype (`MPI_INT64_T`, `MPI_DOUBLE`, ...). Values of these
/// kinds are sent without encoding, straight from an array's storage.
public enum PlainNumberKind: UInt8, Sendable, CaseIterable {
    /// `Int8`, mapped to `MPI_INT8_T`.
    case int8 = 1
    /// `Int16`, mapped to `MPI_INT16_T`.
    case int16
    /// `Int32`, mapped to `MPI_INT32_T`.
    case int32
    /// `Int64` and `Int`, mapped to `MPI_INT64_T`.
    case int64
    /// `UInt8`, mapped to `MPI_UINT8_T`.
    case uint8
    /// `UInt16`, mapped to `MPI_UINT16_T`.
    case uint16
    /// `UInt32`, mapped to `MPI_UINT32_T`.
    case uint32
    /// `UInt64` and `UInt`, mapped to `MPI_UINT64_T`.
    case uint64
    /// `Float`, mapped to `MPI_FLOAT`.
    case float32
    /// `Double`, mapped to `MPI_DOUBLE`.
    case float64

    /// The Swift type's name: "Double", "Int64".
    public var typeName: String {
        switch self {
        case .int8: return "Int8"
        case .int16: return "Int16"
        case .int32: return "Int32"
        case .int64: return "Int64"
        case .uint8: return "UInt8"
        case .uint16: return "UInt16"
        case .uint32: return "UInt32"
        case .uint64: return "UInt64"
        case .float32: return "Float"
        case .float64: return "Double"
        }
    }

    /// Size of one element in bytes.
    public var byteWidth: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .uint64, .float64: return 8
        }
    }
}

/// A number that is sent as its raw bytes: the zero-copy path of every communicator operation.
///
/// Arrays of plain numbers are passed to MPI directly from their storage (no encoding, no extra
/// copy) and reduced with MPI's native operations. The standard integer and floating-point
/// types conform; other types use the `Codable` path.
public protocol PlainNumber: Numeric, Comparable, Codable, BitwiseCopyable, Sendable {
    /// The element kind, which names the MPI datatype this type is sent as.
    static var plainNumberKind: PlainNumberKind { get }
    /// Combines two values with `operation`, as MPI's predefined operation would.
    ///
    /// Integer sums and products wrap around on overflow, like MPI's, instead of trapping.
    static func combine(_ lhs: Self, _ rhs: Self, with operation: ReductionOperation) -> Self
}

extension PlainNumber where Self: FixedWidthInteger {
    /// Combines two integers as MPI does, wrapping on overflow.
    public static func combine(_ lhs: Self, _ rhs: Self, with operation: ReductionOperation) -> Self {
        switch operation {
        case .sum: return lhs &+ rhs
        case .product: return lhs &* rhs
        case .minimum: return Swift.min(lhs, rhs)
        case .maximum: return Swift.max(lhs, rhs)
        }
    }
}

extension PlainNumber where Self: BinaryFloatingPoint {
    /// Combines two floating-point values as MPI does.
    public static func combine(_ lhs: Self, _ rhs: Self, with operation: ReductionOperation) -> Self {
        switch operation {
        case .sum: return lhs + rhs
        case .product: return lhs * rhs
        case .minimum: return Swift.min(lhs, rhs)
        case .maximum: return Swift.max(lhs, rhs)
        }
    }
}

extension Int8: PlainNumber { public static var plainNumberKind: PlainNumberKind { .int8 } }
extension Int16: PlainNumber { public static var plainNumberKind: PlainNumberKind { .int16 } }
extension Int32: PlainNumber { public static var plainNumberKind: PlainNumberKind { .int32 } }
extension Int64: PlainNumber { public static var plainNumberKind: PlainNumberKind { .int64 } }
extension Int: PlainNumber { public static var plainNumberKind: PlainNumberKind { .int64 } }
extension UInt8: PlainNumber { public static var plainNumberKind: PlainNumberKind { .uint8 } }
extension UInt16: PlainNumber { public static var plainNumberKind: PlainNumberKind { .uint16 } }
extension UInt32: PlainNumber { public static var plainNumberKind: PlainNumberKind { .uint32 } }
extension UInt64: PlainNumber { public static var plainNumberKind: PlainNumberKind { .uint64 } }
extension UInt: PlainNumber { public static var plainNumberKind: PlainNumberKind { .uint64 } }
extension Float: PlainNumber { public static var plainNumberKind: PlainNumberKind { .float32 } }
extension Double: PlainNumber { public static var plainNumberKind: PlainNumberKind { .float64 } }

/// An array of plain numbers seen through its element kind, so that generic `Codable` code
/// can recognise `[Double]`, `[Int]`, ... at run time and move them as raw memory.
protocol PlainNumberArray {
    static var elementKind: PlainNumberKind { get }
    var count: Int { get }
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
    /// Builds an array from raw element bytes; `bytes.count` must be a multiple of the width.
    init(rawElementBytes bytes: UnsafeRawBufferPointer)
    /// Receives a message straight into a new array, allocated once at its final size.
    static func receivedArray(through transport: any Transport, matching info: MessageInfo) throws -> Self
    /// A new array of `count` elements whose bytes `fill` writes.
    static func received(count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> Self
}

extension Array: PlainNumberArray where Element: PlainNumber {
    static var elementKind: PlainNumberKind { Element.plainNumberKind }

    init(rawElementBytes bytes: UnsafeRawBufferPointer) {
        let count = bytes.count / MemoryLayout<Element>.stride
        self.init(unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                UnsafeMutableRawBufferPointer(buffer).copyMemoryAtFullSpeed(
                    from: UnsafeRawBufferPointer(rebasing: bytes[..<(count * MemoryLayout<Element>.stride)]))
            }
            initialized = count
        }
    }
}

extension Array where Element: PlainNumber {
    static func receivedArray(through transport: any Transport, matching info: MessageInfo) throws -> Self {
        try transport.receiveArray(Element.self, matching: info)
    }

    static func received(count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> Self {
        var failure: (any Error)?
        let values = [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            do {
                try fill(UnsafeMutableRawBufferPointer(buffer))
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return values
    }
}
