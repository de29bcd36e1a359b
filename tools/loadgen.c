/*
 * loadgen.c - the lab's load generator: many connections, every reply checked.
 *
 * It opens C TCP connections to a server, and each connection sends a
 * request, waits for the whole reply, checks every byte of it, then sends the
 * next one (a "closed loop": at most one request in flight per connection),
 * for N requests or for S seconds. At the end it prints one line: how many
 * requests were verified, how many failed, requests per second, and latency
 * percentiles from a histogram.
 *
 * One thread drives every connection, the way chapter 07's server serves its
 * clients: all sockets are non-blocking and epoll says which are ready. Each
 * connection is a small state machine (struct conn):
 *
 *   WAITING -> CONNECTING -> READY -> BUSY -> BUSY ... -> HELD (-k) or DONE
 *   (queued)   (connect()    (-w:     (one request
 *               under way)    waiting  in flight)
 *                             for the
 *                             others)
 *
 * With -W, every connection first makes one request that is not counted (a
 * warm-up: the server has accepted it, forked or started a thread for it),
 * then loadgen prints "warmed up N connections" and waits for SIGUSR1
 * before the timed part: a script reads the server's CPU time in between.
 *
 * With -r, a connection goes back to WAITING after each request. Any error
 * (refused, reset, a wrong reply byte, the server closing early) is counted,
 * described on stderr for the first few, and ends that connection only.
 *
 * It must not be the bottleneck of a benchmark, so the work per request is
 * small: one write(), usually one read(), one clock_gettime(), no malloc, and
 * no epoll_ctl() unless a request does not fit in the socket buffer at once.
 */
#include "lab.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 100000
#define MAX_SIZE (256L * 1024 * 1024) /* largest -s: 256 MiB */
#define MAX_REQUESTS 1000000000L
#define MAX_SECONDS 1000000.0
#define DEFAULT_TIME_LIMIT 60.0 /* -T */
#define DRAIN_SECONDS 1.0       /* -d: wait this long for the last replies */
/* At most this many connect()s under way at once. When a listen backlog
 * overflows, the kernel drops the SYN and the client retransmits it after a
 * second, so opening 10,000 at once would mostly measure that second. */
#define MAX_CONNECTING 1000
#define SPARE_FDS 16 /* stdin, stdout, stderr, the epoll fd, and some room */
#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024) /* one read() takes up to this much */
#define MAX_ERROR_LINES 10     /* describe only the first few errors */
/* The request pattern repeats every 61 bytes (a prime, so that a reply
 * shifted by 256 or 4096 bytes does not line up with it by chance), and
 * each of its periods starts with a NUL byte. */
#define PATTERN_PERIOD 61
#define NS_PER_SEC 1000000000LL

/* Latency histogram over nanoseconds: 8 buckets per power of two, each
 * 6-12% wide, so 496 buckets cover everything from 1 ns to centuries. */
#define SUB_BITS 3
#define SUB_COUNT (1 << SUB_BITS)
#define BUCKETS ((64 - SUB_BITS + 1) * SUB_COUNT)

static const char usage[] =
    "usage: loadgen [-b ADDR] [-p PORT] [-c CONNS] [-s BYTES]\n"
    "               [-n REQUESTS | -d SECONDS] [-r] [-w] [-W] [-k]\n"
    "               [-R REQUEST -E REPLY] [-T SECONDS] [-q] [-h]\n"
    "Opens CONNS connections to a TCP server. Each sends a request, waits\n"
    "for the whole reply, checks every byte, and sends the next. Prints one\n"
    "line: conns= requests= errors= seconds= rps= p50_us= p99_us= p999_us=\n"
    "max_us= (requests counts verified replies only).\n"
    "  -b ADDR  server address (default 127.0.0.1; ::1 for IPv6)\n"
    "  -p PORT  server port (default 8080)\n"
    "  -c N     connections open at once (default 1, at most 100000)\n"
    "  -s N     request size in bytes (default 64); the reply must be the\n"
    "           same bytes (an echo)\n"
    "  -n N     requests per connection (default 1)\n"
    "  -d S     instead of -n: keep sending for S seconds (e.g. 2.5)\n"
    "  -r       a new connection for every request (connect, send, read,\n"
    "           close): measures the server's cost of a new client\n"
    "  -w       wait until all connections are established before sending\n"
    "  -W       warm up: each connection first makes one request, not\n"
    "           counted; then print \"warmed up N connections\" and wait for\n"
    "           SIGUSR1 before the timed part (not with -r)\n"
    "  -k       when done, print \"holding N connections\" and keep them\n"
    "           open until SIGINT or SIGTERM\n"
    "  -R STR   send STR instead of the pattern, with escapes \\r \\n \\t\n"
    "           \\\\ \\0 \\xHH (then -s is ignored)\n"
    "  -E STR   the reply STR must get (same escapes); goes with -R\n"
    "  -T S     give up after S seconds (default 60), counting unfinished\n"
    "           requests as errors; with -d, -T limits only the wait for -w,\n"
    "           and requests unanswered 1 s after the time is up are errors\n"
    "  -q       quiet: no progress messages, only errors and the result\n"
    "  -h       show this help\n"
    "Exit status: 0 if every request was verified, 1 if not, 2 on bad "
    "usage.\n";

