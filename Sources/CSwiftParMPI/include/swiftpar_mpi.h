// swiftpar's C surface over Open MPI, loaded at run time.
//
// Nothing here includes mpi.h or links libmpi: a program built with swiftpar starts on a
// machine without Open MPI, and loads the library (dlopen) only when a launcher started it.
// This header declares the part of Open MPI's binary interface swiftpar uses: its handle types
// (pointers to library structs), the public MPI_Status layout, the constants, and one inline
// function per MPI call, named as in MPI, that calls through a table filled by
// swiftpar_mpi_load(). The predefined handles (MPI_COMM_WORLD, MPI_DOUBLE, MPI_SUM, ...) are
// the addresses of global objects of the library, found by name when it is loaded.
//
// The layout and values are Open MPI's (libmpi.so.40: Open MPI 3.x, 4.x and 5.x). A test
// compiles a program against the real mpi.h and checks every value here against it.
#ifndef SWIFTPAR_MPI_H
#define SWIFTPAR_MPI_H

#include <stddef.h>

typedef struct ompi_communicator_t *MPI_Comm;
typedef struct ompi_datatype_t *MPI_Datatype;
typedef struct ompi_errhandler_t *MPI_Errhandler;
typedef struct ompi_op_t *MPI_Op;
typedef struct ompi_request_t *MPI_Request;

typedef struct MPI_Status {
    int MPI_SOURCE;
    int MPI_TAG;
    int MPI_ERROR;
    int swiftpar_cancelled;
    size_t swiftpar_count;
} MPI_Status;

enum {
    MPI_SUCCESS = 0,
    MPI_ERR_TRUNCATE = 15,
    MPI_ANY_SOURCE = -1,
    MPI_ANY_TAG = -1,
    MPI_UNDEFINED = -32766,
    MPI_TAG_UB = 0,
    MPI_THREAD_SINGLE = 0,
    MPI_THREAD_FUNNELED = 1,
    MPI_THREAD_SERIALIZED = 2,
    MPI_THREAD_MULTIPLE = 3,
    MPI_MAX_PROCESSOR_NAME = 256,
    MPI_MAX_ERROR_STRING = 256,
    MPI_MAX_LIBRARY_VERSION_STRING = 256,
};

