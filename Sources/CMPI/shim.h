// swiftpar's C shim over Open MPI (and the few Linux calls Swift cannot reach by itself).
//
// Open MPI defines its predefined handles (MPI_COMM_WORLD, MPI_BYTE, MPI_SUM, ...) as casts of
// the addresses of global structs. Swift's importer cannot import such macros, so each one we
// use is re-exported here as a tiny inline function. Nothing else of MPI is wrapped: the rest
// of mpi.h is imported as it is.
#ifndef SWIFTPAR_CMPI_SHIM_H
#define SWIFTPAR_CMPI_SHIM_H

#include <mpi.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <signal.h>
// Linux headers Swift's Glibc module leaves out, used by the local backend.
#include <sys/eventfd.h>
#include <sys/signalfd.h>

// Communicators
static inline MPI_Comm swiftpar_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm swiftpar_comm_self(void) { return MPI_COMM_SELF; }
static inline MPI_Comm swiftpar_comm_null(void) { return MPI_COMM_NULL; }

// Datatypes
static inline MPI_Datatype swiftpar_type_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype swiftpar_type_int8(void) { return MPI_INT8_T; }
static inline MPI_Datatype swiftpar_type_int16(void) { return MPI_INT16_T; }
static inline MPI_Datatype swiftpar_type_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype swiftpar_type_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype swiftpar_type_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype swiftpar_type_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype swiftpar_type_uint32(void) { return MPI_UINT32_T; }
static inline MPI_Datatype swiftpar_type_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype swiftpar_type_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype swiftpar_type_double(void) { return MPI_DOUBLE; }

// Reduction operations
static inline MPI_Op swiftpar_op_sum(void) { return MPI_SUM; }
static inline MPI_Op swiftpar_op_prod(void) { return MPI_PROD; }
static inline MPI_Op swiftpar_op_min(void) { return MPI_MIN; }
static inline MPI_Op swiftpar_op_max(void) { return MPI_MAX; }

// Wildcards and special buffers
static inline int swiftpar_any_source(void) { return MPI_ANY_SOURCE; }
static inline int swiftpar_any_tag(void) { return MPI_ANY_TAG; }
static inline MPI_Status *swiftpar_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *swiftpar_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline void *swiftpar_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request swiftpar_request_null(void) { return MPI_REQUEST_NULL; }

// Error handlers and limits
static inline MPI_Errhandler swiftpar_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int swiftpar_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int swiftpar_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int swiftpar_max_library_version_string(void) { return MPI_MAX_LIBRARY_VERSION_STRING; }


// Not MPI, but C-only: glibc's malloc tuning (see keepMessageBuffersMapped in Swift).
static inline void swiftpar_keep_large_buffers(int mmap_threshold, int trim_threshold) {
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
}

// Not MPI, but variadic in C and so out of Swift's reach: prctl for the local backend's
// children, so that they are killed when the launching process dies.
static inline int swiftpar_set_parent_death_signal(int signal_number) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal_number, 0, 0, 0);
}
#endif