struct options {
    struct sockaddr_storage addr; /* the server */
    socklen_t addr_len;
    char where[ADDR_TEXT_MAX]; /* "127.0.0.1:8080", for messages */
    long conns;
    long requests;  /* -n, per connection */
    double seconds; /* -d; 0 means use -n */
    double time_limit;
    bool reconnect, wait_all, warm_up, keep, quiet;
    unsigned char *request, *reply; /* the bytes sent, the bytes expected */
    size_t request_len, reply_len;
    size_t pattern_shift; /* PATTERN_PERIOD for the pattern, 1 with -R */
};

enum conn_state { WAITING, CONNECTING, READY, BUSY, HELD, DONE };

/* One connection ("slot"). With -r the slot outlives its sockets: fd is the
 * current one, and the counters run over all of them. */
struct conn {
    int fd; /* -1 while there is no socket */
    enum conn_state state;
    bool want_write; /* is EPOLLOUT in its epoll interest set? */
    bool opened;     /* has its first connect() finished, well or not? */
    bool warmed;     /* -W: has its warm-up request finished, or failed? */
    long done;       /* requests finished, verified or failed */
    size_t sent;     /* bytes of the current request written so far */
    size_t received; /* bytes of its reply read (and checked) so far */
    int64_t started; /* when the request's first byte was sent, in ns */
};

struct run {
    const struct options *opts;
    int epoll_fd;
    struct conn *conns;
    size_t *queue; /* slots waiting to connect, oldest first (a ring) */
    size_t queue_head, queue_len;
    size_t connecting;  /* connect()s under way */
    size_t active;      /* slots not yet HELD or DONE */
    size_t unopened;    /* -w: slots whose first connect() is not finished */
    bool released;      /* past the -w barrier: requests may be sent */
    bool warming;       /* -W: warm-up requests under way, none counted */
    size_t unwarmed;    /* -W: slots whose warm-up is not finished */
    bool stopping;      /* -d: the time is up, start no new request */
    int64_t launched;   /* when the first connect() started */
    int64_t start;      /* when requests may start: the clock of seconds= */
    int64_t deadline;   /* -d: no request starts after this */
    int64_t give_up_at; /* -T, or -d's deadline plus DRAIN_SECONDS */
    unsigned long long verified, errors;
    long error_lines;
    uint64_t histogram[BUCKETS];
    int64_t max_latency;
};

static unsigned char read_buf[READ_SIZE]; /* every reply is read into it */

/* ---- Small helpers ------------------------------------------------------ */

/* Nanoseconds on a clock that never jumps (unlike the time of day). */
static int64_t now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
        die_errno("clock_gettime");
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* A positive number of seconds, fractions allowed ("2.5"). */
static bool parse_seconds(const char *text, double *out)
{
    char *end;
    double value;

    if ((text[0] < '0' || text[0] > '9') && text[0] != '.')
        return false; /* strtod would accept " -1", "inf" and "nan" */
    errno = 0;
    value = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !(value > 0) || value > MAX_SECONDS)
        return false;
    *out = value;
    return true;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Turn "*1\r\n$4\r\nPING\r\n" into its bytes. OUT has room for strlen(TEXT)
 * bytes, enough since an escape is never shorter than its byte. Returns the
 * length, or -1 for a bad escape. */
static long unescape(const char *text, unsigned char *out)
{
    long len = 0;

    for (const char *p = text; *p != '\0'; p++) {
        if (*p != '\\') {
            out[len++] = (unsigned char)*p;
            continue;
        }
        switch (*++p) {
        case 'r':
            out[len++] = '\r';
            break;
        case 'n':
            out[len++] = '\n';
            break;
        case 't':
            out[len++] = '\t';
            break;
        case '\\':
            out[len++] = '\\';
            break;
        case '0':
            out[len++] = '\0';
            break;
        case 'x':
            if (hex_digit(p[1]) < 0 || hex_digit(p[2]) < 0)
                return -1;
            out[len++] =
                (unsigned char)(hex_digit(p[1]) * 16 + hex_digit(p[2]));
            p += 2;
            break;
        default: /* also a lone '\' at the end */
            return -1;
        }
    }
    return len;
}

/* -R/-E text to bytes, or exit 2 naming the option. */
static unsigned char *escaped_bytes(const char *text, char opt, size_t *len)
{
    unsigned char *bytes = malloc(strlen(text) + 1);
    long n;

    if (bytes == NULL)
        die_errno("malloc");
    n = unescape(text, bytes);
    if (n <= 0) {
        free(bytes);
        usage_error(usage, "bad -%c '%s': %s", opt, text,
                    n == 0 ? "empty"
                           : "bad escape (use \\r \\n \\t \\\\ \\0 \\xHH)");
    }
    *len = (size_t)n;
    return bytes;
}

