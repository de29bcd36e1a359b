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
 *
 * SIGINT and SIGTERM are blocked in every thread; one thread, stop_thread,
 * takes them with sigwait() and wakes main wherever main sleeps.
 */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* With -t, clients wait in the kernel's backlog once the queue is full. */
#define BACKLOG 128
#define BUF_SIZE 16384 /* one read's worth; any size works */
#define MAX_WORKERS 1024
/* -t: clients accepted but not yet taken by a worker. */
#define QUEUE_SLOTS 16

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

/* Every new thread is detached: it frees its own resources when it ends. */
static pthread_attr_t detached;

/* The statistic that every thread updates. */
static pthread_mutex_t served_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long served; /* clients served to the end; under served_lock */

/* -t: the bounded queue from main (producer) to the workers (consumers), a
 * ring of QUEUE_SLOTS pointers. Every field is read and written only with
 * lock held. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* a client was added: a worker may go on */
    pthread_cond_t not_full;  /* a slot was freed, or a stop: main may go on */
    struct client *slots[QUEUE_SLOTS];
    size_t head;  /* the oldest client waiting */
    size_t count; /* how many are waiting */
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .not_empty = PTHREAD_COND_INITIALIZER,
           .not_full = PTHREAD_COND_INITIALIZER};

/* SIGINT and SIGTERM: blocked in every thread, taken by stop_thread. */
static sigset_t stop_signals;

/* stop_thread writes one byte into stop_pipe[1] when a stop is requested;
 * main watches stop_pipe[0] beside the listening socket. */
static int stop_pipe[2];

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

/* Send back everything the client sends, until it half-closes (read()
 * returns 0) or something fails: the loop of chapter 03. The read and the
 * write block this thread only; a stop does not wait for them (see main). */
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
        if (write_all(conn_fd, buf, (size_t)n) == -1) {
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
        log_line("closed %s", c->peer); /* one write(): one whole line */
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

/* Start FN(ARG) in a new detached thread; 0 or an error number. The new
 * thread inherits main's signal mask: SIGINT and SIGTERM blocked. */
static int start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t tid;

    return pthread_create(&tid, &detached, fn, arg);
}

/* Default model: one thread, one client. */
static void *client_thread(void *arg)
{
    serve_client(arg);
    return NULL;
}

/* ---- -t N: the pool and its queue ---------------------------------- */

/* Producer (main): add C, waiting while the queue is full; that wait is the
 * backpressure. False if a stop came first: C was not added. */
static bool queue_put(struct client *c)
{
    bool added;

    check_pthread(pthread_mutex_lock(&queue.lock), "pthread_mutex_lock");
    /* A signal cannot end this wait: stop_thread wakes us (not_full). */
    while (queue.count == QUEUE_SLOTS && !stop_requested)
        check_pthread(pthread_cond_wait(&queue.not_full, &queue.lock),
                      "pthread_cond_wait");
    added = !stop_requested;
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

/* ---- Stopping: one thread takes the signals ------------------------- */

/* Every thread blocks SIGINT and SIGTERM, so the kernel keeps one sent to
 * us pending until this thread takes it with sigwait(). No handler runs:
 * this is ordinary code, free to lock a mutex and wake other threads. */
static void *stop_thread(void *arg)
{
    int signo;

    (void)arg;
    check_pthread(sigwait(&stop_signals, &signo), "sigwait");
    stop_requested = 1;
    /* Wake main if it sleeps in poll() for a client... */
    if (write(stop_pipe[1], "!", 1) == -1)
        die_errno("write stop pipe");
    /* ...or in queue_put() for a free slot. Under the lock: main tests
     * stop_requested with the lock held, so it is either before its test
     * (and sees 1) or already asleep (and this wakes it). */
    check_pthread(pthread_mutex_lock(&queue.lock), "pthread_mutex_lock");
    check_pthread(pthread_cond_broadcast(&queue.not_full),
                  "pthread_cond_broadcast");
    check_pthread(pthread_mutex_unlock(&queue.lock), "pthread_mutex_unlock");
    return NULL;
}

/* ---- main: accept, and hand each client over ----------------------- */

/* Sleep until a client waits to be accepted (true) or a stop was
 * requested (false). */
static bool wait_for_client(int listen_fd)
{
    struct pollfd fds[2] = {{.fd = listen_fd, .events = POLLIN},
                            {.fd = stop_pipe[0], .events = POLLIN}};

    while (poll(fds, 2, -1) == -1)
        if (errno != EINTR)
            die_errno("poll");
    return fds[1].revents == 0;
}

/* Out of descriptors, memory or threads: the next client stays in the
 * backlog, so wait a little before trying again rather than spin. */
static void back_off(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    nanosleep(&pause, NULL);
}

/* Accept one client into a new struct client, or return NULL (an error we
 * survive) for the caller to go round again. */
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
            return NULL; /* e.g. ECONNABORTED: take the next one */
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
        log_line("accepted %s", c->peer);
    return c;
}

int main(int argc, char **argv)
{
    struct server_options opts;
    long workers = 0; /* 0: a thread per client */
    unsigned long served_total;
    int opt, err, listen_fd;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* before any socket can take descriptor 0, 1, 2 */
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

    /* A handler, so that a parent's SIG_IGN cannot make us deaf; it only
     * sets stop_requested if a signal lands before the next call. */
    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");
    /* Block the stop signals here, before the first thread: every thread
     * inherits this mask, so none of them can ever take one by surprise. */
    if (sigemptyset(&stop_signals) == -1 ||
        sigaddset(&stop_signals, SIGINT) == -1 ||
        sigaddset(&stop_signals, SIGTERM) == -1)
        die_errno("sigaddset");
    check_pthread(pthread_sigmask(SIG_BLOCK, &stop_signals, NULL),
                  "pthread_sigmask");
    if (pipe(stop_pipe) == -1)
        die_errno("pipe");
    check_pthread(pthread_attr_init(&detached), "pthread_attr_init");
    check_pthread(
        pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED),
        "pthread_attr_setdetachstate");
    check_pthread(start_thread(stop_thread, NULL), "pthread_create");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1)
        return 1;
    /* The pool is ready before we say we listen. */
    for (long i = 0; i < workers; i++) {
        err = start_thread(worker_thread, NULL);
        if (err != 0) {
            errno = err;
            die_errno("pthread_create worker %ld of %ld", i + 1, workers);
        }
    }
    if (announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested && wait_for_client(listen_fd)) {
        struct client *c = accept_client(listen_fd);

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

    /* Stop: no new clients. Returning from main calls exit(), which ends
     * the process and every thread in it, even one blocked in read() or
     * write() on an idle client; the kernel then closes every socket we
     * still hold, and each client still connected (or still queued) sees
     * its connection close. No thread uses stdio, so exit() cannot wait for
     * a stdio lock that a blocked thread holds. */
    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    check_pthread(pthread_mutex_lock(&served_lock), "pthread_mutex_lock");
    served_total = served;
    check_pthread(pthread_mutex_unlock(&served_lock), "pthread_mutex_unlock");
    if (!quiet)
        log_line("served %lu client%s", served_total,
                 served_total == 1 ? "" : "s");
    return 0;
}
