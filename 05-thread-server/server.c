/*
 * server.c - chapter 05: an echo server that serves each client in a thread.
 *
 * Default: main accepts, and every client gets a new thread of its own that
 * echoes, closes and ends. The threads are detached: nobody joins them.
 *
 * -t N: N worker threads start up front. main accepts and puts each client
 * into a bounded queue; an idle worker takes it out (producer-consumer).
 * When every worker is busy and the queue is full, main stops accepting
 * until a slot frees up, and new clients wait in the kernel's backlog: the
 * load pushes back on the clients instead of growing the server.
 *
 * All threads share the process's memory, so data that two of them touch
 * (the queue, the count of clients served) is guarded by a mutex.
 */
#include "lab.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* With -t, clients wait in the kernel's backlog once the queue is full. */
#define BACKLOG 128
#define BUF_SIZE 16384 /* one read's worth; any size works */
#define MAX_WORKERS 1024
/* -t: clients accepted but not yet taken by a worker. */
#define QUEUE_SLOTS 16
/* How often main, waiting on a full queue, looks at stop_requested. */
#define STOP_CHECK_MS 200

static const char usage[] =
    "usage: server [-b ADDR] [-p PORT] [-q] [-t N] [-h]\n"
    "A TCP echo server that serves each client in a thread.\n"
    "  -b ADDR  address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT  port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q       quiet: no accepted/closed lines, no count at exit\n"
    "  -t N     a pool of N worker threads (1-1024) fed by a queue of 16 "
    "clients;\n"
    "           without -t, a new thread for every client\n"
    "  -h       show this help\n";

/* A client on its way to the thread that serves it. Each one is malloc'd:
 * main fills it in and hands the pointer over, and from then on it belongs
 * to that one thread, which closes the socket and frees it. */
struct client {
    int fd;
    char peer[ADDR_TEXT_MAX];
};

static bool quiet; /* -q: set before any thread starts, then only read */

/* SIGINT and SIGTERM: blocked in every thread but main (see start_thread). */
static sigset_t stop_signals;

/* Every new thread is detached: it frees its own resources when it ends. */
static pthread_attr_t detached;

/* The statistic that every thread updates. */
static pthread_mutex_t served_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long served; /* clients served to the end; under served_lock */

/* -t: the bounded queue from main (producer) to the workers (consumers), a
 * ring of QUEUE_SLOTS pointers. Every field is read and written only with
 * lock held. not_full is set up in queue_init(): it needs a clock. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* a client was added: a worker may go on */
    pthread_cond_t not_full;  /* a slot was freed: main may go on */
    struct client *slots[QUEUE_SLOTS];
    size_t head;  /* the oldest client waiting */
    size_t count; /* how many are waiting */
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .not_empty = PTHREAD_COND_INITIALIZER};

/* pthread functions return 0 or an error number and leave errno alone, so
 * we put the number in errno for die_errno() to report. They fail only on
 * a bug here (a bad argument) or at setup, so we stop. */
static void check_pthread(int err, const char *call)
{
    if (err != 0) {
        errno = err;
        die_errno("%s", call);
    }
}

/* Write all LEN bytes, sending the rest after a short write: write_all()
 * from lab.h, minus its look at stop_requested. The signal handler sets
 * that flag in main, so a worker reading it would race with the handler
 * (ThreadSanitizer reports it; see README). A worker never takes the stop
 * signals, never gets EINTR from them, and has no flag to look at. */
