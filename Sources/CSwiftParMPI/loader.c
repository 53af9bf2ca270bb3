// Loads Open MPI with dlopen and fills swiftpar_mpi (see swiftpar_mpi.h).
#include "swiftpar_mpi.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

struct swiftpar_mpi_table swiftpar_mpi;
static int loaded;

int swiftpar_mpi_is_loaded(void) { return loaded; }

int swiftpar_mpi_load(const char *path, char *error, size_t error_size) {
    if (loaded) return 0;
    const char *library = path != NULL && path[0] != '\0' ? path : "libmpi.so.40";
    // RTLD_GLOBAL: Open MPI's own plug-ins, which it loads later, resolve symbols of libmpi.
    void *handle = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
    if (handle == NULL) {
        const char *reason = dlerror();
        snprintf(error, error_size, "%s", reason != NULL ? reason : library);
        return -1;
    }
    struct swiftpar_mpi_table table;
    memset(&table, 0, sizeof table);
#define SWIFTPAR_RESOLVE(field, symbol)                                                          \
    do {                                                                                         \
        void *found = dlsym(handle, symbol);                                                     \
        if (found == NULL) {                                                                     \
            snprintf(error, error_size, "%s has no symbol %s: it is not Open MPI's library, or too old", \
                     library, symbol);                                                           \
            return -1;                                                                           \
        }                                                                                        \
        memcpy(&table.field, &found, sizeof found);                                              \
    } while (0)
#define SWIFTPAR_RESOLVE_FUNCTION(result, name, parameters, arguments) SWIFTPAR_RESOLVE(name, #name);
    SWIFTPAR_MPI_FUNCTIONS(SWIFTPAR_RESOLVE_FUNCTION)
#undef SWIFTPAR_RESOLVE_FUNCTION
#define SWIFTPAR_RESOLVE_HANDLE(kind, getter, global) SWIFTPAR_RESOLVE(global, #global);
    SWIFTPAR_MPI_HANDLES(SWIFTPAR_RESOLVE_HANDLE)
#undef SWIFTPAR_RESOLVE_HANDLE
#undef SWIFTPAR_RESOLVE
    swiftpar_mpi = table;
    loaded = 1;
    return 0;
}
