extension Communicator {
    /// Like `probeNow`/`probe`, for a message from one of `sources` only: a rank that has died
    /// is left out of the wait instead of ending it. For the package's task farm.
    package func probe(anyOf sources: [Int], tag: Int, wait: Bool) throws -> MessageInfo? {
        try exclusive("probe") {
            try validate(source: .any, tag: .tag(tag), "probe")
            return try transport.probe(anyOf: sources, tag: tag, wait: wait)
        }
    }

    /// While on, a rank that dies is this job's business, reported to the ranks waiting on it as
    /// `CommunicatorError.peerFailed`, instead of the end of the job (the local backend; under
    /// MPI a lost rank always ends the job). For the package's task farm.
    package func tolerateRankFailures(_ on: Bool) {
        transport.tolerateFailures(on)
    }

    /// Which of `ranks` have died while failures were tolerated (none under MPI).
    package func failedRanks(among ranks: [Int]) -> [Int] {
        transport.failedRanks(among: ranks)
    }

    /// Starts sending `bytes` as they are (no encoding), to be received with `receiveBytes`;
    /// the request keeps them until the send completes. For the package's task farm, whose
    /// rank 0 must never block in a send while a worker blocks sending to it.
    package func startSend(bytes: [UInt8], to destination: Int, tag: Int) throws -> SendRequest {
        try exclusive("startSend") {
            try validate(destination: destination, "startSend")
            try validate(tag: tag, "startSend")
            return SendRequest(try transport.startSend(OutgoingBytes(bytes), to: destination, tag: tag), rank: rank)
        }
    }
}