/* The echo pattern: every PATTERN_PERIOD bytes, the values 0, 37, 74, ...
 * (k * 37 mod 256: NUL first, then high and low bytes alike). Connection i
 * sends the SIZE bytes starting at i % PATTERN_PERIOD, so neighbouring
 * connections send different bytes and a server that mixes up two clients'
 * data is caught. */
static unsigned char *make_pattern(size_t size)
{
    size_t len = size + PATTERN_PERIOD - 1;
    unsigned char *pattern = malloc(len);

    if (pattern == NULL)
        die_errno("malloc %zu bytes", len);
    for (size_t j = 0; j < len; j++)
        pattern[j] = (unsigned char)(j % PATTERN_PERIOD * 37 % 256);
    return pattern;
}

/* The server's address as a sockaddr, from an IPv4 or IPv6 literal. */
static void set_address(struct options *opts, const char *addr, long port)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&opts->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&opts->addr;

    memset(&opts->addr, 0, sizeof opts->addr);
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        opts->addr_len = sizeof *v4;
    } else {
        inet_pton(AF_INET6, addr, &v6->sin6_addr); /* checked by the caller */
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        opts->addr_len = sizeof *v6;
    }
    format_addr((struct sockaddr *)&opts->addr, opts->addr_len, opts->where,
                sizeof opts->where);
}

static void parse_options(int argc, char **argv, struct options *opts)
{
    const char *addr = DEFAULT_ADDR, *request_text = NULL, *reply_text = NULL;
    long port = 8080, size = 64;
    bool have_n = false;
    int opt;

    memset(opts, 0, sizeof *opts);
    opts->conns = 1;
    opts->requests = 1;
    opts->time_limit = DEFAULT_TIME_LIMIT;
    while ((opt = getopt(argc, argv, ":b:p:c:s:n:d:rwWkR:E:T:qh")) != -1) {
        switch (opt) {
        case 'b':
            if (!is_valid_addr(optarg))
                usage_error(usage,
                            "bad address '%s': not an IPv4 or IPv6 address",
                            optarg);
            addr = optarg;
            break;
        case 'p':
            if (!parse_number(optarg, 1, 65535, &port))
                usage_error(usage, "bad port '%s': not a number in 1-65535",
                            optarg);
            break;
        case 'c':
            if (!parse_number(optarg, 1, MAX_CONNS, &opts->conns))
                usage_error(usage, "bad -c '%s': not a number in 1-%d", optarg,
                            MAX_CONNS);
            break;
        case 's':
            if (!parse_number(optarg, 1, MAX_SIZE, &size))
                usage_error(usage, "bad -s '%s': not a number in 1-%ld", optarg,
                            MAX_SIZE);
            break;
        case 'n':
            if (!parse_number(optarg, 1, MAX_REQUESTS, &opts->requests))
                usage_error(usage, "bad -n '%s': not a number in 1-%ld", optarg,
                            MAX_REQUESTS);
            have_n = true;
            break;
        case 'd':
            if (!parse_seconds(optarg, &opts->seconds))
                usage_error(usage, "bad -d '%s': not a number of seconds",
                            optarg);
            break;
        case 'T':
            if (!parse_seconds(optarg, &opts->time_limit))
                usage_error(usage, "bad -T '%s': not a number of seconds",
                            optarg);
            break;
        case 'r':
            opts->reconnect = true;
            break;
        case 'w':
            opts->wait_all = true;
            break;
        case 'W':
            opts->warm_up = true;
            break;
        case 'k':
            opts->keep = true;
            break;
        case 'R':
            request_text = optarg;
            break;
        case 'E':
            reply_text = optarg;
            break;
        case 'q':
            opts->quiet = true;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        case ':':
            usage_error(usage, "option -%c needs a value", optopt);
        default:
            usage_error(usage, "unknown option -%c", optopt);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    if (have_n && opts->seconds > 0)
        usage_error(usage, "-n and -d cannot go together: choose one");
    if (opts->warm_up && opts->reconnect)
        usage_error(usage, "-W and -r cannot go together: with -r every "
                           "request is a new connection, there is nothing to "
                           "warm up");
    if ((request_text == NULL) != (reply_text == NULL))
        usage_error(usage, "-R and -E go together: give both or neither");

    if (request_text != NULL) {
        opts->request = escaped_bytes(request_text, 'R', &opts->request_len);
        opts->reply = escaped_bytes(reply_text, 'E', &opts->reply_len);
        opts->pattern_shift = 1; /* every connection sends the same bytes */
    } else {
        opts->request = make_pattern((size_t)size);
        opts->reply = opts->request; /* an echo */
        opts->request_len = opts->reply_len = (size_t)size;
        opts->pattern_shift = PATTERN_PERIOD;
    }
    set_address(opts, addr, port);
}

/* Each connection needs a descriptor: raise our soft limit (ulimit -n) up
 * to the hard one if need be. Only root may raise the hard limit. */
static void raise_fd_limit(long conns)
{
    rlim_t need = (rlim_t)conns + SPARE_FDS;
    struct rlimit lim;

    if (getrlimit(RLIMIT_NOFILE, &lim) == -1)
        die_errno("getrlimit RLIMIT_NOFILE");
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need) {
        if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
            warn_msg("-c %ld needs %llu file descriptors, but the hard limit "
                     "(ulimit -Hn) is %llu: use fewer connections, or raise "
                     "the hard limit as root",
                     conns, (unsigned long long)need,
                     (unsigned long long)lim.rlim_max);
            exit(1);
        }
        lim.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &lim) == -1)
            die_errno("setrlimit RLIMIT_NOFILE %llu", (unsigned long long)need);
    }
}

