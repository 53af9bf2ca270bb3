/* Allreduce (sum) and broadcast of 1,000,000 doubles in plain C MPI: the reference for
 * `swiftpar bench collectives`. Prints "allreduce SECONDS" and "broadcast SECONDS", each the
 * median of REPETITIONS timed calls, on rank 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n sorted values: the middle one, or the mean of the middle two for an even n
   (as `swiftpar bench collectives` takes it). */
static double median(const double *sorted, int n) {
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int count = 1000000, repetitions = argc > 1 ? atoi(argv[1]) : 20;
    double *in = malloc(sizeof(double) * count), *out = malloc(sizeof(double) * count);
    double *times = malloc(sizeof(double) * repetitions);
    for (int i = 0; i < count; i++) in[i] = i * 0.5 + rank;
    const char *names[] = {"allreduce", "broadcast"};
    for (int which = 0; which < 2; which++) {
        for (int r = 0; r < repetitions + 2; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double start = MPI_Wtime();
            if (which == 0) MPI_Allreduce(in, out, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            else MPI_Bcast(in, count, MPI_DOUBLE, 0, MPI_COMM_WORLD);
            if (r >= 2) times[r - 2] = MPI_Wtime() - start;
        }
        qsort(times, repetitions, sizeof(double), compare);
        if (rank == 0) printf("%s %.9f\n", names[which], median(times, repetitions));
    }
    MPI_Finalize();
    return 0;
}
