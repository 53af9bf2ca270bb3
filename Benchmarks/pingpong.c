/* Ping-pong between ranks 0 and 1 in plain C MPI: the reference that
 * `swiftpar bench pingpong` is compared with. Same sizes, iteration counts and
 * repetitions; prints one line per size: label, bytes, one-way microseconds, GB/s. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n sorted values: the middle one, or the mean of the middle two for an even n
   (as Python's statistics.median, which the mpi4py figures beside these use). */
static double median_of(const double *sorted, int n) {
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "pingpong needs 2 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int repetitions = argc > 1 ? atoi(argv[1]) : 5;
    const char *labels[] = {"8B", "64KiB", "4MiB"};
    const int elements[] = {1, 8192, 524288};
    const int iterations[] = {20000, 2000, 200};
    double *buffer = malloc(sizeof(double) * 524288);
    for (int i = 0; i < 524288; i++) buffer[i] = 1.5;
    double *samples = malloc(sizeof(double) * repetitions);
    for (int c = 0; c < 3; c++) {
        int n = elements[c], iters = iterations[c];
        int warmup = iters / 10 > 2 ? iters / 10 : 2;
        for (int r = 0; r < repetitions; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double start = 0;
            for (int i = 0; i < warmup + iters; i++) {
                if (i == warmup) start = MPI_Wtime();
                if (rank == 0) {
                    MPI_Send(buffer, n, MPI_DOUBLE, 1, 0, MPI_COMM_WORLD);
                    MPI_Recv(buffer, n, MPI_DOUBLE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                } else if (rank == 1) {
                    MPI_Recv(buffer, n, MPI_DOUBLE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    MPI_Send(buffer, n, MPI_DOUBLE, 0, 0, MPI_COMM_WORLD);
                }
            }
            samples[r] = (MPI_Wtime() - start) / (2.0 * iters);
        }
        qsort(samples, repetitions, sizeof(double), compare);
        double median = median_of(samples, repetitions);
        if (rank == 0)
            printf("%s %d %.3f %.3f\n", labels[c], n * 8, median * 1e6, n * 8 / median / 1e9);
    }
    free(samples);
    free(buffer);
    MPI_Finalize();
    return 0;
}