/* ---- Latency histogram -------------------------------------------------- */

/* Values below SUB_COUNT have a bucket each; above, a value's bucket is its
 * power of two (the position of its top bit) and the SUB_BITS bits below
 * the top one. */
static int bucket_of(uint64_t ns)
{
    int top = SUB_BITS;

    if (ns < SUB_COUNT)
        return (int)ns;
    while ((ns >> top >> 1) != 0)
        top++;
    return (top - SUB_BITS + 1) * SUB_COUNT +
           (int)((ns >> (top - SUB_BITS)) & (SUB_COUNT - 1));
}

/* The largest value that falls in bucket B. */
static uint64_t bucket_top(int b)
{
    int top = b / SUB_COUNT + SUB_BITS - 1;
    uint64_t low;

    if (b < SUB_COUNT)
        return (uint64_t)b;
    low = (uint64_t)(SUB_COUNT + b % SUB_COUNT) << (top - SUB_BITS);
    return low + ((uint64_t)1 << (top - SUB_BITS)) - 1;
}

/* The latency that PER_MILLE of the requests did not exceed, in whole
 * microseconds: the top of its bucket, so at most about 12% high. */
static long long percentile_us(const struct run *run, int per_mille)
{
    unsigned long long rank, seen = 0;
    uint64_t top = 0;

    if (run->verified == 0)
        return 0;
    rank = (run->verified * (unsigned)per_mille + 999) / 1000;
    for (int b = 0; b < BUCKETS; b++) {
        seen += run->histogram[b];
        if (seen >= rank) {
            top = bucket_top(b);
            break;
        }
    }
    if (top > (uint64_t)run->max_latency)
        top = (uint64_t)run->max_latency;
    return (long long)((top + 500) / 1000);
}

/* ---- One connection ----------------------------------------------------- */

static const unsigned char *request_of(const struct run *run, size_t i)
{
    return run->opts->request + i % run->opts->pattern_shift;
}

static const unsigned char *reply_of(const struct run *run, size_t i)
{
    return run->opts->reply + i % run->opts->pattern_shift;
}

/* Close slot I's socket, if it has one. The caller says what comes next:
 * until then the slot is DONE. (close() also takes the socket out of the
 * epoll interest set, since no other descriptor refers to it.) */
static void close_conn(struct run *run, size_t i)
{
    struct conn *c = &run->conns[i];

    if (c->state == CONNECTING)
        run->connecting--;
    if (c->fd != -1 && close(c->fd) == -1)
        warn_errno("conn %zu: close", i);
    c->fd = -1;
    c->want_write = false;
    c->state = DONE;
}

static void queue_connect(struct run *run, size_t i)
{
    size_t n = (size_t)run->opts->conns;

    run->queue[(run->queue_head + run->queue_len) % n] = i;
    run->queue_len++;
    run->conns[i].state = WAITING;
}

/* Slot I has no more requests to send: keep its socket (-k) or close it. */
static void finish_slot(struct run *run, size_t i)
{
    struct conn *c = &run->conns[i];

    if (run->opts->keep && c->fd != -1)
        c->state = HELD;
    else
        close_conn(run, i);
    run->active--;
}

/* Ask epoll for EPOLLOUT only while a request waits for room in the socket
 * buffer: a level-triggered EPOLLOUT is ready almost all the time, and would
 * wake us for nothing. EPOLLIN stays on, to see a reply, a reset or EOF. */