static int write_all_bytes(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Send back everything the client sends, until it half-closes (read()
 * returns 0) or something fails: the loop of chapter 03. read_retry() looks
 * at stop_requested only after EINTR, which a worker never gets. */
static void echo_client(int conn_fd, const char *peer)
{
    char buf[BUF_SIZE]; /* on this thread's own stack */

    for (;;) {
        ssize_t n = read_retry(conn_fd, buf, sizeof buf);
        if (n == 0)
            return;
        if (n == -1) {
            warn_errno("read %s", peer); /* e.g. ECONNRESET */
            return;
        }
        if (write_all_bytes(conn_fd, buf, (size_t)n) == -1) {
            warn_errno("write %s", peer); /* e.g. EPIPE */
            return;
        }
    }
}

/* Close C's socket, say so, and free it: the end of every client. */
static void close_client(struct client *c)
{
    if (close(c->fd) == -1)
        warn_errno("close %s", c->peer);
    if (!quiet)
        printf("closed %s\n", c->peer); /* one call: one whole line */
    free(c);
}

/* Runs in many threads at once: shared data only under a mutex. */
static void serve_client(struct client *c)
{
    echo_client(c->fd, c->peer);
    check_pthread(pthread_mutex_lock(&served_lock), "pthread_mutex_lock");
    served++; /* load, add, store: two threads at once could lose one */
    check_pthread(pthread_mutex_unlock(&served_lock), "pthread_mutex_unlock");
    close_client(c);
}

/* Start FN(ARG) in a new detached thread; 0 or an error number. A thread
 * inherits its creator's signal mask, so blocking SIGINT and SIGTERM around
 * pthread_create() gives a thread that never takes them: the kernel must
 * deliver them to main, whose accept() they interrupt. (Blocking them in
 * the new thread itself would leave a moment when it could take one.) */
static int start_thread(void *(*fn)(void *), void *arg)
{
    sigset_t old_mask;
    pthread_t tid;
    int err;

    check_pthread(pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask),
                  "pthread_sigmask");
    err = pthread_create(&tid, &detached, fn, arg);
    check_pthread(pthread_sigmask(SIG_SETMASK, &old_mask, NULL),
                  "pthread_sigmask");
    return err;
}

/* Default model: one thread, one client. */
static void *client_thread(void *arg)
{
    serve_client(arg);
    return NULL;
}

/* ---- -t N: the pool and its queue ---------------------------------- */

/* main waits on not_full with a timeout, measured by a clock that never
 * jumps (the default, CLOCK_REALTIME, follows changes to the date). */
static void queue_init(void)
{
    pthread_condattr_t attr;

    check_pthread(pthread_condattr_init(&attr), "pthread_condattr_init");
    check_pthread(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC),
                  "pthread_condattr_setclock");
    check_pthread(pthread_cond_init(&queue.not_full, &attr),
                  "pthread_cond_init");
    check_pthread(pthread_condattr_destroy(&attr), "pthread_condattr_destroy");
}

/* Producer (main): add C, waiting while the queue is full; that wait is the
 * backpressure. A signal does not end pthread_cond_wait(), so main wakes up
 * every STOP_CHECK_MS to look at stop_requested. False if a stop came
 * first: C was not added. */
static bool queue_put(struct client *c)
{
    bool added;

    check_pthread(pthread_mutex_lock(&queue.lock), "pthread_mutex_lock");
    while (queue.count == QUEUE_SLOTS && !stop_requested) {
        struct timespec until;
        int err;

        if (clock_gettime(CLOCK_MONOTONIC, &until) == -1)
            die_errno("clock_gettime");
        until.tv_nsec += STOP_CHECK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        /* Unlocks, sleeps until signalled or timed out, locks again. */
        err = pthread_cond_timedwait(&queue.not_full, &queue.lock, &until);
        if (err != ETIMEDOUT)
            check_pthread(err, "pthread_cond_timedwait");
    }
    added = queue.count < QUEUE_SLOTS;
    if (added) {
        queue.slots[(queue.head + queue.count) % QUEUE_SLOTS] = c;
        queue.count++;
        check_pthread(pthread_cond_signal(&queue.not_empty),
                      "pthread_cond_signal");
    }
    check_pthread(pthread_mutex_unlock(&queue.lock), "pthread_mutex_unlock");
    return added;
}

/* Consumer (a worker): take the oldest client, waiting while there is none.
 * "while", not "if": a wait may end without a signal (a spurious wakeup). */
static struct client *queue_get(void)
{
    struct client *c;

    check_pthread(pthread_mutex_lock(&queue.lock), "pthread_mutex_lock");
    while (queue.count == 0)
        check_pthread(pthread_cond_wait(&queue.not_empty, &queue.lock),
                      "pthread_cond_wait");
    c = queue.slots[queue.head];
    queue.head = (queue.head + 1) % QUEUE_SLOTS;
    queue.count--;
    check_pthread(pthread_cond_signal(&queue.not_full), "pthread_cond_signal");
    check_pthread(pthread_mutex_unlock(&queue.lock), "pthread_mutex_unlock");
    return c;
}