// The MPI calls swiftpar makes, as (return type, name, parameter list, argument list).
#define SWIFTPAR_MPI_FUNCTIONS(X) \
    X(int, MPI_Init_thread, (int *argc, char ***argv, int required, int *provided), (argc, argv, required, provided)) \
    X(int, MPI_Initialized, (int *flag), (flag)) \
    X(int, MPI_Finalize, (void), ()) \
    X(int, MPI_Abort, (MPI_Comm comm, int code), (comm, code)) \
    X(int, MPI_Get_processor_name, (char *name, int *length), (name, length)) \
    X(int, MPI_Get_library_version, (char *version, int *length), (version, length)) \
    X(int, MPI_Error_string, (int code, char *text, int *length), (code, text, length)) \
    X(int, MPI_Comm_rank, (MPI_Comm comm, int *rank), (comm, rank)) \
    X(int, MPI_Comm_size, (MPI_Comm comm, int *size), (comm, size)) \
    X(int, MPI_Comm_dup, (MPI_Comm comm, MPI_Comm *copy), (comm, copy)) \
    X(int, MPI_Comm_split, (MPI_Comm comm, int color, int key, MPI_Comm *part), (comm, color, key, part)) \
    X(int, MPI_Comm_free, (MPI_Comm *comm), (comm)) \
    X(int, MPI_Comm_set_errhandler, (MPI_Comm comm, MPI_Errhandler handler), (comm, handler)) \
    X(int, MPI_Comm_get_attr, (MPI_Comm comm, int key, void *value, int *found), (comm, key, value, found)) \
    X(int, MPI_Send, (const void *buffer, int count, MPI_Datatype type, int destination, int tag, MPI_Comm comm), \
      (buffer, count, type, destination, tag, comm)) \
    X(int, MPI_Isend, (const void *buffer, int count, MPI_Datatype type, int destination, int tag, MPI_Comm comm, MPI_Request *request), \
      (buffer, count, type, destination, tag, comm, request)) \
    X(int, MPI_Recv, (void *buffer, int count, MPI_Datatype type, int source, int tag, MPI_Comm comm, MPI_Status *status), \
      (buffer, count, type, source, tag, comm, status)) \
    X(int, MPI_Irecv, (void *buffer, int count, MPI_Datatype type, int source, int tag, MPI_Comm comm, MPI_Request *request), \
      (buffer, count, type, source, tag, comm, request)) \
    X(int, MPI_Iprobe, (int source, int tag, MPI_Comm comm, int *flag, MPI_Status *status), (source, tag, comm, flag, status)) \
    X(int, MPI_Get_count, (const MPI_Status *status, MPI_Datatype type, int *count), (status, type, count)) \
    X(int, MPI_Test, (MPI_Request *request, int *flag, MPI_Status *status), (request, flag, status)) \
    X(int, MPI_Testall, (int count, MPI_Request *requests, int *flag, MPI_Status *statuses), (count, requests, flag, statuses)) \
    X(int, MPI_Cancel, (MPI_Request *request), (request)) \
    X(int, MPI_Request_free, (MPI_Request *request), (request)) \
    X(int, MPI_Ibarrier, (MPI_Comm comm, MPI_Request *request), (comm, request)) \
    X(int, MPI_Ibcast, (void *buffer, int count, MPI_Datatype type, int root, MPI_Comm comm, MPI_Request *request), \
      (buffer, count, type, root, comm, request)) \
    X(int, MPI_Iallgather, (const void *send, int sendCount, MPI_Datatype sendType, void *receive, int receiveCount, \
                            MPI_Datatype receiveType, MPI_Comm comm, MPI_Request *request), \
      (send, sendCount, sendType, receive, receiveCount, receiveType, comm, request)) \
    X(int, MPI_Igatherv, (const void *send, int sendCount, MPI_Datatype sendType, void *receive, const int *receiveCounts, \
                          const int *displacements, MPI_Datatype receiveType, int root, MPI_Comm comm, MPI_Request *request), \
      (send, sendCount, sendType, receive, receiveCounts, displacements, receiveType, root, comm, request)) \
    X(int, MPI_Iallgatherv, (const void *send, int sendCount, MPI_Datatype sendType, void *receive, const int *receiveCounts, \
                             const int *displacements, MPI_Datatype receiveType, MPI_Comm comm, MPI_Request *request), \
      (send, sendCount, sendType, receive, receiveCounts, displacements, receiveType, comm, request)) \
    X(int, MPI_Iscatterv, (const void *send, const int *sendCounts, const int *displacements, MPI_Datatype sendType, \
                           void *receive, int receiveCount, MPI_Datatype receiveType, int root, MPI_Comm comm, MPI_Request *request), \
      (send, sendCounts, displacements, sendType, receive, receiveCount, receiveType, root, comm, request)) \
    X(int, MPI_Ialltoall, (const void *send, int sendCount, MPI_Datatype sendType, void *receive, int receiveCount, \
                           MPI_Datatype receiveType, MPI_Comm comm, MPI_Request *request), \
      (send, sendCount, sendType, receive, receiveCount, receiveType, comm, request)) \
    X(int, MPI_Ialltoallv, (const void *send, const int *sendCounts, const int *sendDisplacements, MPI_Datatype sendType, \
                            void *receive, const int *receiveCounts, const int *receiveDisplacements, MPI_Datatype receiveType, \
                            MPI_Comm comm, MPI_Request *request), \
      (send, sendCounts, sendDisplacements, sendType, receive, receiveCounts, receiveDisplacements, receiveType, comm, request)) \
    X(int, MPI_Ireduce, (const void *send, void *receive, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm, \
                         MPI_Request *request), \
      (send, receive, count, type, op, root, comm, request)) \
    X(int, MPI_Iallreduce, (const void *send, void *receive, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm, \
                            MPI_Request *request), \
      (send, receive, count, type, op, comm, request))