static int want_write(struct run *run, size_t i, bool on)
{
    struct conn *c = &run->conns[i];
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u),
                             .data.u64 = i};

    if (c->want_write == on)
        return 0;
    c->want_write = on;
    return epoll_ctl(run->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_request(struct run *run, size_t i, int64_t now);
static void release(struct run *run);

/* -w: the first connect() of slot I is finished, one way or the other. */
static void note_opened(struct run *run, size_t i)
{
    struct conn *c = &run->conns[i];

    if (c->opened)
        return;
    c->opened = true;
    if (!run->released && --run->unopened == 0)
        release(run);
}

/* -W: the warm-up request of slot I is finished, verified or failed. */
static void note_warmed(struct run *run, size_t i)
{
    struct conn *c = &run->conns[i];

    if (!run->warming || c->warmed)
        return;
    c->warmed = true;
    run->unwarmed--;
}

/* After a request is finished (verified or failed), the slot sends its next
 * one: on the same socket, or with -r on a new one (through the queue). */
static void next_request(struct run *run, size_t i, int64_t now)
{
    const struct options *opts = run->opts;
    struct conn *c = &run->conns[i];
    bool more = opts->seconds > 0 ? !run->stopping && now < run->deadline
                                  : c->done < opts->requests;

    if (!more) {
        finish_slot(run, i);
    } else if (opts->reconnect) {
        /* We close first, so TIME_WAIT stays on our side; Linux lets a new
         * loopback connect() reuse such a port (net.ipv4.tcp_tw_reuse). */
        close_conn(run, i);
        queue_connect(run, i);
    } else {
        start_request(run, i, now);
    }
}

/* Count an error on slot I, describe it (the first few), close the socket.
 * With -n, a connection that fails takes its unsent requests with it: they
 * count as errors too, so that requests + errors = connections x -n. */
static void conn_failed(struct run *run, size_t i, int err, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static void conn_failed(struct run *run, size_t i, int err, const char *fmt,
                        ...)
{
    const struct options *opts = run->opts;
    struct conn *c = &run->conns[i];
    enum conn_state was = c->state;
    char what[256];
    va_list ap;

    if (run->error_lines < MAX_ERROR_LINES) {
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        errno = err;
        if (err != 0)
            warn_errno("conn %zu: %s", i, what);
        else
            warn_msg("conn %zu: %s", i, what);
    } else if (run->error_lines == MAX_ERROR_LINES) {
        warn_msg("more errors: counted, not shown");
    }
    run->error_lines++;
    close_conn(run, i);

    if (was == HELD) { /* all its requests were done already */
        run->errors++;
        return;
    }
    if (opts->seconds == 0 && !opts->reconnect) {
        run->errors += (unsigned long long)(opts->requests - c->done);
        c->done = opts->requests;
    } else {
        run->errors++;
        c->done++;
    }
    if (opts->reconnect)
        next_request(run, i, now_ns());
    else
        finish_slot(run, i);
    if (was == WAITING || was == CONNECTING)
        note_opened(run, i); /* may release the -w barrier */
    note_warmed(run, i);
}

/* The whole reply is in and checked. */
static void request_done(struct run *run, size_t i, int64_t now)
{
    struct conn *c = &run->conns[i];
    int64_t latency = now - c->started;

    if (run->warming) { /* not counted: the slot waits for the timed part */
        c->state = READY;
        note_warmed(run, i);
        return;
    }
    run->histogram[bucket_of((uint64_t)latency)]++;
    if (latency > run->max_latency)
        run->max_latency = latency;
    run->verified++;
    c->done++;
    next_request(run, i, now);
}

/* Write as much of the request as the socket buffer takes. Usually all of
 * it at once; the rest waits for EPOLLOUT. */
static void send_request(struct run *run, size_t i)
{
    const struct options *opts = run->opts;
    struct conn *c = &run->conns[i];
    ssize_t n;

    n = write(c->fd, request_of(run, i) + c->sent, opts->request_len - c->sent);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_failed(run, i, errno, "write"); /* EPIPE, ECONNRESET */
            return;
        }
        n = 0; /* the socket buffer is full */
    }
    c->sent += (size_t)n;
    if (want_write(run, i, c->sent < opts->request_len) == -1) {
        conn_failed(run, i, errno, "epoll_ctl");
        return;
    }
    /* A server that is not an echo may have answered before the end. */
    if (c->sent == opts->request_len && c->received == opts->reply_len)
        request_done(run, i, now_ns());
}

static void start_request(struct run *run, size_t i, int64_t now)
{
    struct conn *c = &run->conns[i];

    c->state = BUSY;
    c->sent = c->received = 0;
    c->started = now;
    send_request(run, i);
}

/* One read(), and every byte of it compared with the expected reply. The
 * reply may arrive in any number of pieces: TCP is a byte stream. */