static void *worker_thread(void *arg)
{
    (void)arg;
    for (;;)
        serve_client(queue_get()); /* a worker lives as long as the server */
    return NULL;
}

/* ---- main: accept, and hand each client over ----------------------- */

/* Out of descriptors, memory or threads: the next client stays in the
 * backlog, so wait a little before trying again rather than spin. */
static void back_off(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    nanosleep(&pause, NULL); /* EINTR just ends the pause early */
}

/* Accept one client into a new struct client, or return NULL (a signal, an
 * error we survive) for the caller to go round again. */
static struct client *accept_client(int listen_fd)
{
    struct sockaddr_storage peer_addr;
    socklen_t peer_len = sizeof peer_addr;
    struct client *c;
    int conn_fd;

    conn_fd = accept(listen_fd, (struct sockaddr *)&peer_addr, &peer_len);
    if (conn_fd == -1) {
        switch (accept_error_action(errno)) {
        case ACCEPT_RETRY:
            return NULL; /* EINTR lands here: the caller checks the flag */
        case ACCEPT_BACKOFF:
            warn_errno("accept"); /* EMFILE: see back_off() */
            back_off();
            return NULL;
        case ACCEPT_FATAL:
            die_errno("accept");
        }
    }
    c = malloc(sizeof *c);
    if (c == NULL) {
        warn_errno("malloc");
        if (close(conn_fd) == -1)
            warn_errno("close");
        back_off();
        return NULL;
    }
    c->fd = conn_fd;
    format_addr((struct sockaddr *)&peer_addr, peer_len, c->peer,
                sizeof c->peer);
    if (!quiet)
        printf("accepted %s\n", c->peer);
    return c;
}

int main(int argc, char **argv)
{
    struct server_options opts;
    long workers = 0; /* 0: a thread per client */
    unsigned long served_total;
    int opt, listen_fd;

    set_program_name(argv[0]);
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, SERVER_OPTSTRING "t:")) != -1) {
        if (opt == 't') {
            if (!parse_number(optarg, 1, MAX_WORKERS, &workers))
                usage_error(usage,
                            "bad thread count '%s': not a number in "
                            "1-1024",
                            optarg);
        } else {
            server_option(&opts, opt, usage);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    quiet = opts.quiet;

    if (setvbuf(stdout, NULL, _IOLBF, 0) != 0)
        die_errno("setvbuf stdout");
    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");
    if (sigemptyset(&stop_signals) == -1 ||
        sigaddset(&stop_signals, SIGINT) == -1 ||
        sigaddset(&stop_signals, SIGTERM) == -1)
        die_errno("sigaddset");
    check_pthread(pthread_attr_init(&detached), "pthread_attr_init");
    check_pthread(
        pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED),
        "pthread_attr_setdetachstate");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1)
        return 1;
    if (workers > 0) { /* the pool is ready before we say we listen */
        queue_init();
        for (long i = 0; i < workers; i++) {
            int err = start_thread(worker_thread, NULL);
            if (err != 0) {
                errno = err;
                die_errno("pthread_create worker %ld of %ld", i + 1, workers);
            }
        }
    }
    if (announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        struct client *c = accept_client(listen_fd);
        int err;

        if (c == NULL)
            continue;
        if (workers > 0) {
            if (!queue_put(c))
                close_client(c); /* a stop came while the queue was full */
            continue;
        }
        /* The thread gets the pointer to this client's own struct, never
         * &conn_fd: main's next accept() would overwrite that. */
        err = start_thread(client_thread, c);
        if (err != 0) { /* EAGAIN: too many threads: this client only */
            errno = err;
            warn_errno("pthread_create for %s", c->peer);
            close_client(c);
            back_off();
        }
    }

    /* Stop: no new clients. Returning from main ends the process and every
     * thread in it, and the kernel closes every socket we still hold: each
     * client still connected (or still queued) sees the connection close
     * (a FIN; a RST if it had sent bytes that nobody read). */
    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    check_pthread(pthread_mutex_lock(&served_lock), "pthread_mutex_lock");
    served_total = served;
    check_pthread(pthread_mutex_unlock(&served_lock), "pthread_mutex_unlock");
    if (!quiet)
        printf("served %lu clients\n", served_total);
    return 0;
}
