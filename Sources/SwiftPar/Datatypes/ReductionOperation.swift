/// A predefined reduction applied element by element in `reduce` and `allreduce`.
public enum ReductionOperation: String, Sendable, CaseIterable, Codable {
    /// Sum of all contributions; `MPI_SUM`.
    case sum
    /// Product of all contributions; `MPI_PROD`.
    case product
    /// Smallest contribution; `MPI_MIN`.
    case minimum
    /// Largest contribution; `MPI_MAX`.
    case maximum
}