static void receive_reply(struct run *run, size_t i)
{
    const struct options *opts = run->opts;
    struct conn *c = &run->conns[i];
    const unsigned char *expected;
    size_t left, check;
    ssize_t n;

    n = read(c->fd, read_buf, sizeof read_buf);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_failed(run, i, errno, "read"); /* e.g. ECONNRESET */
        return;
    }
    if (n == 0) {
        if (c->state == BUSY)
            conn_failed(run, i, 0,
                        "the server closed the connection after %zu of %zu "
                        "reply bytes (request %ld)",
                        c->received, opts->reply_len, c->done + 1);
        else
            conn_failed(run, i, 0,
                        c->state == HELD
                            ? "the server closed a connection held by -k"
                            : "the server closed the connection before the "
                              "first request");
        return;
    }
    if (c->state != BUSY) {
        conn_failed(run, i, 0, "%zd bytes from the server, unasked", n);
        return;
    }

    expected = reply_of(run, i) + c->received;
    left = opts->reply_len - c->received;
    check = (size_t)n < left ? (size_t)n : left;
    if (memcmp(read_buf, expected, check) != 0) {
        size_t k = 0;
        while (read_buf[k] == expected[k])
            k++;
        conn_failed(run, i, 0,
                    "reply byte %zu of request %ld is 0x%02x, expected 0x%02x",
                    c->received + k, c->done + 1, read_buf[k], expected[k]);
        return;
    }
    if ((size_t)n > left) {
        conn_failed(run, i, 0, "%zu bytes more than the %zu-byte reply",
                    (size_t)n - left, opts->reply_len);
        return;
    }
    c->received += (size_t)n;
    if (c->received == opts->reply_len && c->sent == opts->request_len)
        request_done(run, i, now_ns());
}

/* A connection to the server is up (slot I is READY). */
static void connected(struct run *run, size_t i)
{
    struct conn *c = &run->conns[i];

    c->state = READY;
    if (!run->released) {
        note_opened(run, i); /* release() starts it, once all are in */
        return;
    }
    c->opened = true;
    start_request(run, i, now_ns());
}

/* The non-blocking connect() of slot I has finished: EPOLLOUT (or an
 * error) says so, and SO_ERROR says how it went, e.g. ECONNREFUSED. */
static void finish_connect(struct run *run, size_t i)
{
    struct conn *c = &run->conns[i];
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        conn_failed(run, i, err, "connect %s", run->opts->where);
        return;
    }
    run->connecting--;
    c->state = READY;
    c->want_write = true; /* it was registered for EPOLLOUT */
    if (want_write(run, i, false) == -1) {
        conn_failed(run, i, errno, "epoll_ctl");
        return;
    }
    connected(run, i);
}

/* Start a non-blocking connect() for slot I. On loopback it may even
 * succeed at once; usually it returns EINPROGRESS and finishes later. */