// The predefined handles swiftpar uses, as (kind, Swift-visible getter, library global).
#define SWIFTPAR_MPI_HANDLES(X) \
    X(MPI_Comm, swiftpar_comm_world, ompi_mpi_comm_world) \
    X(MPI_Comm, swiftpar_comm_null, ompi_mpi_comm_null) \
    X(MPI_Request, swiftpar_request_null, ompi_request_null) \
    X(MPI_Errhandler, swiftpar_errors_return, ompi_mpi_errors_return) \
    X(MPI_Datatype, swiftpar_type_byte, ompi_mpi_byte) \
    X(MPI_Datatype, swiftpar_type_int8, ompi_mpi_int8_t) \
    X(MPI_Datatype, swiftpar_type_int16, ompi_mpi_int16_t) \
    X(MPI_Datatype, swiftpar_type_int32, ompi_mpi_int32_t) \
    X(MPI_Datatype, swiftpar_type_int64, ompi_mpi_int64_t) \
    X(MPI_Datatype, swiftpar_type_uint8, ompi_mpi_uint8_t) \
    X(MPI_Datatype, swiftpar_type_uint16, ompi_mpi_uint16_t) \
    X(MPI_Datatype, swiftpar_type_uint32, ompi_mpi_uint32_t) \
    X(MPI_Datatype, swiftpar_type_uint64, ompi_mpi_uint64_t) \
    X(MPI_Datatype, swiftpar_type_float, ompi_mpi_float) \
    X(MPI_Datatype, swiftpar_type_double, ompi_mpi_double) \
    X(MPI_Op, swiftpar_op_sum, ompi_mpi_op_sum) \
    X(MPI_Op, swiftpar_op_prod, ompi_mpi_op_prod) \
    X(MPI_Op, swiftpar_op_min, ompi_mpi_op_min) \
    X(MPI_Op, swiftpar_op_max, ompi_mpi_op_max)

// The table the loader fills: one pointer per call and per handle.
struct swiftpar_mpi_table {
#define SWIFTPAR_FUNCTION_POINTER(result, name, parameters, arguments) result (*name) parameters;
    SWIFTPAR_MPI_FUNCTIONS(SWIFTPAR_FUNCTION_POINTER)
#undef SWIFTPAR_FUNCTION_POINTER
#define SWIFTPAR_HANDLE_POINTER(kind, getter, global) void *global;
    SWIFTPAR_MPI_HANDLES(SWIFTPAR_HANDLE_POINTER)
#undef SWIFTPAR_HANDLE_POINTER
};

extern struct swiftpar_mpi_table swiftpar_mpi;

/// Loads Open MPI's library and fills the table: `path` names the library, or NULL for
/// libmpi.so.40 found as the dynamic loader finds libraries (LD_LIBRARY_PATH, ld.so.conf).
/// Returns 0, or -1 with the reason in `error` (at most `error_size` bytes).
int swiftpar_mpi_load(const char *path, char *error, size_t error_size);

/// Whether swiftpar_mpi_load has succeeded in this process.
int swiftpar_mpi_is_loaded(void);

#define SWIFTPAR_INLINE_CALL(result, name, parameters, arguments) \
    static inline result name parameters { return swiftpar_mpi.name arguments; }
SWIFTPAR_MPI_FUNCTIONS(SWIFTPAR_INLINE_CALL)
#undef SWIFTPAR_INLINE_CALL

#define SWIFTPAR_HANDLE_GETTER(kind, getter, global) \
    static inline kind getter(void) { return (kind)swiftpar_mpi.global; }
SWIFTPAR_MPI_HANDLES(SWIFTPAR_HANDLE_GETTER)
#undef SWIFTPAR_HANDLE_GETTER

static inline void *swiftpar_in_place(void) { return (void *)1; }
static inline MPI_Status *swiftpar_status_ignore(void) { return (MPI_Status *)0; }
static inline MPI_Status *swiftpar_statuses_ignore(void) { return (MPI_Status *)0; }

#endif
