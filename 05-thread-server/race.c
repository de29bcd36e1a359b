/*
 * race.c - chapter 05: a data race, made on purpose, and its repair.
 *
 *   race [-m] [-t THREADS] [-n INCREMENTS]
 *
 * THREADS threads each add 1 to one shared counter INCREMENTS times; main
 * joins them and compares the counter with THREADS x INCREMENTS. Without -m
 * the threads race: counter++ is a load, an add and a store, and when two
 * threads interleave those steps one increment is lost. With -m every
 * increment holds a mutex, and none is lost.
 *
 * Exit status: 0 if the count is exact, 1 if increments were lost (or the
 * result could not be written to stdout).
 */
#include "lab.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64
/* Enough to make threads overlap; 64 x 10,000,000 fits even a 32-bit long. */
#define MAX_INCREMENTS 10000000

static const char usage[] =
    "usage: race [-m] [-t THREADS] [-n INCREMENTS] [-h]\n"
    "Threads add 1 to one shared counter; main compares the total.\n"
    "  -m    lock a mutex around each increment\n"
    "  -t N  number of threads (1-64, default 4)\n"
    "  -n N  increments per thread (1-10000000, default 10000000)\n"
    "  -h    show this help\n";

/* volatile only stops the compiler from turning the loop into a single
 * "counter += increments": every increment stays a real load and store, as
 * it would be in a loop doing real work. It does NOT make counter++ atomic,
 * and it is not a way to share data between threads. */
static volatile long counter;
static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;

/* Set by main before any thread starts, then only read: no race. */
static bool use_mutex;
static long increments = MAX_INCREMENTS;

/* pthread functions return 0 or an error number; they do not set errno. */
static void check_pthread(int err, const char *call)
{
    if (err != 0) {
        errno = err;
        die_errno("%s", call);
    }
}

static void *count_up(void *arg)
{
    (void)arg;
    for (long i = 0; i < increments; i++) {
        if (use_mutex)
            check_pthread(pthread_mutex_lock(&counter_lock),
                          "pthread_mutex_lock");
        counter++; /* load, add 1, store: another thread can come between */
        if (use_mutex)
            check_pthread(pthread_mutex_unlock(&counter_lock),
                          "pthread_mutex_unlock");
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t threads[MAX_THREADS];
    long nthreads = 4, expected;
    int opt;

    set_program_name(argv[0]);
    keep_std_fds_open();
    while ((opt = getopt(argc, argv, ":mt:n:h")) != -1) {
        switch (opt) {
        case 'm':
            use_mutex = true;
            break;
        case 't':
            if (!parse_number(optarg, 1, MAX_THREADS, &nthreads))
                usage_error(usage, "bad thread count '%s': not 1-64", optarg);
            break;
        case 'n':
            if (!parse_number(optarg, 1, MAX_INCREMENTS, &increments))
                usage_error(usage, "bad increment count '%s': not 1-10000000",
                            optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case ':':
            usage_error(usage, "option -%c needs a value", optopt);
        default:
            usage_error(usage, "unknown option -%c", optopt);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);

    for (long i = 0; i < nthreads; i++)
        check_pthread(pthread_create(&threads[i], NULL, count_up, NULL),
                      "pthread_create");
    /* join: wait for each thread to end. Everything it did happens before
     * pthread_join() returns, so reading counter below is safe. */
    for (long i = 0; i < nthreads; i++)
        check_pthread(pthread_join(threads[i], NULL), "pthread_join");

    expected = nthreads * increments;
    printf("%ld thread%s x %ld increments %s: expected %ld, got %ld", nthreads,
           nthreads == 1 ? "" : "s", increments,
           use_mutex ? "with a mutex" : "without a mutex", expected, counter);
    if (counter != expected)
        printf(" (%ld lost)", expected - counter);
    printf("\n");
    if (check_stdout() == -1) /* a full disk, a closed stdout: say so */
        return 1;
    return counter == expected ? 0 : 1;
}