static void open_conn(struct run *run, size_t i)
{
    const struct options *opts = run->opts;
    struct conn *c = &run->conns[i];
    struct epoll_event ev = {.data.u64 = i};
    int fd, rc, one = 1;

    fd = socket(opts->addr.ss_family, SOCK_STREAM, 0);
    if (fd == -1) {
        conn_failed(run, i, errno, "socket");
        return;
    }
    c->fd = fd;
    if (set_nonblocking(fd) == -1) {
        conn_failed(run, i, errno, "fcntl O_NONBLOCK");
        return;
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == -1) {
        conn_failed(run, i, errno, "setsockopt TCP_NODELAY");
        return;
    }
    rc = connect(fd, (const struct sockaddr *)&opts->addr, opts->addr_len);
    if (rc == -1 && errno != EINPROGRESS) {
        conn_failed(run, i, errno, "connect %s", opts->where);
        return;
    }
    ev.events = rc == 0 ? EPOLLIN : EPOLLOUT;
    if (epoll_ctl(run->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        conn_failed(run, i, errno, "epoll_ctl");
        return;
    }
    if (rc == 0) {
        connected(run, i);
    } else {
        c->state = CONNECTING;
        run->connecting++;
    }
}

/* Start queued connects, keeping at most MAX_CONNECTING under way. Only
 * those queued on entry: one that fails at once is queued again with -r. */
static void launch_connects(struct run *run)
{
    size_t n = (size_t)run->opts->conns, queued = run->queue_len;

    while (queued-- > 0 && run->connecting < MAX_CONNECTING) {
        size_t i = run->queue[run->queue_head];
        run->queue_head = (run->queue_head + 1) % n;
        run->queue_len--;
        open_conn(run, i);
    }
}

/* ---- The run ------------------------------------------------------------ */

/* The timed part starts now: its clock (seconds=), and with -d its end. */
static void start_timing(struct run *run)
{
    const struct options *opts = run->opts;

    run->start = now_ns();
    if (opts->seconds > 0) {
        run->deadline = run->start + (int64_t)(opts->seconds * NS_PER_SEC);
        run->give_up_at = run->deadline + (int64_t)(DRAIN_SECONDS * NS_PER_SEC);
    }
}

static void start_ready_slots(struct run *run)
{
    for (size_t i = 0; i < (size_t)run->opts->conns; i++)
        if (run->conns[i].state == READY)
            start_request(run, i, now_ns());
}

/* -w: every connection is established (or failed): now send (with -W, the
 * warm-up requests first). */
static void release(struct run *run)
{
    const struct options *opts = run->opts;

    run->released = true;
    run->warming = opts->warm_up;
    if (!run->warming)
        start_timing(run);
    if (opts->wait_all && !opts->quiet) {
        size_t ready = 0;
        for (size_t i = 0; i < (size_t)opts->conns; i++)
            ready += run->conns[i].state == READY;
        warn_msg("%zu of %ld connections established in %.3f s; %s", ready,
                 opts->conns, (double)(now_ns() - run->launched) / NS_PER_SEC,
                 run->warming ? "warming up" : "sending");
    }
    start_ready_slots(run);
}

/* -W: every connection has made its warm-up request (or failed). Say so,
 * wait for SIGUSR1 (blocked since main, so one sent early is not lost),
 * then start the timed part. SIGINT or SIGTERM instead ends the run. */
static void warmed_up(struct run *run)
{
    const struct options *opts = run->opts;
    sigset_t go_or_stop;
    size_t ready = 0;
    int sig, err;

    run->warming = false;
    for (size_t i = 0; i < (size_t)opts->conns; i++)
        ready += run->conns[i].state == READY;
    printf("warmed up %zu connections\n", ready);
    fflush(stdout);
    if (ready == 0)
        return; /* every one failed: nothing to time, no reason to wait */
    sigemptyset(&go_or_stop);
    sigaddset(&go_or_stop, SIGUSR1);
    sigaddset(&go_or_stop, SIGINT);
    sigaddset(&go_or_stop, SIGTERM);
    err = sigwait(&go_or_stop, &sig);
    if (err != 0) {
        errno = err;
        die_errno("sigwait");
    }
    if (sig != SIGUSR1) {
        stop_requested = 1; /* sigwait took it: no handler ran */
        return;
    }
    start_timing(run);
    if (opts->seconds == 0)
        run->give_up_at = run->start + (int64_t)(opts->time_limit * NS_PER_SEC);
    start_ready_slots(run);
}

/* -d: the time is up. Requests in flight may finish; nothing new starts. */
static void stop_starting(struct run *run)
{
    run->stopping = true;
    run->queue_len = 0;
    for (size_t i = 0; i < (size_t)run->opts->conns; i++) {
        enum conn_state state = run->conns[i].state;
        if (state == WAITING || state == CONNECTING || state == READY) {
            close_conn(run, i);
            run->active--;
        }
    }
}

/* The time limit, or a signal: end every slot that is not finished, and
 * count what it still owed as errors (with -n, every request it had not
 * finished; with -d, the request in flight, or a connection not made). */
static void give_up(struct run *run, const char *why)
{
    const struct options *opts = run->opts;
    unsigned long long unfinished = 0, unconnected = 0;

    for (size_t i = 0; i < (size_t)opts->conns; i++) {
        struct conn *c = &run->conns[i];
        if (c->state == HELD || c->state == DONE)
            continue;
        if ((c->state == WAITING || c->state == CONNECTING) && !c->opened)
            unconnected++;
        if (opts->seconds == 0)
            unfinished += (unsigned long long)(opts->requests - c->done);
        else if (c->state == BUSY || !c->opened)
            unfinished++;
        close_conn(run, i);
    }
    run->active = 0;
    run->queue_len = 0;
    run->errors += unfinished;
    if (unfinished > 0)
        warn_msg("%s: %llu request(s) unfinished, counted as errors", why,
                 unfinished);
    if (unconnected > 0)
        warn_msg("%llu of %ld connection(s) never got established", unconnected,
                 opts->conns);
}

/* Milliseconds until the next thing epoll_pwait() must wake up for. */
static int wait_ms(const struct run *run, int64_t now)
{
    int64_t until = run->give_up_at, ms;

    if (run->queue_len > 0 && run->connecting < MAX_CONNECTING)
        return 0;
    if (run->opts->seconds > 0 && run->released && !run->stopping &&
        run->deadline < until)
        until = run->deadline;
    ms = (until - now + 999999) / 1000000; /* round up: never wake early */
    if (ms < 0)
        return 0;
    return ms > 60000 ? 60000 : (int)ms;
}

static void handle_event(struct run *run, size_t i, uint32_t events)
{
    struct conn *c = &run->conns[i];

    switch (c->state) {
    case CONNECTING:
        finish_connect(run, i);
        break;
    case READY:
    case BUSY:
    case HELD:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            receive_reply(run, i); /* a reply, or EOF, or the error */
        if (c->state == BUSY && c->want_write && (events & EPOLLOUT))
            send_request(run, i);
        break;
    default: /* closed earlier in this batch */
        break;
    }
}

/* Wait for events until every slot is finished (or the time limit, or a
 * signal). SIGINT and SIGTERM are blocked except inside epoll_pwait(), so
 * one that arrives between two waits is not lost: the next wait gets it. */
static void run_loop(struct run *run, const sigset_t *wait_mask)
{
    const struct options *opts = run->opts;
    struct epoll_event events[MAX_EVENTS];

    launch_connects(run);
    while (run->active > 0) {
        int64_t now = now_ns();
        int n = epoll_pwait(run->epoll_fd, events, MAX_EVENTS,
                            wait_ms(run, now), wait_mask);
        if (n == -1 && errno != EINTR)
            die_errno("epoll_pwait");
        for (int k = 0; k < n; k++)
            handle_event(run, (size_t)events[k].data.u64, events[k].events);

        if (run->warming && run->unwarmed == 0)
            warmed_up(run);
        now = now_ns();
        if (stop_requested) {
            give_up(run, "stopped by a signal");
            break;
        }
        if (opts->seconds > 0 && run->released && !run->stopping &&
            now >= run->deadline)
            stop_starting(run);
        if (run->active > 0 && now >= run->give_up_at) {
            if (opts->seconds > 0 && run->released)
                give_up(run, "no reply 1 s after the -d time");
            else
                give_up(run, "time limit (-T) reached");
        }
        launch_connects(run);
    }
}

/* -k: keep the connections open until SIGINT or SIGTERM. Still watch them:
 * the server closing one is an error, and must not spin this loop. */
static void hold(struct run *run, const sigset_t *wait_mask)
{
    struct epoll_event events[MAX_EVENTS];
    size_t held = 0;

    for (size_t i = 0; i < (size_t)run->opts->conns; i++)
        if (run->conns[i].state == HELD)
            held++;
    printf("holding %zu connections\n", held);
    fflush(stdout);
    while (!stop_requested) {
        int n = epoll_pwait(run->epoll_fd, events, MAX_EVENTS, -1, wait_mask);
        if (n == -1 && errno != EINTR)
            die_errno("epoll_pwait");
        for (int k = 0; k < n; k++)
            handle_event(run, (size_t)events[k].data.u64, events[k].events);
    }
}

int main(int argc, char **argv)
{
    struct run run;
    struct options opts;
    sigset_t stop_signals, wait_mask;
    int64_t end;
    double seconds;
    bool complete;

    set_program_name(argv[0]);
    parse_options(argc, argv, &opts);
    raise_fd_limit(opts.conns);
    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (opts.warm_up) /* only warmed_up()'s sigwait() takes it */
        sigaddset(&stop_signals, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &stop_signals, &wait_mask) == -1)
        die_errno("sigprocmask");
    sigdelset(&wait_mask, SIGINT); /* in case they were blocked already */
    sigdelset(&wait_mask, SIGTERM);
    if (opts.warm_up)
        sigaddset(&wait_mask, SIGUSR1);

    memset(&run, 0, sizeof run);
    run.opts = &opts;
    run.epoll_fd = epoll_create1(0);
    if (run.epoll_fd == -1)
        die_errno("epoll_create1");
    run.conns = calloc((size_t)opts.conns, sizeof *run.conns);
    run.queue = calloc((size_t)opts.conns, sizeof *run.queue);
    if (run.conns == NULL || run.queue == NULL)
        die_errno("calloc %ld connections", opts.conns);
    for (size_t i = 0; i < (size_t)opts.conns; i++) {
        run.conns[i].fd = -1;
        queue_connect(&run, i);
    }
    run.active = (size_t)opts.conns;
    run.unopened = (size_t)opts.conns;
    run.unwarmed = (size_t)opts.conns;
    run.launched = run.start = now_ns();
    run.deadline = INT64_MAX;
    run.give_up_at = run.start + (int64_t)(opts.time_limit * NS_PER_SEC);
    if (!opts.quiet) {
        if (opts.seconds > 0)
            warn_msg("%s: %ld connection(s), %zu-byte requests for %g s",
                     opts.where, opts.conns, opts.request_len, opts.seconds);
        else
            warn_msg("%s: %ld connection(s), %ld request(s) of %zu bytes each",
                     opts.where, opts.conns, opts.requests, opts.request_len);
    }
    if (!opts.wait_all)
        release(&run); /* no barrier: each sends as soon as it is connected */

    run_loop(&run, &wait_mask);
    end = now_ns();
    if (opts.keep && !stop_requested)
        hold(&run, &wait_mask);
    for (size_t i = 0; i < (size_t)opts.conns; i++)
        close_conn(&run, i);
    if (close(run.epoll_fd) == -1)
        warn_errno("close epoll fd");

    seconds = (double)(end - run.start) / NS_PER_SEC;
    printf("conns=%ld requests=%llu errors=%llu seconds=%.3f rps=%.1f "
           "p50_us=%lld p99_us=%lld p999_us=%lld max_us=%lld\n",
           opts.conns, run.verified, run.errors, seconds,
           seconds > 0 ? (double)run.verified / seconds : 0.0,
           percentile_us(&run, 500), percentile_us(&run, 990),
           percentile_us(&run, 999),
           (long long)((run.max_latency + 500) / 1000));
    fflush(stdout);

    complete = opts.seconds > 0 ||
               run.verified == (unsigned long long)opts.conns *
                                   (unsigned long long)opts.requests;
    if (opts.request != opts.reply)
        free(opts.reply);
    free(opts.request);
    free(run.conns);
    free(run.queue);
    return run.errors == 0 && complete ? 0 : 1;
}
