/*
 * listener.c - chapter 02: bind() and listen(), and never accept().
 *
 * getaddrinfo() -> socket() -> setsockopt(SO_REUSEADDR) -> bind() ->
 * listen(), then it waits for Ctrl-C. After listen() the kernel answers
 * clients by itself: it completes each TCP handshake and keeps the finished
 * connection in a queue until the program takes it with accept(). This
 * program never does, so connections pile up in the queue, and `ss -ltn`
 * shows how many in the Recv-Q column.
 */
#include "lab.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_BACKLOG 16 /* the same as chapter 03's server */
#define MAX_BACKLOG 65535  /* a sane bound: Linux caps it at somaxconn */

static const char usage[] =
    "usage: listener [-b ADDR] [-p PORT] [-l BACKLOG] [-r on|off] [-h]\n"
    "Binds and listens on a TCP port, then waits, never calling accept(),\n"
    "until Ctrl-C. Watch its queue with: ss -ltn\n"
    "  -b ADDR     address to listen on (default 127.0.0.1; ::1 for IPv6)\n"
    "  -p PORT     port to listen on (default 8080; 0 lets the kernel "
    "choose)\n"
    "  -l BACKLOG  listen()'s backlog: the queue of connections not yet\n"
    "              accepted (default 16)\n"
    "  -r on|off   set SO_REUSEADDR before bind() (default on), so that\n"
    "              connections left in TIME_WAIT do not block bind()\n"
    "  -h          show this help\n";

/* "127.0.0.1:8080" or "[::1]:8080" from a socket address. The structure
 * behind a struct sockaddr * depends on its family: sockaddr_in for IPv4,
 * sockaddr_in6 for IPv6. Port and address are stored in network byte order
 * (big-endian): ntohs() turns the port into a number for this CPU, and
 * inet_ntop() turns the address into text. (common/'s format_addr() does
 * the same for the later chapters.) */
static char *addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL)
            snprintf(host, sizeof host, "?");
        snprintf(buf, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL)
            snprintf(host, sizeof host, "?");
        snprintf(buf, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(buf, size, "(address family %d)", sa->sa_family);
    }
    return buf;
}

/* The port as it sits in memory: two bytes, the high one first. */
static void show_port_bytes(const struct sockaddr_storage *local)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)local;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)local;
    in_port_t port =
        local->ss_family == AF_INET ? in->sin_port : in6->sin6_port;
    const unsigned char *bytes = (const unsigned char *)&port;

    printf("port %u is stored as the bytes %02x %02x (network byte order); "
           "read without\nntohs() on this machine it would be %u\n",
           (unsigned)ntohs(port), bytes[0], bytes[1], (unsigned)port);
}

/* Open, bind and listen on the first address getaddrinfo() gives for
 * ADDR:PORT (with a numeric ADDR there is exactly one). Returns the
 * listening socket, or -1 after saying which call failed and why. */
static int listen_on(const char *addr, const char *port, int backlog, int reuse)
{
    struct addrinfo hints, *list, *ai;
    char where[ADDR_TEXT_MAX];
    int listen_fd = -1, rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;     /* IPv4 or IPv6: whatever ADDR is */
    hints.ai_socktype = SOCK_STREAM; /* TCP */
    /* AI_PASSIVE: with no ADDR (NULL), answer the wildcard address for
     * bind(); with an ADDR, as here, it is ignored (man 3 getaddrinfo), and
     * only says what we mean. NUMERICHOST and NUMERICSERV: ADDR and PORT
     * are numbers, do not look up names. */
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    rc = getaddrinfo(addr, port, &hints, &list);
    if (rc != 0) { /* its errors come back in rc, not in errno */
        warn_msg("getaddrinfo %s %s: %s", addr, port, gai_strerror(rc));
        return -1;
    }

    for (ai = list; ai != NULL; ai = ai->ai_next) {
        addr_text(ai->ai_addr, where, sizeof where);
        listen_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (listen_fd == -1) {
            warn_errno("socket %s", where);
            continue;
        }
        /* SO_REUSEADDR must be set before bind(), which checks it. */
        if (setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &reuse,
                       sizeof reuse) == -1)
            warn_errno("setsockopt SO_REUSEADDR %s", where);
        else if (bind(listen_fd, ai->ai_addr, ai->ai_addrlen) == -1)
            warn_errno("bind %s", where); /* e.g. EADDRINUSE, EACCES */
        else if (listen(listen_fd, backlog) == -1)
            warn_errno("listen %s", where);
        else
            break; /* listening */
        if (close(listen_fd) == -1)
            warn_errno("close %s", where);
        listen_fd = -1;
    }
    freeaddrinfo(list);
    return listen_fd;
}

int main(int argc, char **argv)
{
    struct server_options opts;
    struct sockaddr_storage local; /* big enough for any address family */
    socklen_t local_len = sizeof local;
    char text[ADDR_TEXT_MAX];
    long backlog = DEFAULT_BACKLOG;
    int reuse = 1;
    int opt, listen_fd;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* before any socket can take descriptor 0, 1, 2 */
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, ":b:p:l:r:h")) != -1) {
        switch (opt) {
        case 'l':
            if (!parse_number(optarg, 0, MAX_BACKLOG, &backlog))
                usage_error(usage, "bad backlog '%s': not a number in 0-%d",
                            optarg, MAX_BACKLOG);
            break;
        case 'r':
            if (strcmp(optarg, "on") == 0)
                reuse = 1;
            else if (strcmp(optarg, "off") == 0)
                reuse = 0;
            else
                usage_error(usage, "bad value '%s' for -r: use on or off",
                            optarg);
            break;
        default: /* -b -p -h, and the errors, as every server does */
            server_option(&opts, opt, usage);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);

    /* Ctrl-C (SIGINT) or kill (SIGTERM) ends the wait below. Signals are
     * chapter 04's topic: skip this call for now. */
    if (catch_stop_signals() == -1)
        die_errno("sigaction");

    listen_fd = listen_on(opts.addr, opts.port, (int)backlog, reuse);
    if (listen_fd == -1)
        return 1;

    /* With port 0 the kernel picked a free port at bind(): ask which. */
    if (getsockname(listen_fd, (struct sockaddr *)&local, &local_len) == -1)
        die_errno("getsockname");
    printf("listening on %s\n",
           addr_text((struct sockaddr *)&local, text, sizeof text));
    show_port_bytes(&local);
    printf("backlog %ld, SO_REUSEADDR %s; accept() is never called. "
           "Ctrl-C stops.\n",
           backlog, reuse ? "on" : "off");
    /* Send the lines now (fflush), and check that they could be written
     * before we wait: a stdout that is full (ENOSPC) or closed (EBADF)
     * must end us now, not go unnoticed. */
    if (check_stdout() == -1)
        return 1;

    wait_for_stop_signal(); /* sigsuspend(): chapter 04, skip for now */

    /* Connections still in the queue are reset by the kernel now. */
    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    printf("stopped\n");
    if (check_stdout() == -1)
        return 1;
    return 0;
}
